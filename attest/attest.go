package attest

import (
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Tier is how much a verified peer is trusted. The zero value is invalid.
type Tier uint8

// Trust tiers, weakest first.
const (
	TierDev    Tier = 1 // no hardware evidence; local networks only
	TierTEE    Tier = 2 // Intel TDX verified
	TierTEEGPU Tier = 3 // Intel TDX and NVIDIA confidential computing verified
)

func (t Tier) String() string {
	switch t {
	case TierDev:
		return "dev"
	case TierTEE:
		return "tee"
	case TierTEEGPU:
		return "tee-gpu"
	}
	return fmt.Sprintf("tier(%d)", uint8(t))
}

// ParseTier parses "dev", "tee" or "tee-gpu".
func ParseTier(s string) (Tier, error) {
	for _, t := range []Tier{TierDev, TierTEE, TierTEEGPU} {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown trust tier %q: want tee-gpu, tee or dev", s)
}

// Evidence is what a node presents about itself.
type Evidence struct {
	Kind       string `json:"kind"`   // "dev", "tdx", "nvidia-cc"
	Expiry     int64  `json:"expiry"` // unix seconds; part of the binding
	ReportData []byte `json:"report_data"`
	Quote      []byte `json:"quote,omitempty"` // hardware evidence; absent for dev
	// GPU is the NVIDIA confidential-computing evidence (attest/nvidia),
	// its report made over a nonce derived from the same binding; absent
	// for dev evidence and for TDX without a GPU.
	GPU []byte `json:"gpu,omitempty"`
}

// Verdict is the outcome of checking a peer's evidence.
type Verdict struct {
	Tier   Tier
	Kind   string
	Expiry time.Time
}

// Live reports whether the verdict still holds at now.
func (v Verdict) Live(now time.Time) bool { return v.Tier != 0 && now.Before(v.Expiry) }

// Issuer makes evidence binding pub until expiry.
type Issuer interface {
	Issue(ctx context.Context, pub crypto.PubKey, expiry time.Time) (*Evidence, error)
}

// Validator checks evidence presented by the holder of pub.
type Validator interface {
	Validate(ctx context.Context, ev *Evidence, pub crypto.PubKey, now time.Time) (Verdict, error)
}

// Rejection reasons. A rejected peer is not retried until it presents new
// evidence; retrying the same evidence cannot help.
var (
	ErrBinding     = errors.New("evidence is not bound to this peer's key and expiry")
	ErrExpired     = errors.New("evidence expired")
	ErrTooLong     = errors.New("evidence validity too long")
	ErrKind        = errors.New("evidence kind not accepted")
	ErrUnattested  = errors.New("peer has not passed attestation")
	ErrEmptyReport = errors.New("evidence carries no report data")
)

// BindingTag prefixes the binding hash so it can't collide with other uses
// of SHA-512 over a key.
const BindingTag = "cocoon-attest-v1"

// Binding is SHA-512("cocoon-attest-v1" || public key || expiry), with the
// key in libp2p's protobuf encoding and the expiry as big-endian unix
// seconds.
func Binding(pub crypto.PubKey, expiry time.Time) ([64]byte, error) {
	kb, err := crypto.MarshalPublicKey(pub)
	if err != nil {
		return [64]byte{}, fmt.Errorf("encoding public key: %w", err)
	}
	h := sha512.New()
	h.Write([]byte(BindingTag))
	h.Write(kb)
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], uint64(expiry.Unix()))
	h.Write(e[:])
	var out [64]byte
	h.Sum(out[:0])
	return out, nil
}

// CheckBinding verifies that ev's report data binds pub and ev's expiry,
// that the expiry is after now and at most maxValidity away.
func CheckBinding(ev *Evidence, pub crypto.PubKey, now time.Time, maxValidity time.Duration) error {
	if len(ev.ReportData) == 0 {
		return ErrEmptyReport
	}
	expiry := time.Unix(ev.Expiry, 0)
	want, err := Binding(pub, expiry)
	if err != nil {
		return err
	}
	if len(ev.ReportData) != len(want) || [64]byte(ev.ReportData) != want {
		return ErrBinding
	}
	if !now.Before(expiry) {
		return fmt.Errorf("%w at %s", ErrExpired, expiry.UTC().Format(time.RFC3339))
	}
	if expiry.Sub(now) > maxValidity {
		return fmt.Errorf("%w: %s > %s", ErrTooLong, expiry.Sub(now).Round(time.Second), maxValidity)
	}
	return nil
}
