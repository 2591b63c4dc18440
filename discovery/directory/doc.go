// Package directory lets clients see the workers a proxy routes to and
// check them themselves (issue 14, "workers reach clients' eyes").
//
// A proxy serves, on /cocoon/<network>/directory/1, a directory of the
// workers it can route to now: for each, its peer ID, the evidence it
// presented to the proxy's handshake (attest.Handshaker.PeerEvidence), the
// models it serves with the prices of its live offer, and the tier the
// proxy reached. The directory is built from the proxy's live state on
// each request, so it follows workers as they come and go.
//
// A client trusts none of it. For every entry it checks the evidence
// itself, with its own validators (attest.Kinds: TDX and NVIDIA, dev only
// where the network allows), against the public key in the entry's peer ID
// and at its own clock. An entry survives only if its evidence verifies;
// its tier is the one the client computed (the proxy's claim is ignored,
// and a differing claim is logged), and its sealing key is the one the
// verified evidence binds (attest.Verdict.SealKey): a proxy that swaps a
// worker's sealing key breaks the binding, and evidence replayed under
// another worker's peer ID is bound to the wrong key. Verdicts are cached
// per (peer, evidence digest) until they expire, so a client refetching a
// directory verifies each evidence once per validity window.
//
// # Wire format
//
// The client opens a stream and sends nothing; the proxy answers one frame
// (p2p's frames: uvarint length, version byte, type byte, payload) and
// closes. A frame of type 1 carries the directory, JSON:
//
//	{"version": 1, "network": "local", "workers": [
//	  {"peer": "12D3Koo...", "evidence": {attest.Evidence as the handshake carries it},
//	   "models": [{"id": "llama-3-8b", "price": {"prompt": 1, "cached": 0, "completion": 2}}],
//	   "tier": "tee"}]}
//
// A frame of type 2 is a refusal, its payload a short status code
// ("forbidden"). The sealing key travels once, inside the evidence
// (seal_key), where the binding covers it.
//
// Limits, checked by Decode (a directory over any of them is malformed, an
// error, not a partial answer): MaxSize bytes in all, checked from the
// frame header before anything is allocated; MaxWorkers entries, each
// peer once; evidence per attest.DecodeEvidence (attest.MaxEvidenceSize,
// the sealing key and report data capped); 1 to MaxModels models per
// worker, IDs of 1 to MaxModelID bytes of UTF-8, each once; prices from 0
// to MaxPrice; a tier claim, if present, one of attest's tiers. A proxy
// with more workers than fit serves those that do, in peer ID order.
package directory
