package tdx

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
)

// Rejection reasons, beside attest.ErrKind, attest.ErrBinding,
// attest.ErrExpired, attest.ErrTooLong and attest.ErrEmptyReport. Only
// ErrCollateralUnavailable can go away on retry with the same evidence.
var (
	// ErrMalformed: no quote, a quote over MaxQuoteSize, or bytes that do
	// not parse as a TDX v4 quote.
	ErrMalformed = errors.New("TDX quote malformed")
	// ErrNotGenuine: a signature, the PCK certificate chain, a certificate's
	// validity or the root (not Intel's) failed.
	ErrNotGenuine = errors.New("TDX quote not genuine")
	// ErrCollateral: Intel's TCB info or QE identity rejected the quote (TCB
	// not up to date, unknown QE), a certificate is revoked, or the
	// collateral itself failed its signatures or expired.
	ErrCollateral = errors.New("TDX quote rejected by Intel collateral")
	// ErrCollateralUnavailable: collateral was needed, Intel PCS could not
	// be reached and the cache held none; a retry may help.
	ErrCollateralUnavailable = errors.New("TDX collateral unavailable")
	// ErrMeasurement: MRTD and RTMR0-3 are not an entry of the policy's
	// allow-list.
	ErrMeasurement = errors.New("TD measurements not on the allow-list")
	// ErrDebug: the TD runs in debug mode, so its host can read its memory.
	ErrDebug = errors.New("TD is a debug TD")
	// ErrTCB: the TD's or platform's security versions are below the
	// policy's minimum.
	ErrTCB = errors.New("TDX TCB below the policy minimum")
)

// DefaultMaxValidity bounds how far ahead TDX evidence may expire when the
// Config leaves MaxValidity zero.
const DefaultMaxValidity = 24 * time.Hour

// Measurement is one accepted TD image: MRTD (the initial TD memory,
// firmware included) and RTMR0-3 (firmware config, kernel and command line,
// as extended at boot).
type Measurement struct {
	MRTD [48]byte
	RTMR [4][48]byte
}

// String prints the measurement in hex, MRTD first.
func (m Measurement) String() string {
	s := "mrtd=" + hex.EncodeToString(m.MRTD[:])
	for i, r := range m.RTMR {
		s += fmt.Sprintf(" rtmr%d=%s", i, hex.EncodeToString(r[:]))
	}
	return s
}

// TCB is a minimum of security versions; zero everywhere accepts any.
// Components are compared one by one: each must be at least the minimum.
type TCB struct {
	// TEETCBSVN is the TD report's TEE_TCB_SVN (TDX module and SEAM
	// versions).
	TEETCBSVN [16]byte
	// CPUSVN is the 16 SGX TCB components of the PCK certificate
	// (microcode, BIOS ACMs).
	CPUSVN [16]byte
	// PCESVN is the provisioning enclave's version from the PCK certificate.
	PCESVN uint16
}

// Policy is what the network accepts, from its root contract: the node maps
// the registry's allow-list to it.
type Policy struct {
	// Measurements accepted; empty accepts nothing.
	Measurements []Measurement
	// MinTCB is the minimum TCB; see TCB.
	MinTCB TCB
	// AllowDebug accepts debug TDs; never on a network with real users.
	AllowDebug bool
}

// Collateral says whether quotes are checked against Intel's collateral.
// The zero value is invalid, so every Config says it.
type Collateral uint8

const (
	// CollateralOff verifies the quote offline: the quote signature by the
	// attestation key, the QE report signature by the PCK key, the QE
	// report's hash of the attestation key, the PCK chain up to Intel's
	// pinned root and every certificate's validity at the given time. It
	// does not know whether the platform's TCB is current, whether the QE
	// is Intel's current quoting enclave, or whether the PCK certificate
	// was revoked: Policy.MinTCB is the only TCB check.
	CollateralOff Collateral = 1
	// CollateralOn adds Intel's TDX TCB info and QE identity (signed by
	// Intel's TCB signing key under the same root): the platform TCB level,
	// the TDX module identity and the QE identity must be UpToDate, and
	// neither the PCK nor the intermediate certificate may be on Intel's
	// CRLs. Collateral comes from Intel PCS through a disk cache.
	CollateralOn Collateral = 2
)

