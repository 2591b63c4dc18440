package seal

import (
	"crypto/hpke"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// OpenRequest opens a request sealed to one of the keyring's live keys:
// self is this worker's own binding (its network and peer ID), header the
// routing header the request came with (as SealRequest took it; nil if
// none): a request whose header was changed does not open. It returns
// the body and the sealer of the answer. It checks, in order: the
// request's time against RequestLifetime (ErrStale), a wrap for a live
// key (ErrNoRecipient), the session a wrap names by reference
// (ErrUnknownSession), the wrap and the body (ErrAuth), and that the
// session's counter is new (ErrReplay). The caller must treat
// sr.RequestID as the request's ID: it is what the seal binds.
func (k *Keyring) OpenRequest(sr *SealedRequest, self Binding, header []byte) ([]byte, *ResponseSealer, error) {
	if err := self.check(); err != nil {
		return nil, nil, fmt.Errorf("opening request: %w", err)
	}
	if err := sr.check(); err != nil {
		return nil, nil, fmt.Errorf("opening request: %w", err)
	}
	now := k.now()
	if age := now.Sub(sr.SealedAt); age > RequestLifetime || age < -RequestLifetime {
		return nil, nil, fmt.Errorf("opening request %q: %w: sealed %v from now", sr.RequestID, ErrStale, age.Round(time.Millisecond))
	}
	hashes := [2][sha256.Size]byte{sha256.Sum256(sr.Body), sha256.Sum256(header)}
	var lastErr error
	for i := range sr.Wraps {
		w := &sr.Wraps[i]
		k.mu.Lock()
		k.pruneLocked(now)
		rk := k.liveKeyLocked(w.KeyID)
		k.mu.Unlock()
		if rk == nil {
			continue
		}
		body, rs, err := k.openWrap(sr, w, rk, self, hashes, now)
		if err == nil {
			return body, rs, nil
		}
		lastErr = fmt.Errorf("opening request %q with key %v: %w", sr.RequestID, w.KeyID, err)
		if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrUnknownSession) {
			break // replay, busy: another wrap of ours would not change that
		}
	}
	if lastErr != nil {
		return nil, nil, lastErr
	}
	return nil, nil, fmt.Errorf("opening request %q: %w", sr.RequestID, ErrNoRecipient)
}

// openWrap opens sr through the wrap w for the live key rk.
func (k *Keyring) openWrap(sr *SealedRequest, w *Wrap, rk *ringKey, self Binding, hashes [2][sha256.Size]byte, now time.Time) ([]byte, *ResponseSealer, error) {
	if w.KEM != rk.kem {
		return nil, nil, fmt.Errorf("%w: wrap for a %v key names %v", ErrAuth, rk.kem, w.KEM)
	}
	var s *session
	if w.Enc == nil {
		k.mu.Lock()
		s = k.lookupLocked([32]byte(w.Ref), now)
		k.mu.Unlock()
		if s == nil || s.key != rk {
			return nil, nil, fmt.Errorf("%w: reference %x", ErrUnknownSession, w.Ref[:8])
		}
	} else {
		var err error
		if s, err = k.session(rk, w.Enc, self, now); err != nil {
			return nil, nil, err
		}
	}
	at := sr.SealedAt.UnixMilli()
	var nonce [12]byte
	reqKey, err := s.keys.wrap.Open(nil, wrapNonce(&nonce, w.Counter), w.Key, wrapAAD(self, sr.RequestID, at, hashes[0], hashes[1], rk.id, w.Counter))
	if err != nil {
		return nil, nil, fmt.Errorf("unwrapping request key: %w", ErrAuth)
	}
	defer clear(reqKey)
	body, err := openOnce(bodyKey(reqKey), sr.Body, requestAAD(self.Network, sr.RequestID, at))
	if err != nil {
		return nil, nil, fmt.Errorf("opening body: %w", err)
	}
	// Admitted before anything is sealed: the answer's nonces hold the
	// counter, which the window lets through once.
	if err := k.admit(s, w.Counter, now); err != nil {
		return nil, nil, err
	}
	return body, &ResponseSealer{aead: s.keys.answer, ctr: w.Counter}, nil
}

// admit records that a request authenticated under s with counter ctr:
// it caches s if it is new (only sessions that opened a request take a
// place in the cache), then checks and records the counter.
func (k *Keyring) admit(s *session, ctr uint64, now time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s.elem == nil {
		if k.liveKeyLocked(s.key.id) != s.key {
			return fmt.Errorf("%w: key %v expired meanwhile", ErrNoRecipient, s.key.id)
		}
		if cached := k.lookupLocked(s.ck, now); cached != nil {
			s = cached // another request of this session got here first
		} else if err := k.insertLocked(s, now); err != nil {
			return err
		}
	}
	if !s.window.accept(ctr) {
		return fmt.Errorf("%w: counter %d", ErrReplay, ctr)
	}
	s.lastUse = now
	return nil
}

// session returns the session that enc opens with rk: from the cache, or
// by decapsulating, the one public-key operation a worker does per client
// session. A new session is not cached yet: admit does that once a request
// authenticates under it.
func (k *Keyring) session(rk *ringKey, enc []byte, self Binding, now time.Time) (*session, error) {
	ck := cacheKey(self, rk.id, enc)
	k.mu.Lock()
	s := k.lookupLocked(ck, now)
	k.mu.Unlock()
	if s != nil {
		return s, nil
	}
	r, err := hpke.NewRecipient(enc, rk.priv, hpkeKDF(), hpkeAEAD(), sessionInfo(self, rk.id))
	if err != nil {
		return nil, fmt.Errorf("%w: decapsulating: %v", ErrAuth, err)
	}
	secret, err := r.Export(labelExport, keyLen)
	if err != nil {
		return nil, fmt.Errorf("exporting session secret: %w", err)
	}
	defer clear(secret)
	keys, err := newSessionKeys(secret)
	if err != nil {
		return nil, err
	}
	return &session{ck: ck, key: rk, keys: keys}, nil
}

// cacheKey names a session in the cache: everything its secret depends on.
func cacheKey(self Binding, id KeyID, enc []byte) [32]byte {
	h := sha256.New()
	b := appendLP(appendLP([]byte(labelCache), self.Network), self.Peer)
	h.Write(append(b, id[:]...))
	h.Write(enc)
	var ck [32]byte
	h.Sum(ck[:0])
	return ck
}
