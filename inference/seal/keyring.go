package seal

import (
	"container/list"
	"crypto/hpke"
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"time"
)

// Keyring limits and defaults.
const (
	// RequestLifetime is how far a sealed request's time may be from the
	// worker's clock, either way, for the worker to open it.
	RequestLifetime = 2 * time.Minute
	// MaxLiveKeys is how many sealing keys a Keyring holds at once; Next
	// forgets the oldest beyond it, expired or not.
	MaxLiveKeys = 4
	// DefaultSessionCache is how many client sessions a Keyring remembers
	// by default (each costs about 300 bytes).
	DefaultSessionCache = 16384
	// ikmLen is the input keying material of one key pair.
	ikmLen = 32
)

// A Keyring holds a worker's sealing keys and opens requests sealed to
// them. Keys are generated in memory and never leave it: there is no way
// to export a private key. It starts no goroutines; expired keys and
// their sessions are forgotten whenever the keyring is used. It is safe
// for concurrent use.
type Keyring struct {
	kem         KEM
	hkem        hpke.KEM
	rand        io.Reader
	now         func() time.Time
	maxSessions int

	mu       sync.Mutex            // guards keys, sessions, lru and every session's lastUse and window
	keys     []*ringKey            // live keys, oldest first
	sessions map[[32]byte]*session // by cacheKey
	lru      list.List             // of *session, most recently used in front
}

// ringKey is one sealing key pair.
type ringKey struct {
	id     KeyID
	kem    KEM
	priv   hpke.PrivateKey
	pub    []byte // wire form
	expiry time.Time
}

// session is a client's HPKE session with one of the keyring's keys, as
// the worker remembers it: the exported secret and the replay window.
type session struct {
	ck      [32]byte
	key     *ringKey
	keys    sessionKeys
	lastUse time.Time
	window  window
	elem    *list.Element
}

// An Option configures a Keyring.
type Option func(*Keyring) error

// WithKEM makes the keyring's keys use kem (default MLKEM768X25519).
func WithKEM(kem KEM) Option {
	return func(k *Keyring) error {
		spec, err := kem.spec()
		if err != nil {
			return err
		}
		k.kem, k.hkem = kem, spec.kem()
		return nil
	}
}

// WithSessionCache sets how many client sessions the keyring remembers
// (default DefaultSessionCache). A session is kept at least
// 2*RequestLifetime after its last use, to refuse replays; when all are
// that recent, a new session is refused with ErrBusy.
func WithSessionCache(n int) Option {
	return func(k *Keyring) error {
		if n < 1 {
			return fmt.Errorf("session cache of %d sessions: must be at least 1", n)
		}
		k.maxSessions = n
		return nil
	}
}

// NewKeyring returns a keyring with no keys: call Next before serving.
// Keys are derived from rnd (crypto/rand if nil; read only by Next, under
// no lock, so another reader must be safe for concurrent Next calls, if
// any); now is the clock that
// expires keys and checks requests' times (time.Now if nil).
func NewKeyring(rnd io.Reader, now func() time.Time, opts ...Option) (*Keyring, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if now == nil {
		now = time.Now
	}
	k := &Keyring{rand: rnd, now: now, maxSessions: DefaultSessionCache, sessions: map[[32]byte]*session{}}
	opts = append([]Option{WithKEM(MLKEM768X25519)}, opts...)
	for _, o := range opts {
		if err := o(k); err != nil {
			return nil, fmt.Errorf("making keyring: %w", err)
		}
	}
	return k, nil
}

