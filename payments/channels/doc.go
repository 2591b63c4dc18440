// Package channels runs a node's TON payment channels: the ones it pays on
// (a client's to its proxies, a proxy's to its workers) and the ones it is
// paid on, over the libp2p protocol /cocoon/<network>/pay/1.
//
// A payer opens a channel by asking the payee for its key and payout
// address (hello), deploying the channel contract with its deposit from its
// wallet, waiting until the chain shows it open, and announcing it (open);
// the payee checks the chain before it accepts. Each answer the payer is
// served then moves the channel's signed cumulative state forward (pay):
// the payer signs the state covering everything it owes, stores it in its
// ledger, and sends it with the entries it pays for (the workers' signed
// receipts and their amounts) and the amount the payee last said it held.
// The payee checks the signature, the seqno and the amount, stores the
// state in its ledger with fsync, and only then answers. Payments are
// batched: the entries waiting when a state is signed all go in it.
//
// A proxy (Config.Forward) checks each new entry of a client's payment (the
// worker's signature on the receipt, that it names this proxy, that the
// amount is the receipt's price times its tokens plus the proxy's fee) and
// signs new states to the workers it owes in the same ledger transaction
// as the client's state, so that a crash never keeps one without the
// other. A payer that restarts first asks what the payee holds (sync) and
// resends its newest state if the payee lacks it; entries the payee already
// holds are skipped by their cumulative position, so nothing is counted
// twice.
//
// Payees serve on credit: Admit refuses a peer with no open channel, or one
// whose answers served beyond its newest signed state pass MaxCredit.
// Payers stop using a channel with less than Reserve left (Payable), and
// close channels cooperatively (close): the payee signs the split at the
// newest state it holds, the payer checks it and sends the close. An
// Opener keeps a payer's channels open: it opens one to each payee that
// has none with the reserve left, backing off from a payee whose open
// failed, and says why a client with no funded channel is refused.
//
// A side whose counterparty is gone closes uncooperatively (Dispute, then
// FinishClose after the quarantine), and a payee's watcher (Config.Watch)
// challenges a close its payer started with an old state.
package channels
