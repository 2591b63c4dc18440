//go:build race

package dht_test

// floodSize is TestProviderFlood's number of records: the race detector
// makes each cost about 40 times more.
const floodSize = 20_000
