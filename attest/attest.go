package attest

import (
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
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
	// SealKey is the public half of the sealing key pair the node holds in
	// memory until Expiry (opaque here: inference/seal's encoding), bound
	// by the v2 binding; at most MaxSealKey bytes. Absent for a node that
	// seals nothing (a proxy), whose evidence keeps the v1 binding.
	SealKey []byte `json:"seal_key,omitempty"`
}

// Verdict is the outcome of checking a peer's evidence.
type Verdict struct {
	Tier   Tier
	Kind   string
	Expiry time.Time
	// SealKey is the sealing key the verified evidence binds: the one key
	// to seal to for this peer, until Expiry. Empty when the peer seals
	// nothing. Shared by every copy of the verdict: read-only.
	SealKey []byte
}

// Live reports whether the verdict still holds at now.
func (v Verdict) Live(now time.Time) bool { return v.Tier != 0 && now.Before(v.Expiry) }

// Issuer makes evidence binding pub, and sealKey when it is not empty,
// until expiry (see Binding). The evidence carries sealKey.
type Issuer interface {
	Issue(ctx context.Context, pub crypto.PubKey, expiry time.Time, sealKey []byte) (*Evidence, error)
}

// SealKeys makes the sealing keys a node's evidence binds (inference/seal's
// Keyring on a worker; attesttest.SealKeys in tests). Next makes a new key
// pair that lives, in this process's memory only, until expiry, and
// returns its public half (1 to MaxSealKey bytes). The Handshaker calls it
// each time it issues evidence, so the sealing key rotates with the
// evidence: at least once per validity window. Discard forgets a key Next
// made for evidence that then could not be issued, so that failed
// renewals never push out the key the live evidence binds.
type SealKeys interface {
	Next(expiry time.Time) (pub []byte, err error)
	Discard(pub []byte)
}

// Validator checks evidence presented by the holder of pub.
type Validator interface {
	Validate(ctx context.Context, ev *Evidence, pub crypto.PubKey, now time.Time) (Verdict, error)
}

// Rejection reasons. A rejected peer is not retried until it presents new
// evidence; retrying the same evidence cannot help.
var (
	// ErrFormat: evidence that does not decode, or a field over its limit
	// (MaxEvidenceSize, MaxSealKey, the 64-byte report data).
	ErrFormat = errors.New("malformed evidence")
	// ErrBinding: the report data is not the binding of the presenting
	// peer's key, the evidence's sealing key (if any) and its expiry, or
	// the hardware report does not carry that report data.
	ErrBinding     = errors.New("evidence is not bound to this peer's keys and expiry")
	ErrExpired     = errors.New("evidence expired")
	ErrTooLong     = errors.New("evidence validity too long")
	ErrKind        = errors.New("evidence kind not accepted")
	ErrUnattested  = errors.New("peer has not passed attestation")
	ErrEmptyReport = errors.New("evidence carries no report data")
)

// Binding tags prefix the binding hash so it can't collide with other uses
// of SHA-512 over a key, nor one version with the other.
const (
	BindingTagV1 = "cocoon-attest-v1" // evidence without a sealing key
	BindingTagV2 = "cocoon-attest-v2" // evidence with a sealing key
)

// Limits on evidence, checked by DecodeEvidence and again by CheckBinding.
const (
	// MaxEvidenceSize bounds encoded evidence: a TDX quote (about 5 KiB),
	// the evidence of 8 GPUs (about 63 KiB as JSON) and a sealing key fit
	// with room to spare.
	MaxEvidenceSize = 256 << 10
	// MaxSealKey bounds a sealing key. ML-KEM-768 + X25519 takes 1216
	// bytes, ML-KEM-1024 + P-384 1665.
	MaxSealKey = 4096
	// ReportDataSize is the size of a binding, and of TDX's REPORTDATA.
	ReportDataSize = sha512.Size
)

