// Package payments will hold prices in nanoTON, worker-signed usage
// receipts, TON payment channels and the crash-safe ledger (issue [4/6]).
// Nothing in it is built yet; until then no request is charged.
package payments
