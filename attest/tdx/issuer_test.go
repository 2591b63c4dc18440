package tdx_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
)

// fakeProvider stands in for the TDX module: it answers with a quote from
// quote, or err.
type fakeProvider struct {
	quote func(reportData [64]byte) []byte
	err   error
	calls int
}

func (f *fakeProvider) Quote(reportData [64]byte) ([]byte, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return f.quote(reportData), nil
}

func TestIssue(t *testing.T) {
	ctx := context.Background()
	s := newSynthetic(t)
	pub := key(t, 1)
	expiry := now.Add(time.Hour)
	spec := tdxtest.Spec{Measurement: measure(1), TEETCBSVN: [16]byte{3}}
	errDevice := errors.New("device busy")

	tests := []struct {
		name string
		p    *fakeProvider
		seal []byte // the sealing key to bind
		want error  // nil: issued and accepted
		msg  string
	}{
		{"quote over the binding", &fakeProvider{quote: func(rd [64]byte) []byte { return s.quote(t, rd, spec) }}, nil, nil, ""},
		{"quote over the binding with a sealing key", &fakeProvider{quote: func(rd [64]byte) []byte { return s.quote(t, rd, spec) }}, sealKey, nil, ""},
		{"quote over the binding without the sealing key", &fakeProvider{quote: func([64]byte) []byte { return s.quote(t, binding(t, pub, expiry), spec) }}, sealKey, nil, "REPORTDATA is not the requested binding"},
		{"sealing key too long", &fakeProvider{err: errors.New("unreachable")}, make([]byte, attest.MaxSealKey+1), attest.ErrFormat, ""},
		{"provider error", &fakeProvider{err: errDevice}, nil, errDevice, "getting TDX quote"},
		{"empty quote", &fakeProvider{quote: func([64]byte) []byte { return nil }}, nil, tdx.ErrEmptyQuote, ""},
		{"garbage", &fakeProvider{quote: func([64]byte) []byte { return []byte("not a quote") }}, nil, tdx.ErrMalformed, ""},
		{"quote over other data", &fakeProvider{quote: func([64]byte) []byte { return s.quote(t, [64]byte{1}, spec) }}, nil, nil, "REPORTDATA is not the requested binding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := tdx.NewIssuer(tt.p).Issue(ctx, pub, expiry, tt.seal)
			if tt.want == nil && tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				b := sealBinding(t, pub, expiry, tt.seal)
				if ev.Kind != tdx.Kind || ev.Expiry != expiry.Unix() || !bytes.Equal(ev.ReportData, b[:]) || len(ev.Quote) == 0 || !bytes.Equal(ev.SealKey, tt.seal) {
					t.Fatalf("evidence %+v", ev)
				}
				v, err := s.v.Validate(ctx, ev, pub, now)
				if err != nil || v.Tier != attest.TierTEE || !bytes.Equal(v.SealKey, tt.seal) {
					t.Fatalf("validating issued evidence: %+v, %v", v, err)
				}
				return
			}
			if err == nil || ev != nil {
				t.Fatalf("issued %+v", ev)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q, want it to say %q", err, tt.msg)
			}
		})
	}
}

func TestIssueCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := &fakeProvider{err: errors.New("unreachable")}
	if _, err := tdx.NewIssuer(p).Issue(ctx, key(t, 1), now.Add(time.Hour), sealKey); !errors.Is(err, context.Canceled) || p.calls != 0 {
		t.Fatalf("error %v after %d calls, want context.Canceled before any", err, p.calls)
	}
}

func TestOpenHardwareWithoutTDX(t *testing.T) {
	for _, path := range []string{"/sys/kernel/config/tsm/report", "/dev/tdx_guest"} {
		if _, err := os.Stat(path); err == nil {
			t.Skipf("%s exists: this machine may have TDX", path)
		}
	}
	p, err := tdx.OpenHardware()
	if !errors.Is(err, tdx.ErrNoTDX) || p != nil {
		t.Fatalf("OpenHardware() = %v, %v; want ErrNoTDX", p, err)
	}
	for _, tried := range []string{"configfs-tsm", "/dev/tdx_guest"} {
		if !strings.Contains(err.Error(), tried) {
			t.Errorf("error %q does not say it tried %s", err, tried)
		}
	}
	t.Log(err)
}