// Binding is the report data that binds pub and expiry, and sealKey when
// it is not empty:
//
//	v1, no sealing key: SHA-512("cocoon-attest-v1" || pub || expiry)
//	v2:                 SHA-512("cocoon-attest-v2" || pub || expiry || len(sealKey) || sealKey)
//
// with pub in libp2p's protobuf encoding (which carries its own length),
// expiry as big-endian u64 unix seconds and len(sealKey) as big-endian u32,
// so no two inputs share an encoding. A sealing key over MaxSealKey is an
// error.
func Binding(pub crypto.PubKey, expiry time.Time, sealKey []byte) ([ReportDataSize]byte, error) {
	if len(sealKey) > MaxSealKey {
		return [ReportDataSize]byte{}, fmt.Errorf("%w: sealing key of %d bytes, at most %d", ErrFormat, len(sealKey), MaxSealKey)
	}
	kb, err := crypto.MarshalPublicKey(pub)
	if err != nil {
		return [ReportDataSize]byte{}, fmt.Errorf("encoding public key: %w", err)
	}
	h := sha512.New()
	if len(sealKey) == 0 {
		h.Write([]byte(BindingTagV1))
	} else {
		h.Write([]byte(BindingTagV2))
	}
	h.Write(kb)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(expiry.Unix())))
	if len(sealKey) != 0 {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(sealKey))))
		h.Write(sealKey)
	}
	var out [ReportDataSize]byte
	h.Sum(out[:0])
	return out, nil
}

// CheckBinding verifies that ev's report data binds pub, ev's sealing key
// (v2; v1 when it has none) and ev's expiry, that the expiry is after now
// and at most maxValidity away. It costs one hash: validators run it
// before they verify anything expensive.
func CheckBinding(ev *Evidence, pub crypto.PubKey, now time.Time, maxValidity time.Duration) error {
	if err := checkBound(ev, pub, now); err != nil {
		return err
	}
	expiry := time.Unix(ev.Expiry, 0)
	if expiry.Sub(now) > maxValidity {
		return fmt.Errorf("%w: %s > %s", ErrTooLong, expiry.Sub(now).Round(time.Second), maxValidity)
	}
	return nil
}

// checkBound is CheckBinding without the validity bound, which is each
// validator's: the binding and the expiry, one hash. The Handshaker runs
// it on every evidence before the validator, whatever the kind.
func checkBound(ev *Evidence, pub crypto.PubKey, now time.Time) error {
	if len(ev.ReportData) == 0 {
		return ErrEmptyReport
	}
	expiry := time.Unix(ev.Expiry, 0)
	want, err := Binding(pub, expiry, ev.SealKey)
	if err != nil {
		return err
	}
	if len(ev.ReportData) != len(want) || [ReportDataSize]byte(ev.ReportData) != want {
		if len(ev.SealKey) != 0 {
			return fmt.Errorf("%w: report data is not the v2 binding of the presenting peer's key, the evidence's sealing key and expiry", ErrBinding)
		}
		return fmt.Errorf("%w: report data is not the v1 binding of the presenting peer's key and the evidence's expiry (no sealing key)", ErrBinding)
	}
	if !now.Before(expiry) {
		return fmt.Errorf("%w at %s", ErrExpired, expiry.UTC().Format(time.RFC3339))
	}
	return nil
}

// DecodeEvidence decodes evidence as the handshake carries it (JSON),
// refusing more than MaxEvidenceSize bytes before decoding and a sealing
// key or report data over its limit after. Errors wrap ErrFormat.
func DecodeEvidence(b []byte) (*Evidence, error) {
	if len(b) > MaxEvidenceSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFormat, len(b), MaxEvidenceSize)
	}
	var ev Evidence
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if len(ev.SealKey) > MaxSealKey {
		return nil, fmt.Errorf("%w: sealing key of %d bytes, at most %d", ErrFormat, len(ev.SealKey), MaxSealKey)
	}
	if len(ev.ReportData) > ReportDataSize {
		return nil, fmt.Errorf("%w: report data of %d bytes, at most %d", ErrFormat, len(ev.ReportData), ReportDataSize)
	}
	return &ev, nil
}
