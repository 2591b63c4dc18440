package seal

import "errors"

// Sentinel errors. Every error this package returns wraps one of them, with
// context. Each says whether a retry can help.
var (
	// ErrMalformed: the bytes do not decode, or a value breaks a size cap
	// or a format rule. Retrying the same bytes cannot help.
	ErrMalformed = errors.New("seal: malformed message")

	// ErrUnsupportedKEM: a public key or a wrap names a KEM this build does
	// not accept. Retrying cannot help; the peer must use a KEM both know.
	ErrUnsupportedKEM = errors.New("seal: unsupported KEM")

	// ErrExpiry: Keyring.Next was given an expiry that is not after now.
	// A caller bug; retrying with the same expiry cannot help.
	ErrExpiry = errors.New("seal: key expiry is not in the future")

	// ErrNoRecipient: a sealed request has no wrap for any live key of this
	// worker. Either the worker is not a candidate (the proxy routed it
	// elsewhere than the client chose), or the client sealed to a key that
	// has rotated out and expired. The proxy may retry on another
	// candidate; the client may reseal to the worker's current key.
	ErrNoRecipient = errors.New("seal: request not sealed to this worker's keys")

	// ErrStale: a sealed request's time is more than RequestLifetime away
	// from the worker's clock: it was held back (or replayed) too long, or
	// the client's clock is wrong. A fresh seal helps if the clock is right.
	ErrStale = errors.New("seal: sealed request outside its lifetime")

	// ErrReplay: the worker already opened this request (same session, same
	// counter), or the counter is too far behind the session's newest to be
	// checked. Retrying the same bytes cannot help; a fresh seal can.
	ErrReplay = errors.New("seal: request replayed")

	// ErrUnknownSession: a wrap names its session by reference (Wrap.Ref)
	// and the worker no longer holds that session: it forgot it to make
	// room, or the reference is of no session of this worker. The client
	// sends the request again with the session's encapsulated key
	// (ResponseOpener.ResendKeys).
	ErrUnknownSession = errors.New("seal: sealing session unknown to the worker")

	// ErrBusy: the worker's session cache is full of sessions it must keep
	// for replay protection, so it cannot take a new one now. Retrying later,
	// or on another worker, helps.
	ErrBusy = errors.New("seal: too many sealing sessions")

	// ErrAuth: authentication failed. The bytes were changed, or were sealed
	// for another worker, key, network or request, or a record belongs to
	// another request's answer. Retrying the same bytes cannot help.
	ErrAuth = errors.New("seal: authentication failed")

	// ErrOrder: an answer record authenticated but is not the next one: a
	// record was dropped, reordered, duplicated or replayed. The answer is
	// broken from that point; the chunks returned before it are genuine. A
	// new request can help, not reading on.
	ErrOrder = errors.New("seal: answer record out of order")

	// ErrTruncated: the answer ended without its end record, so the client
	// cannot know it has all of it. A new request can help.
	ErrTruncated = errors.New("seal: answer truncated")

	// ErrAfterEnd: a record came after the answer's end record. The answer
	// as ended is complete; what follows is not from its worker's stream.
	ErrAfterEnd = errors.New("seal: record after the end of the answer")

	// ErrEnded: ResponseSealer.Seal or End was called after End. A caller
	// bug; retrying cannot help.
	ErrEnded = errors.New("seal: answer already ended")
)
