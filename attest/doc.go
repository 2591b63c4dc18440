// Package attest proves which hardware and image hold a peer's libp2p key,
// and remembers who has proved it.
//
// Evidence binds a node's libp2p public key and an expiry:
//
//	report_data = SHA-512("cocoon-attest-v1" || public key || expiry)
//
// so evidence says "this hardware and image hold this peer key until then".
// The libp2p handshake proves the key, so evidence replayed by another peer
// fails the binding. Evidence is made once per validity window (Issuer
// calls are expensive: a TDX quote costs 3 ms to 1 s) and renewed before
// the window ends, never per connection.
//
// The handshake protocol /cocoon/<network>/attest/1 is mutual: each side
// sends its evidence in one frame and checks the other's. Verdicts are
// cached per peer until their expiry; inference handlers serve only peers
// with a live verdict, and requesters send prompts only to such peers.
//
// Implementations live in subpackages: attest/dev (no hardware, accepted
// only where the network allows it). TDX and NVIDIA evidence follow.
package attest
