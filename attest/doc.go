// Package attest proves which hardware and image hold a peer's libp2p key,
// and remembers who has proved it.
//
// Evidence binds a node's libp2p public key, its sealing key if it has
// one, and an expiry (Binding):
//
//	v1: report_data = SHA-512("cocoon-attest-v1" || public key || expiry)
//	v2: report_data = SHA-512("cocoon-attest-v2" || public key || expiry || len(seal key) || seal key)
//
// so evidence says "this hardware and image hold this peer key, and this
// sealing key, until then". v2 is the evidence of a worker, whose
// SealKeys make a new sealing key for each evidence; v1 that of a node
// that seals nothing (a proxy). The libp2p handshake proves the peer key,
// so evidence replayed by another peer fails the binding; a sealing key
// swapped in the evidence fails it too, and the Verdict carries the key
// that passed, the only one to seal to. Validators check the binding (a
// hash) before anything expensive. Evidence is made once per validity
// window (Issuer calls are expensive: a TDX quote costs 3 ms to 1 s) and
// renewed before the window ends, never per connection.
//
// The handshake protocol /cocoon/<network>/attest/1 is mutual: each side
// sends its evidence in one frame and checks the other's. Verdicts are
// cached per peer until their expiry; inference handlers serve only peers
// with a live verdict, and requesters send prompts only to such peers.
//
// Implementations live in subpackages: attest/dev (no hardware, accepted
// only where the network allows it), attest/tdx (Intel TDX quotes) and
// attest/nvidia (GPU evidence beside a TDX quote). attest/attesttest has
// the fakes for other packages' tests.
package attest
