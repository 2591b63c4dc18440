package nvidia

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Rejection reasons. Each names what failed; a rejected machine must fix
// its configuration (CC mode, ready state) or present new evidence, so
// retrying Verify on the same bytes never helps. ErrNoNVML (from Collect)
// is in nvml_*.go.
var (
	ErrNoGPU      = errors.New("nvidia evidence lists no GPU")
	ErrNotCapable = errors.New("GPUs are not confidential-computing capable")
	ErrCCOff      = errors.New("GPU confidential computing is off (CC off)")
	ErrDevTools   = errors.New("GPU confidential computing is in devtools (debug) mode")
	ErrSimulated  = errors.New("GPU confidential-computing environment is not production")
	ErrNotReady   = errors.New("GPUs are not ready: not accepting client work")
	ErrNoReport   = errors.New("GPU gave no attestation report")
	ErrReport     = errors.New("GPU attestation report is malformed")
	ErrNonce      = errors.New("GPU attestation report is over another nonce (made for another peer or expiry)")
	ErrChain      = errors.New("GPU certificate chain does not verify to NVIDIA's pinned root")
	ErrSignature  = errors.New("GPU attestation report is not signed by its certificate chain")
)

// NVIDIA's device identity root, "NVIDIA Device Identity CA" (ECDSA
// P-384, valid 2021-11-05 to 9999-12-31), as NVIDIA publishes it with its
// local GPU verifier (nvtrust, verifier_device_root.pem). Every Hopper
// GPU's attestation certificate chain ends in it.
//
//go:embed nvidia_device_identity_ca.pem
var rootPEM []byte

// RootSHA256 pins rootPEM: the SHA-256 of the root certificate's DER.
// NewVerifier refuses an embedded root that does not match.
const RootSHA256 = "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"

// Verifier checks NVIDIA confidential-computing evidence. It is safe for
// concurrent use.
type Verifier struct {
	roots *x509.CertPool
	root  *x509.Certificate
}

// NewVerifier returns a verifier trusting only NVIDIA's device identity
// root, embedded and pinned by RootSHA256.
func NewVerifier() (*Verifier, error) {
	pin, err := hex.DecodeString(RootSHA256)
	if err != nil || len(pin) != sha256.Size {
		return nil, fmt.Errorf("nvidia root pin %q is not a SHA-256", RootSHA256)
	}
	return newVerifier(rootPEM, [32]byte(pin))
}

// newVerifier trusts the one PEM certificate in rootPEM, whose DER must
// hash to pin. Tests reach it (with a throwaway root) through
// export_test.go; production code has only NewVerifier.
func newVerifier(rootPEM []byte, pin [32]byte) (*Verifier, error) {
	blk, rest := pem.Decode(rootPEM)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("nvidia root: want exactly one PEM certificate")
	}
	if sha256.Sum256(blk.Bytes) != pin {
		return nil, fmt.Errorf("nvidia root: fingerprint %x does not match the pin %x", sha256.Sum256(blk.Bytes), pin)
	}
	root, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("nvidia root: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &Verifier{roots: pool, root: root}, nil
}

// Result says what passed. The System fields are machine-wide (NVML has
// no per-GPU CC mode); the GPUs say per GPU what passed.
type Result struct {
	Capable    bool // GPUs are CC capable
	CCOn       bool // CC feature enabled
	NoDevTools bool // devtools (debug) mode off
	Production bool // environment is production, not simulated
	Ready      bool // GPUs accept client work
	GPUs       []GPUResult
}

// GPUResult says what passed for one GPU.
type GPUResult struct {
	UUID      string
	Name      string
	Report    bool  // a well-formed SPDM 1.1 report is present
	Nonce     bool  // the report's request nonce is the expected one
	Chain     bool  // the chain verifies to the pinned root at the given time
	Signature bool  // the chain's leaf key signed the report
	Err       error // nil when everything above passed
}

// OK reports whether everything passed on a machine with at least one GPU.
func (r Result) OK() bool {
	if !r.Capable || !r.CCOn || !r.NoDevTools || !r.Production || !r.Ready || len(r.GPUs) == 0 {
		return false
	}
	for _, g := range r.GPUs {
		if g.Err != nil {
			return false
		}
	}
	return true
}

// Verify decodes blob (attest.Evidence.GPU; size-capped, see Decode) and
// checks it with VerifyEvidence.
func (v *Verifier) Verify(blob []byte, nonce [32]byte, now time.Time) (Result, error) {
	ev, err := Decode(blob)
	if err != nil {
		return Result{}, err
	}
	return v.VerifyEvidence(ev, nonce, now)
}

