package tdx_test

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// realQuote is a production quote; see testdata/README.md.
//
//go:embed testdata/tdx_prod_quote_SPR_E4.dat
var realQuote []byte

var (
	// realNow is a time at which realQuote's certificates and go-tdx-guest's
	// sample collateral are valid.
	realNow = time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)
	// now is the fixed clock of the synthetic quotes.
	now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
)

// key makes a deterministic Ed25519 key from seed.
func key(t testing.TB, seed byte) crypto.PubKey {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// binding is the v1 binding of pub until expiry.
func binding(t testing.TB, pub crypto.PubKey, expiry time.Time) [64]byte {
	t.Helper()
	return sealBinding(t, pub, expiry, nil)
}

// sealBinding is the binding of pub and sealKey until expiry.
func sealBinding(t testing.TB, pub crypto.PubKey, expiry time.Time, sealKey []byte) [64]byte {
	t.Helper()
	b, err := attest.Binding(pub, expiry, sealKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sealKey is the sealing key of these tests' v2 evidence; otherSealKey is
// the one an attacker would rather clients sealed to.
var (
	sealKey      = []byte("the worker's sealing key")
	otherSealKey = []byte("a proxy's sealing key")
)

// measure makes a measurement from seed.
func measure(seed byte) tdx.Measurement {
	var m tdx.Measurement
	for i := range m.MRTD {
		m.MRTD[i] = seed
	}
	for r := range m.RTMR {
		for i := range m.RTMR[r] {
			m.RTMR[r][i] = seed + byte(r) + 1
		}
	}
	return m
}

// fixedPolicy returns p on every call.
func fixedPolicy(p tdx.Policy) func() tdx.Policy { return func() tdx.Policy { return p } }

func productionValidator(t testing.TB) *tdx.Validator {
	t.Helper()
	v, err := tdx.NewValidator(tdx.Config{Policy: fixedPolicy(tdx.Policy{}), Collateral: tdx.CollateralOff})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRealQuoteIsGenuine(t *testing.T) {
	v := productionValidator(t)
	ctx := context.Background()
	r, err := v.VerifyQuote(ctx, realQuote, realNow)
	if err != nil {
		t.Fatalf("real quote at %s: %v", realNow, err)
	}
	if r.Debug || r.MRTD == ([48]byte{}) {
		t.Fatalf("report %+v", r)
	}
	// The PCK certificate expires in 2029.
	if _, err := v.VerifyQuote(ctx, realQuote, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, tdx.ErrNotGenuine) {
		t.Fatalf("after the PCK certificate expired: %v, want ErrNotGenuine", err)
	}
	// Its REPORTDATA is not a cocoon binding, so as evidence it fails the
	// binding, whatever the policy.
	ev := &attest.Evidence{Kind: tdx.Kind, Expiry: realNow.Add(time.Hour).Unix(), ReportData: r.ReportData[:], Quote: realQuote}
	if _, err := v.Validate(ctx, ev, key(t, 1), realNow); !errors.Is(err, attest.ErrBinding) {
		t.Fatalf("real quote as evidence: %v, want ErrBinding", err)
	}
}

func TestRootIsPinned(t *testing.T) {
	root, err := tdx.PinnedRoot(tdx.IntelRootPEM, tdx.IntelRootFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if root.Subject.CommonName != "Intel SGX Root CA" || !root.IsCA {
		t.Fatalf("pinned root %s", root.Subject)
	}
	// The real quote's chain ends at the same certificate.
	if chainRoot, err := tdx.ChainRoot(realQuote); err != nil || !bytes.Equal(chainRoot, root.Raw) {
		t.Fatalf("real quote's root differs from the pinned one (%v)", err)
	}
	// A copy that does not match the fingerprint is refused.
	other := tdxtest.New(t, now.Add(-time.Hour), now.Add(time.Hour)).Root()
	for name, pemText := range map[string]string{
		"other certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw})),
		"two certificates":  tdx.IntelRootPEM + "\n" + tdx.IntelRootPEM,
		"not PEM":           "Intel SGX Root CA",
	} {
		if _, err := tdx.PinnedRoot(pemText, tdx.IntelRootFingerprint); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestConfigCannotChangeRoot: the production constructor takes only a
// Config, and no Config field can carry a certificate or a pool. A new
// field fails this test until it is added here after review.
func TestConfigCannotChangeRoot(t *testing.T) {
	want := map[string]string{
		"Policy":      "func() tdx.Policy",
		"MaxValidity": "time.Duration",
		"Collateral":  "tdx.Collateral",
		"CacheDir":    "string",
		"Refresh":     "time.Duration",
		"Getter":      "tdx.Getter",
		"Now":         "func() time.Time",
		"Log":         "*slog.Logger",
	}
	typ := reflect.TypeFor[tdx.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if got := f.Type.String(); want[f.Name] != got {
			t.Errorf("Config.%s is a %s: review that it cannot carry a root", f.Name, got)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[tdx.Policy](), reflect.TypeFor[tdx.TCB](), reflect.TypeFor[tdx.Measurement]()} {
		for i := range typ.NumField() {
			if k := typ.Field(i).Type.Kind(); k != reflect.Slice && k != reflect.Struct && k != reflect.Array && k != reflect.Bool && k != reflect.Uint16 {
				t.Errorf("%s.%s is a %s", typ, typ.Field(i).Name, typ.Field(i).Type)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	pol := fixedPolicy(tdx.Policy{})
	tests := []struct {
		name  string
		cfg   tdx.Config
		field string // named in the error; "" for valid
	}{
		{"off", tdx.Config{Policy: pol, Collateral: tdx.CollateralOff}, ""},
		{"on", tdx.Config{Policy: pol, Collateral: tdx.CollateralOn, CacheDir: "x"}, ""},
		{"no policy", tdx.Config{Collateral: tdx.CollateralOff}, "Policy"},
		{"collateral unsaid", tdx.Config{Policy: pol}, "Collateral"},
		{"collateral bogus", tdx.Config{Policy: pol, Collateral: 9}, "Collateral"},
		{"on without cache", tdx.Config{Policy: pol, Collateral: tdx.CollateralOn}, "CacheDir"},
		{"negative validity", tdx.Config{Policy: pol, Collateral: tdx.CollateralOff, MaxValidity: -1}, "MaxValidity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "Config."+tt.field) {
				t.Fatalf("error %v, want one naming Config.%s", err, tt.field)
			}
		})
	}
}

// synthetic is a fake Intel chain, a validator trusting it, and a policy
// allowing measure(1).
type synthetic struct {
	intel  *tdxtest.Intel
	v      *tdx.Validator
	policy tdx.Policy
}

func newSynthetic(t testing.TB) *synthetic {
	t.Helper()
	s := &synthetic{
		intel: tdxtest.New(t, now.Add(-30*24*time.Hour), now.Add(30*24*time.Hour)),
		policy: tdx.Policy{
			Measurements: []tdx.Measurement{measure(7), measure(1)},
			MinTCB:       tdx.TCB{TEETCBSVN: [16]byte{3}, CPUSVN: [16]byte{5, 5}, PCESVN: 11},
		},
	}
	v, err := tdx.NewValidatorTrusting(tdx.Config{Policy: func() tdx.Policy { return s.policy }, Collateral: tdx.CollateralOff}, s.intel.Root())
	if err != nil {
		t.Fatal(err)
	}
	s.v = v
	return s
}

// evidence is TDX evidence binding pub until expiry for a TD measured m,
// its TEE_TCB_SVN at the policy's minimum.
func (s *synthetic) evidence(t testing.TB, pub crypto.PubKey, expiry time.Time, m tdx.Measurement) *attest.Evidence {
	t.Helper()
	return s.sealedEvidence(t, pub, expiry, m, nil)
}

// sealedEvidence is evidence binding pub and seal (v2; v1 when seal is
// empty) until expiry for a TD measured m.
func (s *synthetic) sealedEvidence(t testing.TB, pub crypto.PubKey, expiry time.Time, m tdx.Measurement, seal []byte) *attest.Evidence {
	t.Helper()
	b := sealBinding(t, pub, expiry, seal)
	q := s.quote(t, b, tdxtest.Spec{Measurement: m, TEETCBSVN: [16]byte{3, 0, 4}})
	return &attest.Evidence{Kind: tdx.Kind, Expiry: expiry.Unix(), ReportData: b[:], Quote: q, SealKey: bytes.Clone(seal)}
}

// quote is a synthetic quote over rd for a TD as spec says.
func (s *synthetic) quote(t testing.TB, rd [64]byte, spec tdxtest.Spec) []byte {
	t.Helper()
	q, err := s.intel.Quote(rd, spec)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// rebind returns a copy of ev whose quote's REPORTDATA and evidence say
// rd, the quote's signatures untouched.
func rebind(ev *attest.Evidence, rd [64]byte) *attest.Evidence {
	out := *ev
	out.Quote = bytes.Clone(ev.Quote)
	copy(out.Quote[tdxtest.OffsetReportData:], rd[:])
	out.ReportData = rd[:]
	return &out
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	s := newSynthetic(t)
	pubA, pubB := key(t, 1), key(t, 2)
	hour := now.Add(time.Hour)
	good := s.evidence(t, pubA, hour, measure(1))
	sealed := s.sealedEvidence(t, pubA, hour, measure(1), sealKey)

	// with returns a copy of good changed by f.
	with := func(f func(ev *attest.Evidence)) *attest.Evidence {
		ev := *good
		ev.ReportData = bytes.Clone(good.ReportData)
		ev.Quote = bytes.Clone(good.Quote)
		f(&ev)
		return &ev
	}
	// sealedWith returns a copy of sealed changed by f.
	sealedWith := func(f func(ev *attest.Evidence)) *attest.Evidence {
		ev := *sealed
		ev.ReportData = bytes.Clone(sealed.ReportData)
		ev.Quote = bytes.Clone(sealed.Quote)
		ev.SealKey = bytes.Clone(sealed.SealKey)
		f(&ev)
		return &ev
	}
	quoteWith := func(rd [64]byte, spec tdxtest.Spec) *attest.Evidence {
		return with(func(ev *attest.Evidence) { ev.Quote = s.quote(t, rd, spec) })
	}
	bA := binding(t, pubA, hour)

	tests := []struct {
		name string
		ev   *attest.Evidence
		pub  crypto.PubKey
		v    *tdx.Validator
		want error // nil: accepted as TierTEE
	}{
		{"valid", good, pubA, nil, nil},
		{"valid with a sealing key", sealed, pubA, nil, nil},
		{"sealing key swapped", sealedWith(func(ev *attest.Evidence) { ev.SealKey = otherSealKey }), pubA, nil, attest.ErrBinding},
		{"sealing key stripped", sealedWith(func(ev *attest.Evidence) { ev.SealKey = nil }), pubA, nil, attest.ErrBinding},
		{"sealing key added to v1 evidence", with(func(ev *attest.Evidence) { ev.SealKey = otherSealKey }), pubA, nil, attest.ErrBinding},
		{"sealing key swapped with report data rebound", func() *attest.Evidence {
			ev := sealedWith(func(ev *attest.Evidence) { ev.SealKey = otherSealKey })
			b := sealBinding(t, pubA, hour, otherSealKey)
			ev.ReportData = b[:]
			return ev
		}(), pubA, nil, attest.ErrBinding},
		{"sealing key swapped in the quote too", func() *attest.Evidence {
			ev := rebind(sealed, sealBinding(t, pubA, hour, otherSealKey))
			ev.SealKey = otherSealKey
			return ev
		}(), pubA, nil, tdx.ErrNotGenuine},
		{"sealed evidence replayed by another peer", sealed, pubB, nil, attest.ErrBinding},
		{"wrong kind", with(func(ev *attest.Evidence) { ev.Kind = "dev" }), pubA, nil, attest.ErrKind},
		{"empty quote", with(func(ev *attest.Evidence) { ev.Quote = nil }), pubA, nil, tdx.ErrMalformed},
		{"oversize quote", with(func(ev *attest.Evidence) { ev.Quote = append(ev.Quote, make([]byte, tdx.MaxQuoteSize)...) }), pubA, nil, tdx.ErrMalformed},
		{"truncated quote", with(func(ev *attest.Evidence) { ev.Quote = ev.Quote[:len(ev.Quote)/2] }), pubA, nil, tdx.ErrMalformed},
		{"tampered TD report", with(func(ev *attest.Evidence) { ev.Quote[tdxtest.OffsetMRTD] ^= 1 }), pubA, nil, tdx.ErrNotGenuine},
		{"tampered report data", func() *attest.Evidence { // rebound to a later expiry
			ev := rebind(good, binding(t, pubA, hour.Add(time.Hour)))
			ev.Expiry = hour.Add(time.Hour).Unix()
			return ev
		}(), pubA, nil, tdx.ErrNotGenuine},
		{"report data flipped in the quote", with(func(ev *attest.Evidence) { ev.Quote[tdxtest.OffsetReportData] ^= 1 }), pubA, nil, attest.ErrBinding},
		{"tampered QE report", with(func(ev *attest.Evidence) { ev.Quote[tdxtest.OffsetQEReport+0x100] ^= 1 }), pubA, nil, tdx.ErrNotGenuine},
		{"wrong root", good, pubA, productionValidator(t), tdx.ErrNotGenuine},
		{"replayed by another peer", good, pubB, nil, attest.ErrBinding},
		{"evidence rebound to another peer", with(func(ev *attest.Evidence) {
			b := binding(t, pubB, hour)
			ev.ReportData = b[:]
		}), pubB, nil, attest.ErrBinding},
		{"quote over other data", quoteWith([64]byte{}, tdxtest.Spec{Measurement: measure(1), TEETCBSVN: [16]byte{3}}), pubA, nil, attest.ErrBinding},
		{"expiry changed", with(func(ev *attest.Evidence) { ev.Expiry++ }), pubA, nil, attest.ErrBinding},
		{"expired", s.evidence(t, pubA, now.Add(-time.Minute), measure(1)), pubA, nil, attest.ErrExpired},
		{"validity too long", s.evidence(t, pubA, now.Add(tdx.DefaultMaxValidity+time.Hour), measure(1)), pubA, nil, attest.ErrTooLong},
		{"measurement not allowed", s.evidence(t, pubA, hour, measure(2)), pubA, nil, tdx.ErrMeasurement},
		{"one RTMR differs", quoteWith(bA, tdxtest.Spec{Measurement: func() tdx.Measurement { m := measure(1); m.RTMR[3][0] ^= 1; return m }(), TEETCBSVN: [16]byte{3}}), pubA, nil, tdx.ErrMeasurement},
		{"debug TD", quoteWith(bA, tdxtest.Spec{Measurement: measure(1), TEETCBSVN: [16]byte{3}, TDAttributes: [8]byte{1}}), pubA, nil, tdx.ErrDebug},
		{"TEE TCB below minimum", quoteWith(bA, tdxtest.Spec{Measurement: measure(1), TEETCBSVN: [16]byte{2, 9, 9}}), pubA, nil, tdx.ErrTCB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.v
			if v == nil {
				v = s.v
			}
			got, err := v.Validate(ctx, tt.ev, tt.pub, now)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got.Tier != attest.TierTEE || got.Kind != tdx.Kind || !got.Expiry.Equal(time.Unix(tt.ev.Expiry, 0)) || !bytes.Equal(got.SealKey, tt.ev.SealKey) {
					t.Fatalf("verdict %+v", got)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			t.Log(err)
			if !reflect.DeepEqual(got, attest.Verdict{}) {
				t.Fatalf("rejected with verdict %+v", got)
			}
		})
	}
}

// TestBindingCheckedFirst: the binding (a hash, and the quote's
// REPORTDATA read unverified) is checked before the quote's signatures and
// chain. The production validator trusts only Intel's root, so it finds
// every synthetic quote not genuine once it verifies one: these rejections
// for the binding show it never got that far.
func TestBindingCheckedFirst(t *testing.T) {
	ctx := context.Background()
	s := newSynthetic(t)
	prod := productionValidator(t)
	pubA, pubB := key(t, 1), key(t, 2)
	hour := now.Add(time.Hour)
	sealed := s.sealedEvidence(t, pubA, hour, measure(1), sealKey)
	if _, err := prod.Validate(ctx, sealed, pubA, now); !errors.Is(err, tdx.ErrNotGenuine) {
		t.Fatalf("bound evidence under a test root: %v, want ErrNotGenuine", err)
	}
	tests := []struct {
		name string
		ev   *attest.Evidence
		pub  crypto.PubKey
		want error
	}{
		{"replayed by another peer", sealed, pubB, attest.ErrBinding},
		{"sealing key swapped", func() *attest.Evidence { ev := *sealed; ev.SealKey = otherSealKey; return &ev }(), pubA, attest.ErrBinding},
		{"rebound to another sealing key, quote untouched", func() *attest.Evidence {
			ev := *sealed
			ev.SealKey = otherSealKey
			b := sealBinding(t, pubA, hour, otherSealKey)
			ev.ReportData = b[:]
			return &ev
		}(), pubA, attest.ErrBinding},
		{"expired", s.sealedEvidence(t, pubA, now, measure(1), sealKey), pubA, attest.ErrExpired},
		{"validity too long", s.sealedEvidence(t, pubA, now.Add(tdx.DefaultMaxValidity+time.Hour), measure(1), sealKey), pubA, attest.ErrTooLong},
		{"garbage quote, unbound", func() *attest.Evidence { ev := *sealed; ev.Quote = []byte("garbage"); return &ev }(), pubB, attest.ErrBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := prod.Validate(ctx, tt.ev, tt.pub, now); !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPolicyFollowsItsSource(t *testing.T) {
	ctx := context.Background()
	s := newSynthetic(t)
	pub := key(t, 1)
	ev := s.evidence(t, pub, now.Add(time.Hour), measure(1))
	if _, err := s.v.Validate(ctx, ev, pub, now); err != nil {
		t.Fatal(err)
	}
	s.policy.Measurements = []tdx.Measurement{measure(7)} // the registry dropped measure(1)
	if _, err := s.v.Validate(ctx, ev, pub, now); !errors.Is(err, tdx.ErrMeasurement) {
		t.Fatalf("after the allow-list changed: %v, want ErrMeasurement", err)
	}
	s.policy = tdx.Policy{}
	if _, err := s.v.Validate(ctx, ev, pub, now); !errors.Is(err, tdx.ErrMeasurement) {
		t.Fatalf("empty policy: %v, want ErrMeasurement", err)
	}
	s.policy = tdx.Policy{Measurements: []tdx.Measurement{measure(1)}, MinTCB: tdx.TCB{PCESVN: tdxtest.PCESVN + 1}}
	if _, err := s.v.Validate(ctx, ev, pub, now); !errors.Is(err, tdx.ErrTCB) {
		t.Fatalf("PCESVN minimum above the platform's: %v, want ErrTCB", err)
	}
	s.policy = tdx.Policy{Measurements: []tdx.Measurement{measure(1)}, MinTCB: tdx.TCB{CPUSVN: [16]byte{tdxtest.CPUSVN[0] + 1}}}
	if _, err := s.v.Validate(ctx, ev, pub, now); !errors.Is(err, tdx.ErrTCB) {
		t.Fatalf("CPUSVN minimum above the platform's: %v, want ErrTCB", err)
	}
}

func TestCertificatesExpire(t *testing.T) {
	s := newSynthetic(t)
	pub := key(t, 1)
	later := now.Add(31 * 24 * time.Hour)
	ev := s.evidence(t, pub, later.Add(time.Hour), measure(1))
	if _, err := s.v.Validate(context.Background(), ev, pub, later); !errors.Is(err, tdx.ErrNotGenuine) {
		t.Fatalf("after the PCK chain expired: %v, want ErrNotGenuine", err)
	}
}

// BenchmarkVerifyQuote times the genuineness check of the real quote:
// parsing, both signatures, the PCK chain up to the pinned root.
func BenchmarkVerifyQuote(b *testing.B) {
	v := productionValidator(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := v.VerifyQuote(ctx, realQuote, realNow); err != nil {
			b.Fatal(err)
		}
	}
}
