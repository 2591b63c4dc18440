//go:build !race

package dht_test

// floodSize is TestProviderFlood's number of records, as in the attack
// measured.
const floodSize = 200_000
