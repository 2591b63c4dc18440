// Package attesttest provides the fakes of package attest's interfaces for
// other packages' tests. Only tests import it.
package attesttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
)

// SealKey is one key a fake SealKeys made.
type SealKey struct {
	Pub    []byte
	Expiry time.Time
	// Discarded: the Handshaker gave it back, its evidence not issued.
	Discarded bool
}

// SealKeys is a fake attest.SealKeys that keeps nothing secret: Next
// returns a new 32-byte public key each call (distinct, deterministic in
// the order of calls) and remembers it with its expiry, or fails with the
// error given to Fail. It is safe for concurrent use.
type SealKeys struct {
	mu   sync.Mutex // guards made and err
	made []SealKey
	err  error
}

var _ attest.SealKeys = (*SealKeys)(nil)

// NewSealKeys returns a fake with no keys made.
func NewSealKeys() *SealKeys { return &SealKeys{} }

// Next makes the next key, valid until expiry.
func (k *SealKeys) Next(expiry time.Time) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return nil, k.err
	}
	seed := binary.BigEndian.AppendUint64([]byte("attesttest seal key "), uint64(len(k.made)))
	pub := sha256.Sum256(seed)
	k.made = append(k.made, SealKey{Pub: pub[:], Expiry: expiry})
	return pub[:], nil
}

// Discard marks the key pub as discarded (see Discarded).
func (k *SealKeys) Discard(pub []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range k.made {
		if bytes.Equal(k.made[i].Pub, pub) {
			k.made[i].Discarded = true
		}
	}
}

// Fail makes every later Next fail with err (nil: succeed again).
func (k *SealKeys) Fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.err = err
}

// Made returns the keys made so far, oldest first.
func (k *SealKeys) Made() []SealKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]SealKey(nil), k.made...)
}

// Last returns the public half of the newest key, nil before the first.
func (k *SealKeys) Last() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.made) == 0 {
		return nil
	}
	return k.made[len(k.made)-1].Pub
}

// Issuer is a fake attest.Issuer: it issues dev evidence and counts the
// calls until Fail makes it fail, as a quote provider that stopped
// answering does. It is safe for concurrent use.
type Issuer struct {
	mu    sync.Mutex // guards calls and err
	calls int
	err   error
}

var _ attest.Issuer = (*Issuer)(nil)

// NewIssuer returns a fake issuer that succeeds.
func NewIssuer() *Issuer { return &Issuer{} }

// Issue issues dev evidence binding pub and sealKey until expiry, or fails
// with the error given to Fail.
func (i *Issuer) Issue(ctx context.Context, pub crypto.PubKey, expiry time.Time, sealKey []byte) (*attest.Evidence, error) {
	i.mu.Lock()
	i.calls++
	err := i.err
	i.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return dev.Issuer{}.Issue(ctx, pub, expiry, sealKey)
}

// Fail makes every later Issue fail with err (nil: succeed again).
func (i *Issuer) Fail(err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.err = err
}

// Calls counts the Issue calls so far.
func (i *Issuer) Calls() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.calls
}
