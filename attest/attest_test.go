package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fixed clock these tests start from.
var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// fixedKey makes a deterministic Ed25519 key from seed.
func fixedKey(t testing.TB, seed byte) (crypto.PrivKey, crypto.PubKey) {
	t.Helper()
	priv, pub, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func TestTier(t *testing.T) {
	tests := []struct {
		s    string
		tier attest.Tier
	}{
		{"dev", attest.TierDev},
		{"tee", attest.TierTEE},
		{"tee-gpu", attest.TierTEEGPU},
	}
	for _, tt := range tests {
		got, err := attest.ParseTier(tt.s)
		if err != nil || got != tt.tier {
			t.Errorf("ParseTier(%q) = %v, %v; want %v", tt.s, got, err, tt.tier)
		}
		if tt.tier.String() != tt.s {
			t.Errorf("%v.String() = %q, want %q", uint8(tt.tier), tt.tier.String(), tt.s)
		}
	}
	if !(attest.TierDev < attest.TierTEE && attest.TierTEE < attest.TierTEEGPU) {
		t.Error("tiers are not ordered weakest first")
	}
	for _, s := range []string{"", "DEV", "tee_gpu", "tier(0)", "tier(1)", " dev"} {
		if got, err := attest.ParseTier(s); err == nil {
			t.Errorf("ParseTier(%q) = %v, want an error", s, got)
		}
	}
	if got := attest.Tier(0).String(); got != "tier(0)" {
		t.Errorf("zero tier prints %q", got)
	}
}

func TestVerdictLive(t *testing.T) {
	exp := t0.Add(time.Hour)
	tests := []struct {
		name string
		v    attest.Verdict
		at   time.Time
		want bool
	}{
		{"before expiry", attest.Verdict{Tier: attest.TierDev, Expiry: exp}, t0, true},
		{"at expiry", attest.Verdict{Tier: attest.TierDev, Expiry: exp}, exp, false},
		{"after expiry", attest.Verdict{Tier: attest.TierDev, Expiry: exp}, exp.Add(time.Second), false},
		{"zero tier", attest.Verdict{Expiry: exp}, t0, false},
		{"zero verdict", attest.Verdict{}, t0, false},
	}
	for _, tt := range tests {
		if got := tt.v.Live(tt.at); got != tt.want {
			t.Errorf("%s: Live = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBinding(t *testing.T) {
	_, pubA := fixedKey(t, 1)
	_, pubB := fixedKey(t, 2)
	bind := func(pub crypto.PubKey, exp time.Time) [64]byte {
		b, err := attest.Binding(pub, exp)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The documented layout: SHA-512(tag || protobuf public key || BE unix seconds).
	kb, err := crypto.MarshalPublicKey(pubA)
	if err != nil {
		t.Fatal(err)
	}
	msg := append([]byte(attest.BindingTag), kb...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(t0.Unix()))
	if got, want := bind(pubA, t0), sha512.Sum512(msg); got != want {
		t.Fatalf("Binding = %x, want %x", got, want)
	}

	if bind(pubA, t0) != bind(pubA, t0) {
		t.Error("Binding is not deterministic")
	}
	if bind(pubA, t0) == bind(pubB, t0) {
		t.Error("two keys share a binding")
	}
	if bind(pubA, t0) == bind(pubA, t0.Add(time.Second)) {
		t.Error("two expiries a second apart share a binding")
	}
	if bind(pubA, t0) != bind(pubA, t0.Add(999*time.Millisecond)) {
		t.Error("the binding depends on more than whole seconds")
	}
	if bind(pubA, t0) != bind(pubA, t0.In(time.FixedZone("x", 3600))) {
		t.Error("the binding depends on the time zone")
	}
}

func TestCheckBinding(t *testing.T) {
	_, pubA := fixedKey(t, 1)
	_, pubB := fixedKey(t, 2)
	ev := func(pub crypto.PubKey, exp time.Time) *attest.Evidence {
		b, err := attest.Binding(pub, exp)
		if err != nil {
			t.Fatal(err)
		}
		return &attest.Evidence{Kind: "any", Expiry: exp.Unix(), ReportData: b[:]}
	}
	const maxValidity = time.Hour
	tests := []struct {
		name string
		ev   *attest.Evidence
		pub  crypto.PubKey
		want error
	}{
		{"good", ev(pubA, t0.Add(time.Minute)), pubA, nil},
		{"validity exactly the maximum", ev(pubA, t0.Add(maxValidity)), pubA, nil},
		{"validity over the maximum", ev(pubA, t0.Add(maxValidity+time.Second)), pubA, attest.ErrTooLong},
		{"another key", ev(pubA, t0.Add(time.Minute)), pubB, attest.ErrBinding},
		{"expired", ev(pubA, t0), pubA, attest.ErrExpired},
		{"far future expiry", ev(pubA, time.Unix(1<<62, 0)), pubA, attest.ErrTooLong},
		{"negative expiry", ev(pubA, time.Unix(-1, 0)), pubA, attest.ErrExpired},
		{"no report data", &attest.Evidence{Expiry: t0.Add(time.Minute).Unix()}, pubA, attest.ErrEmptyReport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := attest.CheckBinding(tt.ev, tt.pub, t0, maxValidity)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	ev, err := dev.Issuer{}.Issue(context.Background(), priv.GetPublic(), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	k := attest.NewKinds(map[string]attest.Validator{dev.Kind: dev.Validator{}})
	if v, err := k.Validate(context.Background(), ev, priv.GetPublic(), now); err != nil || v.Tier != attest.TierDev {
		t.Fatalf("dev accepted: %v, %v", v, err)
	}
	// The network stops accepting dev evidence.
	k.Set(dev.Kind, nil)
	if k.Accepts(dev.Kind) {
		t.Fatal("dev still accepted after Set(dev, nil)")
	}
	if _, err := k.Validate(context.Background(), ev, priv.GetPublic(), now); !errors.Is(err, attest.ErrKind) {
		t.Fatalf("err = %v, want ErrKind", err)
	}
	unknown := *ev
	unknown.Kind = "sev-snp"
	if _, err := attest.NewKinds(nil).Validate(context.Background(), &unknown, priv.GetPublic(), now); !errors.Is(err, attest.ErrKind) {
		t.Fatalf("unknown kind: err = %v, want ErrKind", err)
	}
}
