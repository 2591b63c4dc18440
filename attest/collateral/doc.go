// Package collateral relays Intel's attestation collateral between peers
// (issue 14, "attestation collateral travels with evidence"), so that a
// node with an empty cache verifies a TDX worker while Intel's service is
// unreachable.
//
// Checking a TDX quote with collateral on (tdx.CollateralOn) takes four
// answers from Intel PCS: the TDX TCB info for the platform's FMSPC, the
// TDX QE identity, the PCK CRL and the SGX Root CA's CRL. A node keeps
// every answer it fetched in its collateral cache (tdx.Validator.Cached).
// Intel signs all four under its SGX root, so whoever holds a copy can
// hand it on: a proxy, which verifies the workers it routes to, has
// exactly the answers its clients need to verify those workers themselves.
//
// # Serving
//
// A Server answers on /cocoon/<network>/collateral/1 from its node's cache
// only: it never fetches on a peer's behalf, and it answers only for the
// URLs go-tdx-guest fetches (tdx.IsCollateralURL), so it is no HTTP proxy
// of any kind. Any connected peer may ask: the answers are public.
//
// # Asking
//
// Getter is the tdx.Getter a node's validator fetches through: Intel
// first, and only when Intel cannot be reached (any error), each of the
// peers Peers names in turn (at most MaxAsk), until one has the answer
// cached. What it gets is cached by the validator like Intel's own answer.
//
// # What a relay can do
//
// The validator checks a relayed answer exactly as one from Intel: the
// signatures up to the pinned root, the issuer names, and Intel's
// nextUpdate against the validation's time. A peer that relays garbage,
// answers under another root, or has nothing, denies service: the quote
// is refused with tdx.ErrCollateral, or tdx.ErrCollateralUnavailable. It
// cannot vouch for a quote Intel would not. What it can choose is which
// genuine answer to hand on: an older one, still before its nextUpdate (a
// CRL from before a revocation, TCB info from before a TCB recovery), as
// an offline node's own cache would serve. Intel's update period (about a
// month) bounds that window. A node that reaches Intel never asks a peer.
// Because the validator caches a relayed answer like Intel's for
// tdx.Config.Refresh, bad collateral from a peer keeps failing for that
// long unless Intel comes back.
//
// # Wire format
//
// The requester opens a stream, sends one frame (p2p's frames: uvarint
// length, version byte, type byte, payload) and closes its side; the
// server answers one frame and closes.
//
//	request  type 1  the URL, 1 to MaxURL bytes, one of tdx.IsCollateralURL's
//	answer   type 2  uvarint(n) | header, n bytes of JSON {"Name": ["value", ...]} | body
//	refusal  type 3  a status code: "not-cached" or "bad-request"
//
// Limits, checked from the frame header before anything is allocated, and
// again by the decoders: a request of MaxURL bytes; an answer of MaxHeader
// bytes of header (at most MaxHeaderFields names) and 1 to
// tdx.MaxCollateral bytes of body. A request over its cap, of another
// frame type or for another URL is refused with "bad-request"; an answer
// over its cap, of another frame type or that does not decode is
// ErrMalformed to the requester.
package collateral
