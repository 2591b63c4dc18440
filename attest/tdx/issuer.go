package tdx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
)

// Kind is the evidence kind this package issues and accepts.
const Kind = "tdx"

// MaxQuoteSize caps a quote before it is parsed. Real quotes are about
// 5 KiB, most of it the PEM certificate chain.
const MaxQuoteSize = 64 << 10

// ErrNoTDX means this machine offers no TDX guest interface to get quotes
// from; retrying cannot help.
var ErrNoTDX = errors.New("no TDX guest interface")

// ErrEmptyQuote means the quote provider answered without a quote (go-tdx-guest's
// providers can return an empty quote and no error); a retry may help.
var ErrEmptyQuote = errors.New("TDX quote provider returned an empty quote")

// QuoteProvider gets a quote from the TDX module whose REPORTDATA is
// reportData. OpenHardware returns the real one; tests use a fake.
type QuoteProvider interface {
	Quote(reportData [64]byte) ([]byte, error)
}

// Issuer makes TDX evidence: a quote over the binding of the node's key,
// its sealing key (if any) and expiry.
type Issuer struct {
	p QuoteProvider
}

// NewIssuer returns an Issuer getting quotes from p.
func NewIssuer(p QuoteProvider) *Issuer { return &Issuer{p: p} }

// Issue gets a quote whose REPORTDATA binds pub, and sealKey if not
// empty, until expiry. The provider call blocks in the kernel (3 ms to
// 1 s) and cannot be cancelled; ctx is checked before it.
func (i *Issuer) Issue(ctx context.Context, pub crypto.PubKey, expiry time.Time, sealKey []byte) (*attest.Evidence, error) {
	b, err := attest.Binding(pub, expiry, sealKey)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := i.p.Quote(b)
	if err != nil {
		return nil, fmt.Errorf("getting TDX quote: %w", err)
	}
	if len(raw) == 0 {
		return nil, ErrEmptyQuote
	}
	// Check what the provider gave back, so a node never presents
	// evidence that can only fail at its peers.
	q, err := parseQuote(raw)
	if err != nil {
		return nil, fmt.Errorf("quote from provider: %w", err)
	}
	if !bytes.Equal(q.GetTdQuoteBody().GetReportData(), b[:]) {
		return nil, fmt.Errorf("quote from provider: REPORTDATA is not the requested binding")
	}
	ev := &attest.Evidence{Kind: Kind, Expiry: expiry.Unix(), ReportData: b[:], Quote: raw}
	if len(sealKey) != 0 {
		ev.SealKey = bytes.Clone(sealKey)
	}
	return ev, nil
}
