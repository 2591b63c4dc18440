// Package dev is attestation without hardware, for local networks and
// tests. Dev evidence binds the peer key exactly like hardware evidence but
// proves nothing about the machine, so it is accepted only where the
// network's configuration allows dev attestation, and never on mainnet.
package dev

import (
	"bytes"
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
)

// Kind is the evidence kind this package issues and accepts.
const Kind = "dev"

// MaxValidity bounds how far ahead dev evidence may expire.
const MaxValidity = 24 * time.Hour

// Issuer makes dev evidence.
type Issuer struct{}

// Issue binds pub, and sealKey if not empty, until expiry.
func (Issuer) Issue(_ context.Context, pub crypto.PubKey, expiry time.Time, sealKey []byte) (*attest.Evidence, error) {
	b, err := attest.Binding(pub, expiry, sealKey)
	if err != nil {
		return nil, err
	}
	ev := &attest.Evidence{Kind: Kind, Expiry: expiry.Unix(), ReportData: b[:]}
	if len(sealKey) != 0 {
		ev.SealKey = bytes.Clone(sealKey)
	}
	return ev, nil
}

// Validator accepts dev evidence bound to the presenting peer.
type Validator struct{}

// Validate checks kind, binding (sealing key included) and expiry; the
// verdict is TierDev and carries the bound sealing key.
func (Validator) Validate(_ context.Context, ev *attest.Evidence, pub crypto.PubKey, now time.Time) (attest.Verdict, error) {
	if ev.Kind != Kind {
		return attest.Verdict{}, attest.ErrKind
	}
	if len(ev.Quote) != 0 {
		return attest.Verdict{}, attest.ErrKind
	}
	if err := attest.CheckBinding(ev, pub, now, MaxValidity); err != nil {
		return attest.Verdict{}, err
	}
	return attest.Verdict{Tier: attest.TierDev, Kind: Kind, Expiry: time.Unix(ev.Expiry, 0), SealKey: bytes.Clone(ev.SealKey)}, nil
}
