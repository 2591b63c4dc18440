package tdx

import "crypto/x509"

// Internals that this package's external tests (package tdx_test) reach.

// NewValidatorTrusting is NewValidator trusting roots instead of Intel's:
// the tests' way to accept tdxtest's quotes without -tags cocoon_testroot.
func NewValidatorTrusting(cfg Config, roots ...*x509.Certificate) (*Validator, error) {
	return newValidator(cfg, roots...)
}

// PinnedRoot is pinnedRoot.
var PinnedRoot = pinnedRoot

// IntelRootPEM is the pinned copy of Intel's root.
const IntelRootPEM = intelRootPEM

// ChainRoot parses raw as a quote and returns the DER of the root of its
// PCK chain.
func ChainRoot(raw []byte) ([]byte, error) {
	q, err := parseQuote(raw)
	if err != nil {
		return nil, err
	}
	_, root, err := pckChain(q)
	return root, err
}
