package seal

import (
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// A Session is a client's HPKE session with one worker's sealing key: the
// one public-key operation (an encapsulation) it costs is paid once, and
// every request sealed through it costs symmetric crypto only. Create one
// per worker key, and drop it when the evidence that binds the key
// expires. It is safe for concurrent use.
//
// A session's first requests carry its encapsulated key (1,120 bytes for
// the hybrid KEM). Once the worker has answered one, which it does only
// after caching the session, the next carry a 32-byte reference instead;
// a worker that has forgotten the session since refuses with
// ErrUnknownSession, and ResponseOpener.ResendKeys goes back to the key.
type Session struct {
	worker Binding
	kem    KEM
	id     KeyID
	enc    []byte
	ref    []byte      // the worker's cache key of the session
	known  atomic.Bool // the worker answered through the session: wraps carry ref
	keys   sessionKeys
	ctr    atomic.Uint64 // the last request counter used
}

// NewSession sets up a session with the worker named by worker, whose
// sealing public key (wire form, as bound into its verified evidence) is
// workerPub. The encapsulation's randomness comes from crypto/rand, as
// crypto/hpke takes no reader (tests fix it with
// testing/cryptotest.SetGlobalRandom).
func NewSession(workerPub []byte, worker Binding) (*Session, error) {
	if err := worker.check(); err != nil {
		return nil, fmt.Errorf("making sealing session: %w", err)
	}
	pub, err := ParsePublicKey(workerPub)
	if err != nil {
		return nil, fmt.Errorf("making sealing session with %s: %w", worker.Peer, err)
	}
	enc, snd, err := hpke.NewSender(pub.key, hpkeKDF(), hpkeAEAD(), sessionInfo(worker, pub.id))
	if err != nil {
		return nil, fmt.Errorf("making sealing session with %s: %w", worker.Peer, err)
	}
	secret, err := snd.Export(labelExport, keyLen)
	if err != nil {
		return nil, fmt.Errorf("making sealing session with %s: exporting: %w", worker.Peer, err)
	}
	defer clear(secret)
	keys, err := newSessionKeys(secret)
	if err != nil {
		return nil, fmt.Errorf("making sealing session with %s: %w", worker.Peer, err)
	}
	ref := cacheKey(worker, pub.id, enc)
	return &Session{worker: worker, kem: pub.kem, id: pub.id, enc: enc, ref: ref[:], keys: keys}, nil
}

// Worker is the binding the session was made for.
func (s *Session) Worker() Binding { return s.worker }

// KeyID is the ID of the worker key the session seals to.
func (s *Session) KeyID() KeyID { return s.id }

// A Client seals requests. It holds the randomness that request keys come
// from and the clock that dates requests; it is safe for concurrent use.
type Client struct {
	rand io.Reader
	now  func() time.Time
}

// NewClient returns a client that draws request keys from rnd (crypto/rand
// if nil; another reader must be safe for concurrent use if SealRequest
// is) and dates requests by now (time.Now if nil).
func NewClient(rnd io.Reader, now func() time.Time) *Client {
	if rnd == nil {
		rnd = rand.Reader
	}
	if now == nil {
		now = time.Now
	}
	return &Client{rand: rnd, now: now}
}

// SealRequest seals body so that the workers of sessions, and no one else,
// can open it: body is encrypted once under a fresh request key, and that
// key is wrapped for each session. All sessions must be of one network,
// each of another worker (so a proxy cannot run one request twice on a
// worker through two of its keys). header is what travels in the clear
// beside the sealed request for the proxy to route and bill by (its
// canonical encoding; nil if none): the wraps bind it, so the worker
// opens the request only under the same header. The opener reads the
// answer of whichever candidate serves the request.
func (c *Client) SealRequest(sessions []*Session, reqID string, header, body []byte) (*SealedRequest, *ResponseOpener, error) {
	if err := checkSeal(sessions, reqID, body); err != nil {
		return nil, nil, fmt.Errorf("sealing request %q: %w", reqID, err)
	}
	reqKey := make([]byte, keyLen)
	defer clear(reqKey)
	if _, err := io.ReadFull(c.rand, reqKey); err != nil {
		return nil, nil, fmt.Errorf("sealing request %q: reading randomness: %w", reqID, err)
	}
	sr := &SealedRequest{RequestID: reqID, SealedAt: time.UnixMilli(c.now().UnixMilli())}
	at := sr.SealedAt.UnixMilli()
	network := sessions[0].worker.Network
	var err error
	if sr.Body, err = sealOnce(nil, bodyKey(reqKey), body, requestAAD(network, reqID, at)); err != nil {
		return nil, nil, err
	}
	bodyHash, headerHash := sha256.Sum256(sr.Body), sha256.Sum256(header)
	sr.Wraps = make([]Wrap, len(sessions))
	o := &ResponseOpener{candidates: make([]candidate, len(sessions)), chosen: -1}
	for i, s := range sessions {
		ctr := s.ctr.Add(1)
		if ctr == 0 {
			return nil, nil, fmt.Errorf("sealing request %q: session with %s has used all its counters", reqID, s.worker.Peer)
		}
		var nonce [12]byte
		wrapped := s.keys.wrap.Seal(nil, wrapNonce(&nonce, ctr), reqKey, wrapAAD(s.worker, reqID, at, bodyHash, headerHash, s.id, ctr))
		sr.Wraps[i] = Wrap{KEM: s.kem, KeyID: s.id, Counter: ctr, Key: wrapped}
		if s.known.Load() && len(s.enc) > len(s.ref) {
			sr.Wraps[i].Ref = s.ref
		} else {
			sr.Wraps[i].Enc = s.enc
		}
		o.candidates[i] = candidate{session: s, ctr: ctr}
	}
	return sr, o, nil
}

// checkSeal checks SealRequest's arguments.
func checkSeal(sessions []*Session, reqID string, body []byte) error {
	switch {
	case len(sessions) == 0 || len(sessions) > MaxCandidates:
		return fmt.Errorf("%w: %d candidates, want 1 to %d", ErrMalformed, len(sessions), MaxCandidates)
	case reqID == "" || len(reqID) > MaxRequestID || !utf8.ValidString(reqID):
		return fmt.Errorf("%w: request ID must be valid UTF-8 of 1 to %d bytes", ErrMalformed, MaxRequestID)
	case len(body) > MaxBody:
		return fmt.Errorf("%w: body of %d bytes, at most %d", ErrMalformed, len(body), MaxBody)
	}
	seen := make(map[KeyID]bool, len(sessions))
	peers := make(map[string]bool, len(sessions))
	for _, s := range sessions {
		switch {
		case s == nil:
			return fmt.Errorf("%w: nil session", ErrMalformed)
		case s.worker.Network != sessions[0].worker.Network:
			return fmt.Errorf("%w: sessions of networks %q and %q", ErrMalformed, sessions[0].worker.Network, s.worker.Network)
		case seen[s.id]:
			return fmt.Errorf("%w: two sessions with key %v", ErrMalformed, s.id)
		case peers[s.worker.Peer]:
			return fmt.Errorf("%w: two sessions with worker %s (one key each would let it serve the request twice)", ErrMalformed, s.worker.Peer)
		}
		seen[s.id], peers[s.worker.Peer] = true, true
	}
	return nil
}
