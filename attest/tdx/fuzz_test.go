package tdx_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
)

// FuzzValidate feeds arbitrary quotes to Validate: nothing may panic, and
// whatever is accepted must carry the signed header and TD report of the
// one valid seed unchanged (bytes outside them, such as the ECDSA
// signature's other valid encoding, may differ without forging anything).
// The production validator, pinned to Intel, accepts none of them.
func FuzzValidate(f *testing.F) {
	s := newSynthetic(f)
	prod := productionValidator(f)
	pub := key(f, 1)
	expiry := now.Add(time.Hour)
	good := s.evidence(f, pub, expiry, measure(1))
	signed := good.Quote[:tdxtest.SignedLen]

	f.Add(good.Quote)
	f.Add(realQuote)
	f.Add(good.Quote[:tdxtest.SignedLen+4])
	f.Add(realQuote[:len(realQuote)-100])
	f.Add([]byte{4, 0, 2, 0, 0x81, 0, 0, 0})
	f.Fuzz(func(t *testing.T, quote []byte) {
		ctx := context.Background()
		ev := &attest.Evidence{Kind: tdx.Kind, Expiry: good.Expiry, ReportData: good.ReportData, Quote: quote}
		_, err := s.v.Validate(ctx, ev, pub, now)
		if err == nil && !bytes.HasPrefix(quote, signed) {
			t.Fatalf("accepted a quote whose signed part differs from the seed's")
		}
		if err != nil && !isRejection(err) {
			t.Fatalf("undocumented error %v", err)
		}
		if _, err := prod.Validate(ctx, ev, pub, now); err == nil {
			t.Fatalf("production validator accepted a fuzzed quote")
		}
		if _, err := prod.VerifyQuote(ctx, quote, realNow); err == nil && !bytes.Equal(quote, realQuote) && !bytes.HasPrefix(quote, realQuote[:tdxtest.SignedLen]) {
			t.Fatalf("production validator found a fuzzed quote genuine")
		}
	})
}

// isRejection reports whether err is one of the documented reasons.
func isRejection(err error) bool {
	for _, e := range []error{tdx.ErrMalformed, tdx.ErrNotGenuine, tdx.ErrMeasurement, tdx.ErrDebug, tdx.ErrTCB, attest.ErrBinding, attest.ErrExpired, attest.ErrTooLong, attest.ErrEmptyReport, attest.ErrKind, attest.ErrFormat} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzValidateSealKey presents one genuine v2 quote with arbitrary sealing
// keys in the evidence: only the key the quote binds is accepted, and the
// verdict carries exactly it.
func FuzzValidateSealKey(f *testing.F) {
	s := newSynthetic(f)
	pub := key(f, 1)
	good := s.sealedEvidence(f, pub, now.Add(time.Hour), measure(1), sealKey)
	f.Add(sealKey)
	f.Add(otherSealKey)
	f.Add([]byte{})
	f.Add(sealKey[:len(sealKey)-1])
	f.Add(append(bytes.Clone(sealKey), 0))
	f.Add(make([]byte, attest.MaxSealKey+1))
	f.Fuzz(func(t *testing.T, seal []byte) {
		ev := *good
		ev.SealKey = seal
		v, err := s.v.Validate(context.Background(), &ev, pub, now)
		if bytes.Equal(seal, sealKey) {
			if err != nil || !bytes.Equal(v.SealKey, sealKey) {
				t.Fatalf("the bound key: verdict %+v, %v", v, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("accepted sealing key %x for a quote binding %x", seal, sealKey)
		}
		if !errors.Is(err, attest.ErrBinding) && !errors.Is(err, attest.ErrFormat) {
			t.Fatalf("sealing key %x refused with %v, want ErrBinding or ErrFormat", seal, err)
		}
	})
}
