package attest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Kinds is a Validator that hands evidence to the validator of its kind.
// Which kinds are accepted can change while it runs: a network's root
// contract may turn dev attestation off. Evidence of a kind it does not
// hold is refused with ErrKind.
type Kinds struct {
	mu     sync.RWMutex // guards byKind
	byKind map[string]Validator
}

// NewKinds accepts the given kinds.
func NewKinds(byKind map[string]Validator) *Kinds {
	k := &Kinds{byKind: make(map[string]Validator, len(byKind))}
	for kind, v := range byKind {
		k.byKind[kind] = v
	}
	return k
}

// Set accepts kind through v, or stops accepting it when v is nil.
func (k *Kinds) Set(kind string, v Validator) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if v == nil {
		delete(k.byKind, kind)
		return
	}
	k.byKind[kind] = v
}

// Accepts reports whether evidence of kind is accepted now.
func (k *Kinds) Accepts(kind string) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	_, ok := k.byKind[kind]
	return ok
}

// Validate checks ev with the validator of its kind.
func (k *Kinds) Validate(ctx context.Context, ev *Evidence, pub crypto.PubKey, now time.Time) (Verdict, error) {
	k.mu.RLock()
	v, ok := k.byKind[ev.Kind]
	k.mu.RUnlock()
	if !ok {
		return Verdict{}, fmt.Errorf("%w: %q is not accepted on this network", ErrKind, ev.Kind)
	}
	return v.Validate(ctx, ev, pub, now)
}
