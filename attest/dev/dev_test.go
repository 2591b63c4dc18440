package dev_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
)

// now is the fixed clock of these tests.
var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// key makes a deterministic Ed25519 key from seed.
func key(t *testing.T, seed byte) crypto.PubKey {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestIssue(t *testing.T) {
	pub := key(t, 1)
	expiry := now.Add(time.Hour)
	for _, seal := range [][]byte{nil, []byte("sealing key")} {
		ev, err := dev.Issuer{}.Issue(context.Background(), pub, expiry, seal)
		if err != nil {
			t.Fatal(err)
		}
		want, err := attest.Binding(pub, expiry, seal)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind != dev.Kind || ev.Expiry != expiry.Unix() || !bytes.Equal(ev.ReportData, want[:]) || len(ev.Quote) != 0 || !bytes.Equal(ev.SealKey, seal) {
			t.Fatalf("evidence %+v", ev)
		}
	}
	if _, err := (dev.Issuer{}).Issue(context.Background(), pub, expiry, make([]byte, attest.MaxSealKey+1)); !errors.Is(err, attest.ErrFormat) {
		t.Fatalf("oversized sealing key: %v, want ErrFormat", err)
	}
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	pubA, pubB := key(t, 1), key(t, 2)
	issue := func(pub crypto.PubKey, expiry time.Time) *attest.Evidence {
		ev, err := dev.Issuer{}.Issue(ctx, pub, expiry, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	seal := []byte("sealing key")
	sealed := func(pub crypto.PubKey, expiry time.Time) *attest.Evidence {
		ev, err := dev.Issuer{}.Issue(ctx, pub, expiry, seal)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	hour := now.Add(time.Hour)

	tests := []struct {
		name    string
		ev      *attest.Evidence
		pub     crypto.PubKey
		at      time.Time
		want    error     // nil: accepted
		wantExp time.Time // the verdict's expiry when accepted
	}{
		{"good", issue(pubA, hour), pubA, now, nil, hour},
		{"good with a sealing key", sealed(pubA, hour), pubA, now, nil, hour},
		{"sealing key swapped", func() *attest.Evidence { ev := sealed(pubA, hour); ev.SealKey = []byte("another key"); return ev }(), pubA, now, attest.ErrBinding, time.Time{}},
		{"sealing key stripped", func() *attest.Evidence { ev := sealed(pubA, hour); ev.SealKey = nil; return ev }(), pubA, now, attest.ErrBinding, time.Time{}},
		{"sealing key added", func() *attest.Evidence { ev := issue(pubA, hour); ev.SealKey = seal; return ev }(), pubA, now, attest.ErrBinding, time.Time{}},
		{"sealed evidence replayed by another peer", sealed(pubA, hour), pubB, now, attest.ErrBinding, time.Time{}},
		{"one second before expiry", issue(pubA, hour), pubA, hour.Add(-time.Second), nil, hour},
		{"validity exactly the maximum", issue(pubA, now.Add(dev.MaxValidity)), pubA, now, nil, now.Add(dev.MaxValidity)},
		{"sub-second expiry is truncated", issue(pubA, hour.Add(500*time.Millisecond)), pubA, now, nil, hour},
		{"replayed by another peer", issue(pubA, hour), pubB, now, attest.ErrBinding, time.Time{}},
		{"at expiry", issue(pubA, hour), pubA, hour, attest.ErrExpired, time.Time{}},
		{"after expiry", issue(pubA, hour), pubA, hour.Add(time.Hour), attest.ErrExpired, time.Time{}},
		{"issued already expired", issue(pubA, now.Add(-time.Minute)), pubA, now, attest.ErrExpired, time.Time{}},
		{"too long", issue(pubA, now.Add(dev.MaxValidity+time.Second)), pubA, now, attest.ErrTooLong, time.Time{}},
		{"expiry moved", func() *attest.Evidence { ev := issue(pubA, hour); ev.Expiry += 3600; return ev }(), pubA, now, attest.ErrBinding, time.Time{}},
		{"report data flipped", func() *attest.Evidence { ev := issue(pubA, hour); ev.ReportData[10] ^= 1; return ev }(), pubA, now, attest.ErrBinding, time.Time{}},
		{"report data short", func() *attest.Evidence { ev := issue(pubA, hour); ev.ReportData = ev.ReportData[:63]; return ev }(), pubA, now, attest.ErrBinding, time.Time{}},
		{"report data long", func() *attest.Evidence { ev := issue(pubA, hour); ev.ReportData = append(ev.ReportData, 0); return ev }(), pubA, now, attest.ErrBinding, time.Time{}},
		{"report data empty", func() *attest.Evidence { ev := issue(pubA, hour); ev.ReportData = []byte{}; return ev }(), pubA, now, attest.ErrEmptyReport, time.Time{}},
		{"report data absent", func() *attest.Evidence { ev := issue(pubA, hour); ev.ReportData = nil; return ev }(), pubA, now, attest.ErrEmptyReport, time.Time{}},
		{"kind tdx", func() *attest.Evidence { ev := issue(pubA, hour); ev.Kind = "tdx"; return ev }(), pubA, now, attest.ErrKind, time.Time{}},
		{"kind empty", func() *attest.Evidence { ev := issue(pubA, hour); ev.Kind = ""; return ev }(), pubA, now, attest.ErrKind, time.Time{}},
		{"kind differs in case", func() *attest.Evidence { ev := issue(pubA, hour); ev.Kind = "DEV"; return ev }(), pubA, now, attest.ErrKind, time.Time{}},
		{"dev evidence carrying a quote", func() *attest.Evidence { ev := issue(pubA, hour); ev.Quote = []byte{1}; return ev }(), pubA, now, attest.ErrKind, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := dev.Validator{}.Validate(ctx, tt.ev, tt.pub, tt.at)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				if !reflect.DeepEqual(v, attest.Verdict{}) {
					t.Fatalf("rejected evidence gave verdict %+v", v)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := attest.Verdict{Tier: attest.TierDev, Kind: dev.Kind, Expiry: tt.wantExp, SealKey: tt.ev.SealKey}
			if v.Tier != want.Tier || v.Kind != want.Kind || !v.Expiry.Equal(want.Expiry) || !bytes.Equal(v.SealKey, want.SealKey) {
				t.Fatalf("verdict %+v, want %+v", v, want)
			}
			if !v.Live(tt.at) {
				t.Fatal("fresh verdict is not live")
			}
		})
	}
}
