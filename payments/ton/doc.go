// Package ton moves nanoTON on TON for package payments: a wallet kept in
// the node's data dir, and payment channels on the official asynchronous
// payment-channel contract (the code tonutils-go's ton/payments embeds),
// all over the chain.Chain interface so that the same code runs against a
// real network and against the sandbox emulator.
//
// # Wallet
//
// A Wallet is a wallet v5r1 whose key comes from a 24-word seed in the data
// dir (SeedFile, mode 0600, written atomically on first use; a seed readable
// by group or others is refused). It builds and signs the wallet's external
// messages itself, with an injected clock for their expiry, reads the seqno
// through a get-method and attaches the state init while the wallet is not
// deployed yet.
//
// # Channels
//
// A channel joins a payer A and a payee B. A deploys it from its wallet with
// its deposit (Channel.Deploy); the contract takes no top-up once the
// channel is open, so the deposit is its capacity. Off-chain, A's Payer signs
// its semi-channel state, seqno and cumulative amount sent, for each
// payment (Payer.Pay); B's Payee checks the signature, that the seqno grows,
// that the cumulative amount never shrinks and that it stays within A's
// deposit (Payee.Accept). To settle, both sign the final balances and either
// sends the cooperative close; when A is gone, B starts an uncooperative
// close with the newest state A signed, the other party may challenge it
// once during the quarantine, and anyone finishes it afterwards. A
// cooperative commit, signed by both, makes the contract refuse any state
// below the committed seqnos.
//
// In a dispute the contract takes, from the one challenge it allows (by the
// starter's counterparty), the challenger's copy of the starter's state,
// whatever its seqno: a party that publishes an old or forged state of its
// own loses to the newest one its counterparty holds, provided the
// counterparty challenges within the quarantine. The contract does not
// check that a cooperative close's balances add up to what it holds; it
// pays B's first and A the rest, so each side checks the split (CloseFor)
// before signing.
package ton
