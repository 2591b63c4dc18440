// Package seal is the cryptography of sealed inference: a client encrypts
// a request so that only the workers it verified can read it, the proxies
// in between relay ciphertext they cannot read or alter undetected, and
// the worker that serves the request seals its answer back to the client.
// It covers a worker's sealing keys (Keyring), a client's sessions with
// them (Session, Client), sealed requests to several candidate workers
// (SealedRequest) and sealed answers (ResponseSealer, ResponseOpener),
// with their wire formats. It does no I/O, starts no goroutines and
// imports only the standard library; the attestation layer, the directory
// of workers, the routing header and the streams are elsewhere.
//
// # Keys
//
// A worker's Keyring makes a key pair with Next(expiry), in memory only:
// no method exports a private key. The attestation layer calls Next when
// it issues new evidence, at least once per validity window, and binds the
// returned public key into the evidence's report data next to the libp2p
// key, so a client that verifies the evidence knows the key lives in the
// attested machine until then. Earlier keys stay usable until their own
// expiry, so requests sealed to them while the new evidence spreads still
// open; expired keys, and every session with them, are forgotten whenever
// the keyring is used (at most MaxLiveKeys are kept). Go cannot promise to
// wipe a forgotten key from memory; it becomes garbage.
//
// A public key's wire form is the HPKE KEM ID (2 bytes, big endian) then
// the KEM's serialized key (1216 bytes for MLKEM768X25519, 32 for X25519),
// so the suite can change without a new format. ParsePublicKey checks the
// length against the KEM before parsing. A key's KeyID is the first 16
// bytes of SHA-256 over a label and that wire form.
//
// # Suite
//
// HPKE (RFC 9180, Go's crypto/hpke) in base mode with the hybrid KEM
// ML-KEM-768 + X25519 (X-Wing) by default, HKDF-SHA256, and HPKE's
// export-only AEAD: the session's secret is exported once and every
// message is sealed under keys derived from it with HKDF-SHA256. The
// hybrid KEM keeps prompts confidential against a recorder who gets a
// quantum computer later, and stays as strong as X25519 if ML-KEM falls;
// its cost is paid once per session (see docs/sealing.md for the
// measurements), so it is the default. X25519 (DHKEM) is kept for
// comparison and for peers that cannot do ML-KEM; the KEM is bound into
// the attested public key, so a proxy cannot downgrade it.
//
// The symmetric cipher is AES-256-GCM: workers are TDX machines with AES
// instructions, clients are x86 (AES-NI) or ARMv8 (crypto extensions)
// machines, and Go's AES-GCM is constant-time assembly on both; 256-bit
// keys keep a margin against quantum search to match the KEM. A body key
// seals one message (zero nonce); a session's two keys seal one wrap and
// one answer per request counter (nonces made of the counter, and of the
// record's number for answers), never a nonce twice, so GCM's limits on
// random nonces never apply. ChaCha20-Poly1305 would be the choice for
// machines without AES instructions; a new Version could switch.
//
// # Sessions: public-key work once per worker key
//
// A client makes one Session per worker key (NewSession: parse the key,
// one HPKE encapsulation) and keeps it until the evidence binding the key
// expires. HPKE's info binds the protocol version, the network, the
// worker's peer ID and the key ID. The session's two keys are derived
// once, on each side:
//
//	wrapKey   = HKDF-Expand(sessionSecret, "cocoon-seal/2 wrap")
//	answerKey = HKDF-Expand(sessionSecret, "cocoon-seal/2 response")
//
// Each request then costs symmetric crypto only, one key setup on each
// side: the session's counter is incremented, and
//
//	requestKey: 32 fresh random bytes per request
//	bodyKey  = HKDF-Expand(requestKey, "cocoon-seal/2 request")
//	body     = AES-256-GCM(bodyKey, nonce 0, body, AAD: version, type, network, request ID, time)
//	wrap     = AES-256-GCM(wrapKey, nonce 0^4 || counter, requestKey, AAD: the same, then
//	           SHA-256(sealed body), SHA-256(routing header), peer ID, key ID, counter)
//	record   = AES-256-GCM(answerKey, nonce counter || u32 record number, chunks, AAD: record header)
//
// The body is encrypted once and its key wrapped for each candidate, as
// Apple's Private Cloud Compute does, so the proxy can pick any of them
// (and retry on another before the first chunk) without the client
// sealing again. The answer key is the session's, which only the client
// and that worker know: another candidate, though it holds the request
// key, cannot answer in its name. The counter in the records' nonces ties
// an answer to its request: the worker seals under a counter only after
// its replay window let that counter through, once, and the wrap it
// opened under that counter bound the request's body and header. Nor can
// another candidate seal another body
// under the request key for the proxy to pass on, since every wrap binds
// the hash of the sealed body (AES-GCM does not commit to its key, so the
// body's own tag would not catch it). The wraps also bind the routing
// header the proxy reads (model, sizes, prices, tier): a proxy that
// changes it gets a request no worker opens. A request is sealed to each
// worker once (one session per peer), so a proxy cannot run it twice on
// one worker through two of its keys; it can still run it on several
// candidates, so receipts are settled once per request ID.
//
// A session's wraps carry its encapsulated key (enc) until the worker has
// answered a request through the session: a worker that has not seen the
// session (the proxy chose it for the first time) decapsulates once and
// caches the exported secret, keyed by a hash of the binding, key ID and
// enc, before it answers. From then on the client names the session by
// that hash (Wrap.Ref, 32 bytes) instead of enc (1,120 bytes with the
// hybrid KEM), which the client computes as the worker does. A worker
// that has evicted the session since refuses a reference with
// ErrUnknownSession, and the client sends the request again with enc
// (ResponseOpener.ResendKeys). A reference is not a secret and needs no
// binding: a wrap still opens only under the session's secret, so a proxy
// that changes a reference gets ErrUnknownSession or ErrAuth, and one that
// turns enc into its reference changes nothing.
//
// # Replay
//
// A worker opens each request at most once. A request carries the client's
// time, bound into every AAD; the worker refuses one more than
// RequestLifetime away from its clock (ErrStale). Within a session, the
// worker keeps a sliding window of the counters it has opened (the IPsec
// and WireGuard scheme, ReplayWindow wide, so concurrent requests may
// arrive out of order) and refuses a counter it has seen or one too far
// behind (ErrReplay). The session cache is bounded (WithSessionCache); a
// session is evicted only after 2*RequestLifetime unused, when every
// request it opened is stale anyway, so eviction never reopens a replay; a
// full cache refuses new sessions (ErrBusy). A session enters the cache
// only once a request authenticated under it. Anyone may seal to a
// worker's public key (clients are anonymous), so none of this
// authenticates the client: the proxy admits clients by payment.
//
// # Answers
//
// The worker's ResponseSealer seals each chunk as a record numbered from 0,
// with the request's counter and the number in the nonce and the header
// (type and number) as AAD, and ends with an end record that seals the
// chunk count; an answer has at most 2^32 records. The client's ResponseOpener
// accepts records only in order and only from one candidate (the first
// record's decides, and Worker reports which), so a dropped, reordered,
// duplicated or replayed record is ErrOrder, a record changed or moved
// from another request or worker is ErrAuth, a record after the end is
// ErrAfterEnd, and an answer without its end record is ErrTruncated (from
// Done). The first failure is final. Chunks returned before a failure are
// genuine; the rest of the answer is lost, and only a new request helps.
//
// # What a proxy sees
//
// The request ID, the client's time, the candidates' key IDs, counters,
// encapsulated keys and session references (which link a session's
// requests; the proxy knows the
// client anyway), the sizes of the body and of each chunk, and the number
// of chunks. It cannot read or change the body or the answer, route a
// request to a worker the client did not choose, replay a request, or mix
// answers, without the open failing.
//
// # Wire formats
//
// Every message starts with the version (Version) and a type byte; every
// length is capped (MaxRequestID, MaxCandidates, MaxBody, MaxRecord) and
// checked against the bytes left before anything is allocated; decoders
// refuse trailing bytes, and encoders refuse what decoders refuse.
// Integers are big endian.
//
//	public key:      kem u16 | key (the KEM's length)
//	sealed request:  version u8 = 2 | type u8 = 1 | sealedAt u64 (Unix ms)
//	                 | idLen u8 (1..128) | id | nWraps u8 (1..16)
//	                 | nWraps × (kem u16 | keyID [16] | counter u64 (≠ 0)
//	                             | encLen u16 (the KEM's) | enc
//	                               or encLen u16 = 0 | ref [32]
//	                             | key [48])
//	                 | bodyLen u32 (16..MaxBody+16) | body
//	answer record:   version u8 = 2 | type u8 (2 chunk, 3 end) | seq u64 (< 2^32)
//	                 | AES-256-GCM ciphertext and tag (the end record's
//	                   plaintext is the chunk count, u64)
//
// A record's length is what the stream frame carrying it says (at most
// MaxRecord); a record's header is its AAD, and its nonce is the
// request's counter (u64) and seq (u32). Version 1 derived a wrap key per
// counter and an answer key per request; version 2 derives both once per
// session, which saves four AES key setups and six HMACs per request
// (docs/sealing.md), and refuses version 1's messages.
//
// # Errors
//
// Every error wraps a sentinel (ErrMalformed, ErrUnsupportedKEM,
// ErrExpiry, ErrNoRecipient, ErrStale, ErrReplay, ErrBusy, ErrAuth,
// ErrOrder, ErrTruncated, ErrAfterEnd, ErrEnded), each documented with
// whether a retry can help.
package seal