func (c Collateral) String() string {
	switch c {
	case CollateralOff:
		return "off"
	case CollateralOn:
		return "on"
	}
	return fmt.Sprintf("collateral(%d)", uint8(c))
}

// Config configures a Validator.
type Config struct {
	// Policy returns the policy in force; it is called on every
	// validation, so it follows root-contract updates. Required.
	Policy func() Policy
	// MaxValidity bounds how far ahead evidence may expire; zero means
	// DefaultMaxValidity.
	MaxValidity time.Duration
	// Collateral is CollateralOff or CollateralOn. Required.
	Collateral Collateral
	// CacheDir keeps Intel PCS answers (files 0600) so collateral checks
	// work while Intel is unreachable. Required with CollateralOn.
	CacheDir string
	// Refresh is how old a cached answer may be before it is fetched again;
	// zero means an hour. An answer past Intel's nextUpdate fails the check
	// whatever its age here.
	Refresh time.Duration
	// Getter fetches from Intel PCS; nil means NewHTTPSGetter. One that is
	// also a ContextGetter is called with the validation's context.
	// Package attest/collateral's Getter falls back to peers' caches when
	// Intel cannot be reached.
	Getter Getter
	// Now is the cache's clock; nil means time.Now. Verification itself
	// uses the time given to Validate.
	Now func() time.Time
	// Log receives cache events; nil discards them.
	Log *slog.Logger
}

// Validate checks the fields, naming the first one that is wrong.
func (c *Config) Validate() error {
	switch {
	case c.Policy == nil:
		return errors.New("tdx: Config.Policy is required")
	case c.MaxValidity < 0:
		return errors.New("tdx: Config.MaxValidity is negative")
	case c.Collateral != CollateralOff && c.Collateral != CollateralOn:
		return fmt.Errorf("tdx: Config.Collateral is %s: want CollateralOff or CollateralOn", c.Collateral)
	case c.Collateral == CollateralOn && c.CacheDir == "":
		return errors.New("tdx: Config.CacheDir is required with CollateralOn")
	case c.Refresh < 0:
		return errors.New("tdx: Config.Refresh is negative")
	}
	return nil
}

// Validator checks TDX evidence: first that the quote is genuine, then that
// it is acceptable. It is safe for concurrent use.
type Validator struct {
	cfg      Config
	roots    *x509.CertPool
	rootDERs [][]byte // DER of each trusted root
	cache    *cache   // nil with CollateralOff
}

// NewValidator returns a Validator trusting only Intel's SGX Root CA,
// pinned by IntelRootFingerprint. No Config field can change the root. (A
// binary built with -tags cocoon_testroot also trusts the roots given to
// TrustTestRoot; see "Trust root" in the package doc.)
func NewValidator(cfg Config) (*Validator, error) {
	root, err := pinnedRoot(intelRootPEM, IntelRootFingerprint)
	if err != nil {
		return nil, err
	}
	test := trustedTestRoots()
	v, err := newValidator(cfg, append([]*x509.Certificate{root}, test...)...)
	if err != nil {
		return nil, err
	}
	if len(test) > 0 {
		v.cfg.Log.Warn("trusting test roots beside Intel's: this binary was built with -tags cocoon_testroot", "roots", len(test))
	}
	return v, nil
}