// Next makes a new key pair that lives until expiry and returns its public
// key's wire form, for the attestation layer to bind into the evidence it
// issues. Earlier keys stay usable until their own expiry, so requests
// sealed to them while the new evidence spreads still open; at most
// MaxLiveKeys are kept.
func (k *Keyring) Next(expiry time.Time) ([]byte, error) {
	if now := k.now(); !expiry.After(now) {
		return nil, fmt.Errorf("making sealing key: %w: %v is not after %v", ErrExpiry, expiry, now)
	}
	ikm := make([]byte, ikmLen)
	if _, err := io.ReadFull(k.rand, ikm); err != nil {
		return nil, fmt.Errorf("making sealing key: reading randomness: %w", err)
	}
	priv, err := k.hkem.DeriveKeyPair(ikm)
	clear(ikm)
	if err != nil {
		return nil, fmt.Errorf("making sealing key: %w", err)
	}
	pub := marshalPublicKey(k.kem, priv.PublicKey().Bytes())
	rk := &ringKey{id: keyIDOf(pub), kem: k.kem, priv: priv, pub: pub, expiry: expiry}

	k.mu.Lock()
	defer k.mu.Unlock()
	k.pruneLocked(k.now())
	k.keys = append(k.keys, rk)
	if len(k.keys) > MaxLiveKeys {
		k.dropKeyLocked(0)
	}
	return clone(pub), nil
}

// Discard forgets the key whose public half is pub, and its sessions: the
// attestation layer calls it when the evidence meant to bind the key could
// not be issued, so that failed renewals never push the key of the live
// evidence out of the keyring (it holds at most MaxLiveKeys). An unknown
// key is ignored.
func (k *Keyring) Discard(pub []byte) {
	id := keyIDOf(pub)
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, rk := range k.keys {
		if rk.id == id {
			k.dropKeyLocked(i)
			return
		}
	}
}

// Current returns the newest key's public key and expiry; ok is false if
// there is no live key.
func (k *Keyring) Current() (pub []byte, expiry time.Time, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pruneLocked(k.now())
	if len(k.keys) == 0 {
		return nil, time.Time{}, false
	}
	rk := k.keys[len(k.keys)-1]
	return clone(rk.pub), rk.expiry, true
}

// pruneLocked forgets expired keys and their sessions.
func (k *Keyring) pruneLocked(now time.Time) {
	for i := 0; i < len(k.keys); {
		if now.Before(k.keys[i].expiry) {
			i++
			continue
		}
		k.dropKeyLocked(i)
	}
}

// dropKeyLocked forgets keys[i] and every session with it.
func (k *Keyring) dropKeyLocked(i int) {
	rk := k.keys[i]
	k.keys = append(k.keys[:i], k.keys[i+1:]...)
	for ck, s := range k.sessions {
		if s.key == rk {
			k.forgetLocked(ck, s)
		}
	}
}

func (k *Keyring) forgetLocked(ck [32]byte, s *session) {
	delete(k.sessions, ck)
	k.lru.Remove(s.elem)
}

// liveKeyLocked returns the live key with id, or nil.
func (k *Keyring) liveKeyLocked(id KeyID) *ringKey {
	for _, rk := range k.keys {
		if rk.id == id {
			return rk
		}
	}
	return nil
}

// lookupLocked returns the cached session ck, marked used now, or nil.
func (k *Keyring) lookupLocked(ck [32]byte, now time.Time) *session {
	s := k.sessions[ck]
	if s == nil {
		return nil
	}
	s.lastUse = now
	k.lru.MoveToFront(s.elem)
	return s
}

// insertLocked caches s, evicting the least recently used session if the
// cache is full and that session may go: unused for 2*RequestLifetime, so
// every request it opened is now stale and cannot be replayed.
func (k *Keyring) insertLocked(s *session, now time.Time) error {
	if len(k.sessions) >= k.maxSessions {
		oldest := k.lru.Back().Value.(*session)
		if now.Sub(oldest.lastUse) <= 2*RequestLifetime {
			return fmt.Errorf("%w: %d sessions in use", ErrBusy, len(k.sessions))
		}
		k.forgetLocked(oldest.ck, oldest)
	}
	s.lastUse = now
	s.elem = k.lru.PushFront(s)
	k.sessions[s.ck] = s
	return nil
}