// VerifyEvidence checks that the machine's GPUs are CC capable, CC is on
// in production mode without devtools and the GPUs are ready, and, for
// every GPU, that its report is present and well formed, was made over
// nonce (Nonce of the peer's binding), is signed by the leaf of its
// certificate chain, and that the chain verifies at now up to the pinned
// NVIDIA root. It runs every check and returns the result with all
// failures joined (errors.Is finds each sentinel); the error is nil
// exactly when Result.OK.
func (v *Verifier) VerifyEvidence(ev *Evidence, nonce [32]byte, now time.Time) (Result, error) {
	s := ev.System
	res := Result{
		Capable:    s.GPUsCaps == gpusCCCapable,
		CCOn:       s.CCOn(),
		NoDevTools: s.DevTools != devToolsOn,
		Production: s.Environment == environmentProd,
		Ready:      s.Ready == acceptingWork,
	}
	var errs []error
	if s.Err != "" {
		errs = append(errs, fmt.Errorf("nvml: %q", s.Err))
	}
	if len(ev.GPUs) == 0 {
		errs = append(errs, ErrNoGPU)
	}
	if !res.Capable {
		errs = append(errs, ErrNotCapable)
	}
	if !res.CCOn {
		errs = append(errs, ErrCCOff)
	}
	if !res.NoDevTools {
		errs = append(errs, ErrDevTools)
	}
	if !res.Production {
		errs = append(errs, fmt.Errorf("%w: environment %d", ErrSimulated, s.Environment))
	}
	if !res.Ready {
		errs = append(errs, ErrNotReady)
	}
	for i, g := range ev.GPUs {
		r := v.verifyGPU(g, nonce, now)
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("gpu %d %s: %w", i, g.UUID, r.Err))
		}
		res.GPUs = append(res.GPUs, r)
	}
	return res, errors.Join(errs...)
}

func (v *Verifier) verifyGPU(g GPU, nonce [32]byte, now time.Time) GPUResult {
	r := GPUResult{UUID: g.UUID, Name: g.Name}
	var errs []error
	leaf, err := v.verifyChain(g, now)
	if err != nil {
		errs = append(errs, err)
	} else {
		r.Chain = true
	}
	switch rep, err := ParseReport(g.Report); {
	case len(g.Report) == 0 && g.ReportErr != "":
		errs = append(errs, fmt.Errorf("%w: nvml: %q", ErrNoReport, g.ReportErr))
	case len(g.Report) == 0:
		errs = append(errs, ErrNoReport)
	case err != nil:
		errs = append(errs, fmt.Errorf("%w: %v", ErrReport, err))
	default:
		r.Report = true
		if rep.Nonce == nonce {
			r.Nonce = true
		} else {
			errs = append(errs, fmt.Errorf("%w: report nonce %x, want %x", ErrNonce, rep.Nonce[:8], nonce[:8]))
		}
		if leaf != nil {
			if err := checkSignature(leaf, rep); err != nil {
				errs = append(errs, err)
			} else {
				r.Signature = true
			}
		}
	}
	if len(errs) > 0 {
		r.Err = joined(errs)
	}
	return r
}

// joined is one GPU's failures on one line; errors.Is sees each.
type joined []error

func (j joined) Error() string {
	msgs := make([]string, len(j))
	for i, err := range j {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joined) Unwrap() []error { return j }

// verifyChain parses g's chain (leaf first) and verifies the leaf up to
// the pinned root at now, with the rest of the chain as intermediates.
func (v *Verifier) verifyChain(g GPU, now time.Time) (*x509.Certificate, error) {
	if len(g.Chain) == 0 {
		if g.CertErr != "" {
			return nil, fmt.Errorf("%w: no certificates: nvml: %q", ErrChain, g.CertErr)
		}
		return nil, fmt.Errorf("%w: no certificates", ErrChain)
	}
	certs := make([]*x509.Certificate, len(g.Chain))
	for i, der := range g.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %v", ErrChain, i, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrChain, err)
	}
	return certs[0], nil
}

// checkSignature verifies rep's ECDSA P-384 signature over SHA-384 of the
// signed part with leaf's key.
func checkSignature(leaf *x509.Certificate, rep *Report) error {
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return fmt.Errorf("%w: leaf key is %T, want ECDSA P-384", ErrSignature, leaf.PublicKey)
	}
	digest := sha512.Sum384(rep.Signed)
	half := SignatureLen / 2
	rr := new(big.Int).SetBytes(rep.Signature[:half])
	ss := new(big.Int).SetBytes(rep.Signature[half:])
	if !ecdsa.Verify(pub, digest[:], rr, ss) {
		return ErrSignature
	}
	return nil
}