// newValidator trusts roots. Only NewValidator and this package's tests
// call it.
func newValidator(cfg Config, roots ...*x509.Certificate) (*Validator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, errors.New("tdx: no trusted root")
	}
	if cfg.MaxValidity == 0 {
		cfg.MaxValidity = DefaultMaxValidity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Log = cfg.Log.With("component", "attest/tdx")
	v := &Validator{cfg: cfg, roots: x509.NewCertPool()}
	for _, r := range roots {
		v.roots.AddCert(r)
		v.rootDERs = append(v.rootDERs, r.Raw)
	}
	if cfg.Collateral == CollateralOn {
		var err error
		if v.cache, err = newCache(cfg); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Report is what a genuine quote says about its TD.
type Report struct {
	Measurement
	ReportData [64]byte
	TEETCBSVN  [16]byte
	CPUSVN     [16]byte // from the PCK certificate
	PCESVN     uint16   // from the PCK certificate
	Debug      bool
}

// Validate checks ev from the holder of pub at now: kind, then the binding
// (a hash, and the quote's REPORTDATA read without verifying anything),
// and only then whether the quote is genuine (signatures, chain,
// collateral: about a millisecond, more when collateral is fetched) and
// acceptable. The verdict is attest.TierTEE until ev's expiry, carrying
// the sealing key the quote binds.
func (v *Validator) Validate(ctx context.Context, ev *attest.Evidence, pub crypto.PubKey, now time.Time) (attest.Verdict, error) {
	if ev.Kind != Kind {
		return attest.Verdict{}, attest.ErrKind
	}
	if err := attest.CheckBinding(ev, pub, now, v.cfg.MaxValidity); err != nil {
		return attest.Verdict{}, err
	}
	q, err := parseBounded(ev.Quote)
	if err != nil {
		return attest.Verdict{}, err
	}
	if !bytes.Equal(q.GetTdQuoteBody().GetReportData(), ev.ReportData) {
		return attest.Verdict{}, fmt.Errorf("%w: quote REPORTDATA differs from the evidence", attest.ErrBinding)
	}
	r, err := v.verify(ctx, q, now)
	if err != nil {
		return attest.Verdict{}, err
	}
	if err := v.acceptable(r); err != nil {
		return attest.Verdict{}, err
	}
	return attest.Verdict{Tier: attest.TierTEE, Kind: Kind, Expiry: time.Unix(ev.Expiry, 0), SealKey: bytes.Clone(ev.SealKey)}, nil
}

// acceptable checks r against the policy in force.
func (v *Validator) acceptable(r *Report) error {
	p := v.cfg.Policy()
	if r.Debug && !p.AllowDebug {
		return ErrDebug
	}
	found := false
	for _, m := range p.Measurements {
		if m == r.Measurement {
			found = true
			break
		}
	}
	if !found {
		return fmt.Errorf("%w: %s", ErrMeasurement, r.Measurement)
	}
	min := p.MinTCB
	if !atLeast(r.TEETCBSVN[:], min.TEETCBSVN[:]) {
		return fmt.Errorf("%w: TEE_TCB_SVN %x < %x", ErrTCB, r.TEETCBSVN, min.TEETCBSVN)
	}
	if !atLeast(r.CPUSVN[:], min.CPUSVN[:]) {
		return fmt.Errorf("%w: CPUSVN %x < %x", ErrTCB, r.CPUSVN, min.CPUSVN)
	}
	if r.PCESVN < min.PCESVN {
		return fmt.Errorf("%w: PCESVN %d < %d", ErrTCB, r.PCESVN, min.PCESVN)
	}
	return nil
}

// atLeast reports whether every got[i] >= min[i].
func atLeast(got, min []byte) bool {
	for i := range min {
		if got[i] < min[i] {
			return false
		}
	}
	return true
}

// VerifyQuote checks that raw is a genuine TDX quote at now: parsed within
// MaxQuoteSize, signed, its PCK chain ending at the trusted root, and with
// CollateralOn accepted by Intel's collateral. It says nothing about
// whether the TD is acceptable.
func (v *Validator) VerifyQuote(ctx context.Context, raw []byte, now time.Time) (*Report, error) {
	q, err := parseBounded(raw)
	if err != nil {
		return nil, err
	}
	return v.verify(ctx, q, now)
}

// parseBounded parses raw as a quote of at most MaxQuoteSize bytes.
func parseBounded(raw []byte) (*pb.QuoteV4, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: no quote", ErrMalformed)
	}
	if len(raw) > MaxQuoteSize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrMalformed, len(raw), MaxQuoteSize)
	}
	return parseQuote(raw)
}

