package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
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
	sealA, sealB := []byte("sealing key A"), []byte("sealing key B")
	bind := func(pub crypto.PubKey, exp time.Time, seal []byte) [64]byte {
		b, err := attest.Binding(pub, exp, seal)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The documented layouts: v1 = SHA-512(tag || protobuf public key || BE
	// unix seconds); v2 adds a BE u32 length and the sealing key.
	kb, err := crypto.MarshalPublicKey(pubA)
	if err != nil {
		t.Fatal(err)
	}
	v1 := append([]byte(attest.BindingTagV1), kb...)
	v1 = binary.BigEndian.AppendUint64(v1, uint64(t0.Unix()))
	if got, want := bind(pubA, t0, nil), sha512.Sum512(v1); got != want {
		t.Fatalf("v1 Binding = %x, want %x", got, want)
	}
	v2 := append([]byte(attest.BindingTagV2), kb...)
	v2 = binary.BigEndian.AppendUint64(v2, uint64(t0.Unix()))
	v2 = binary.BigEndian.AppendUint32(v2, uint32(len(sealA)))
	v2 = append(v2, sealA...)
	if got, want := bind(pubA, t0, sealA), sha512.Sum512(v2); got != want {
		t.Fatalf("v2 Binding = %x, want %x", got, want)
	}

	for _, seal := range [][]byte{nil, sealA} {
		if bind(pubA, t0, seal) != bind(pubA, t0, seal) {
			t.Error("Binding is not deterministic")
		}
		if bind(pubA, t0, seal) == bind(pubB, t0, seal) {
			t.Error("two keys share a binding")
		}
		if bind(pubA, t0, seal) == bind(pubA, t0.Add(time.Second), seal) {
			t.Error("two expiries a second apart share a binding")
		}
		if bind(pubA, t0, seal) != bind(pubA, t0.Add(999*time.Millisecond), seal) {
			t.Error("the binding depends on more than whole seconds")
		}
		if bind(pubA, t0, seal) != bind(pubA, t0.In(time.FixedZone("x", 3600)), seal) {
			t.Error("the binding depends on the time zone")
		}
	}
	if bind(pubA, t0, sealA) == bind(pubA, t0, sealB) {
		t.Error("two sealing keys share a binding")
	}
	if bind(pubA, t0, sealA) == bind(pubA, t0, nil) {
		t.Error("a sealing key does not change the binding")
	}
	if bind(pubA, t0, []byte{}) != bind(pubA, t0, nil) {
		t.Error("an empty sealing key is not the v1 binding")
	}
	if bind(pubA, t0, []byte{0}) == bind(pubA, t0, []byte{0, 0}) {
		t.Error("sealing keys differing in length share a binding")
	}
	if _, err := attest.Binding(pubA, t0, make([]byte, attest.MaxSealKey)); err != nil {
		t.Errorf("sealing key of MaxSealKey bytes: %v", err)
	}
	if _, err := attest.Binding(pubA, t0, make([]byte, attest.MaxSealKey+1)); !errors.Is(err, attest.ErrFormat) {
		t.Errorf("oversized sealing key: %v, want ErrFormat", err)
	}
}

func TestCheckBinding(t *testing.T) {
	_, pubA := fixedKey(t, 1)
	_, pubB := fixedKey(t, 2)
	seal, other := []byte("sealing key"), []byte("another sealing key")
	ev := func(pub crypto.PubKey, exp time.Time, seal []byte) *attest.Evidence {
		b, err := attest.Binding(pub, exp, seal)
		if err != nil {
			t.Fatal(err)
		}
		return &attest.Evidence{Kind: "any", Expiry: exp.Unix(), ReportData: b[:], SealKey: seal}
	}
	with := func(ev *attest.Evidence, f func(*attest.Evidence)) *attest.Evidence { f(ev); return ev }
	min := t0.Add(time.Minute)
	const maxValidity = time.Hour
	tests := []struct {
		name string
		ev   *attest.Evidence
		pub  crypto.PubKey
		want error
		msg  string // in the error, when it is a rejection
	}{
		{"good", ev(pubA, min, nil), pubA, nil, ""},
		{"good with a sealing key", ev(pubA, min, seal), pubA, nil, ""},
		{"validity exactly the maximum", ev(pubA, t0.Add(maxValidity), nil), pubA, nil, ""},
		{"validity over the maximum", ev(pubA, t0.Add(maxValidity+time.Second), nil), pubA, attest.ErrTooLong, ""},
		{"another key", ev(pubA, min, nil), pubB, attest.ErrBinding, "v1 binding"},
		{"another key with a sealing key", ev(pubA, min, seal), pubB, attest.ErrBinding, "sealing key"},
		{"sealing key swapped", with(ev(pubA, min, seal), func(e *attest.Evidence) { e.SealKey = other }), pubA, attest.ErrBinding, "v2 binding of the presenting peer's key, the evidence's sealing key"},
		{"sealing key stripped", with(ev(pubA, min, seal), func(e *attest.Evidence) { e.SealKey = nil }), pubA, attest.ErrBinding, "no sealing key"},
		{"sealing key added", with(ev(pubA, min, nil), func(e *attest.Evidence) { e.SealKey = seal }), pubA, attest.ErrBinding, "sealing key"},
		{"sealing key too long", with(ev(pubA, min, nil), func(e *attest.Evidence) { e.SealKey = make([]byte, attest.MaxSealKey+1) }), pubA, attest.ErrFormat, ""},
		{"expired", ev(pubA, t0, nil), pubA, attest.ErrExpired, ""},
		{"far future expiry", ev(pubA, time.Unix(1<<62, 0), nil), pubA, attest.ErrTooLong, ""},
		{"negative expiry", ev(pubA, time.Unix(-1, 0), nil), pubA, attest.ErrExpired, ""},
		{"no report data", &attest.Evidence{Expiry: min.Unix()}, pubA, attest.ErrEmptyReport, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := attest.CheckBinding(tt.ev, tt.pub, t0, maxValidity)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

func TestDecodeEvidence(t *testing.T) {
	_, pub := fixedKey(t, 1)
	issue := func(seal []byte) []byte {
		ev, err := dev.Issuer{}.Issue(context.Background(), pub, t0.Add(time.Hour), seal)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"v1 evidence", issue(nil), nil},
		{"v2 evidence", issue([]byte("sealing key")), nil},
		{"sealing key of the maximum size", []byte(`{"kind":"dev","seal_key":"` + b64(attest.MaxSealKey) + `"}`), nil},
		{"sealing key too long", []byte(`{"kind":"dev","seal_key":"` + b64(attest.MaxSealKey+1) + `"}`), attest.ErrFormat},
		{"report data too long", []byte(`{"kind":"dev","report_data":"` + b64(65) + `"}`), attest.ErrFormat},
		{"sealing key not base64", []byte(`{"kind":"dev","seal_key":"!"}`), attest.ErrFormat},
		{"over the size limit", append(issue(nil), make([]byte, attest.MaxEvidenceSize)...), attest.ErrFormat},
		{"not JSON", []byte("{"), attest.ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := attest.DecodeEvidence(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil {
				if ev != nil {
					t.Fatalf("error and evidence %+v", ev)
				}
				return
			}
			var want attest.Evidence
			if err := json.Unmarshal(tt.in, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*ev, want) {
				t.Fatalf("decoded %+v, want %+v", ev, want)
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
	ev, err := dev.Issuer{}.Issue(context.Background(), priv.GetPublic(), now.Add(time.Hour), nil)
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
