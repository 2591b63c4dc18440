// Package payments holds what every payment path shares: prices in nanoTON
// per million tokens, the exact cost of an answer (Cost), and the receipt a
// worker signs for each answer (Receipt, Sign, Verify, Check).
//
// Amounts are int64 nanoTON and every computation is exact integer
// arithmetic that rounds up to a whole nanoTON and fails rather than wraps.
// The crash-safe record of payment-channel states is payments/ledger; TON
// wallets and channels are payments/ton.
package payments