// verify checks that the parsed quote q is genuine at now: VerifyQuote
// after parsing.
func (v *Validator) verify(ctx context.Context, q *pb.QuoteV4, now time.Time) (*Report, error) {
	leaf, chainRoot, err := pckChain(q)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(v.rootDERs, func(r []byte) bool { return bytes.Equal(r, chainRoot) }) {
		return nil, fmt.Errorf("%w: PCK chain ends at another root", ErrNotGenuine)
	}
	ext, err := pcs.PckCertificateExtensions(leaf)
	if err != nil {
		return nil, fmt.Errorf("%w: PCK certificate: %v", ErrNotGenuine, err)
	}
	// Always passing TrustedRoots also keeps go-tdx-guest quiet: it writes
	// a warning to stdout when it falls back to its embedded root.
	opts := &verify.Options{TrustedRoots: v.roots, Now: now}
	if err := safeVerify(q, opts); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotGenuine, err)
	}
	if v.cache != nil {
		g := v.cache.call(ctx)
		opts := &verify.Options{TrustedRoots: v.roots, Now: now, GetCollateral: true, CheckRevocations: true, Getter: g}
		if err := safeVerify(q, opts); err != nil {
			if g.failed != nil {
				return nil, fmt.Errorf("%w: %w", ErrCollateralUnavailable, g.failed)
			}
			return nil, fmt.Errorf("%w: %v", ErrCollateral, err)
		}
	}
	return report(q, ext), nil
}

// parseQuote decodes raw as a TDX v4 quote. go-tdx-guest's decoder can
// index past the end of some malformed inputs, so a panic is an error here.
func parseQuote(raw []byte) (q *pb.QuoteV4, err error) {
	defer func() {
		if p := recover(); p != nil {
			q, err = nil, fmt.Errorf("%w: %v", ErrMalformed, p)
		}
	}()
	a, err := abi.QuoteToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	q, ok := a.(*pb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("%w: quote format %T", ErrMalformed, a)
	}
	return q, nil
}

// safeVerify runs go-tdx-guest's verification, a panic being a failure.
func safeVerify(q *pb.QuoteV4, opts *verify.Options) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("verifier panic: %v", p)
		}
	}()
	return verify.TdxQuote(q, opts)
}

// pckChain returns the PCK leaf and the DER of the root from q's
// certification data: three PEM certificates, leaf first.
func pckChain(q *pb.QuoteV4) (*x509.Certificate, []byte, error) {
	rest := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	var ders [][]byte
	for len(ders) < 3 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("%w: PCK chain has %d certificates, want 3", ErrNotGenuine, len(ders))
		}
		ders = append(ders, b.Bytes)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: PCK certificate: %v", ErrNotGenuine, err)
	}
	return leaf, ders[2], nil
}

// report extracts the TD's fields from a verified quote.
func report(q *pb.QuoteV4, ext *pcs.PckExtensions) *Report {
	b := q.GetTdQuoteBody()
	r := &Report{PCESVN: ext.TCB.PCESvn}
	copy(r.MRTD[:], b.GetMrTd())
	for i, m := range b.GetRtmrs() {
		if i < len(r.RTMR) {
			copy(r.RTMR[i][:], m)
		}
	}
	copy(r.ReportData[:], b.GetReportData())
	copy(r.TEETCBSVN[:], b.GetTeeTcbSvn())
	copy(r.CPUSVN[:], ext.TCB.CPUSvnComponents)
	// TDATTRIBUTES bit 0 is DEBUG.
	r.Debug = len(b.GetTdAttributes()) > 0 && b.GetTdAttributes()[0]&1 != 0
	return r
}
