// Package payments holds what every payment path shares: prices in nanoTON
// per million tokens (Price: one type for a worker's configuration, its
// offers and its receipts), the exact cost of an answer (Cost, giving a
// Bill of the worker's amount, the proxy's fee and the total), the Tariff
// a proxy bills each answer by (a worker's live offered price plus the
// proxy's fee), and the receipt a worker signs for each answer (Receipt,
// Sign, Verify, Check).
//
// Amounts are int64 nanoTON and every computation is exact integer
// arithmetic that rounds up to a whole nanoTON and fails rather than wraps.
// The crash-safe record of payment-channel states is payments/ledger; TON
// wallets and channels are payments/ton; the channels a node keeps with its
// peers, per side, are payments/channels.
package payments
