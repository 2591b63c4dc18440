package tdxtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/cocoon-mesh/cocoon/attest/tdx"
)

// ErrUnreachable is what Unreachable answers: Intel PCS cannot be reached.
var ErrUnreachable = errors.New("tdxtest: Intel PCS unreachable")

// Unreachable is a tdx.Getter for a node cut off from Intel: every Get
// fails with ErrUnreachable.
type Unreachable struct{}

// Get fails.
func (Unreachable) Get(u string) (map[string][]string, []byte, error) {
	return nil, nil, fmt.Errorf("GET %s: %w", u, ErrUnreachable)
}

// PCS serves a fake Intel's collateral as Intel PCS would: TDX TCB info
// for the fake platform's FMSPC, the TDX QE identity, the platform CA's
// PCK CRL and the root CA's CRL, each at the URL go-tdx-guest asks for,
// with Intel's issuer-chain headers. The TCB info rates the fake platform,
// any TEE_TCB_SVN and TDX module versions 1 to 15 UpToDate; the QE
// identity rates the fake QE UpToDate; the CRLs revoke nothing. Everything
// is signed under the fake root and valid over the fake Intel's validity.
// It is a tdx.Getter, safe for concurrent use.
type PCS struct {
	answers map[string]answer
	calls   atomic.Int64
}

type answer struct {
	header map[string][]string
	body   []byte
}

var _ tdx.Getter = (*PCS)(nil)

// PCS returns f's Intel PCS.
func (f *Intel) PCS() *PCS { return f.pcs }

// Get answers u as Intel PCS would, or fails with a 404 for any other URL.
// The answer is a copy the caller may keep.
func (p *PCS) Get(u string) (map[string][]string, []byte, error) {
	p.calls.Add(1)
	a, ok := p.answers[u]
	if !ok {
		return nil, nil, fmt.Errorf("GET %s: 404 Not Found", u)
	}
	h := make(map[string][]string, len(a.header))
	for k, v := range a.header {
		h[k] = slices.Clone(v)
	}
	return h, bytes.Clone(a.body), nil
}

// Calls counts the Gets so far.
func (p *PCS) Calls() int { return int(p.calls.Load()) }

// URLs lists the URLs p answers, sorted.
func (p *PCS) URLs() []string { return slices.Sorted(maps.Keys(p.answers)) }

// Issuer-chain headers of Intel PCS answers.
const (
	tcbInfoChainHeader    = "Tcb-Info-Issuer-Chain"
	qeIdentityChainHeader = "Sgx-Enclave-Identity-Issuer-Chain"
	pckCRLChainHeader     = "Sgx-Pck-Crl-Issuer-Chain"
)

// The JSON of Intel's TCB info (v3) and QE identity (v2), as far as
// go-tdx-guest reads it. Byte strings are hex.
type (
	tcbInfo struct {
		ID                      string           `json:"id"`
		Version                 int              `json:"version"`
		IssueDate               time.Time        `json:"issueDate"`
		NextUpdate              time.Time        `json:"nextUpdate"`
		FMSPC                   string           `json:"fmspc"`
		PCEID                   string           `json:"pceId"`
		TCBType                 int              `json:"tcbType"`
		TCBEvaluationDataNumber int              `json:"tcbEvaluationDataNumber"`
		TDXModule               tdxModule        `json:"tdxModule"`
		TDXModuleIdentities     []moduleIdentity `json:"tdxModuleIdentities"`
		TCBLevels               []tcbLevel       `json:"tcbLevels"`
	}
	tdxModule struct {
		MRSigner       string `json:"mrsigner"`
		Attributes     string `json:"attributes"`
		AttributesMask string `json:"attributesMask"`
	}
	moduleIdentity struct {
		ID string `json:"id"`
		tdxModule
		TCBLevels []tcbLevel `json:"tcbLevels"`
	}
	tcbLevel struct {
		TCB       tcb    `json:"tcb"`
		TCBDate   string `json:"tcbDate"`
		TCBStatus string `json:"tcbStatus"`
	}
	tcb struct {
		SGXComponents []component `json:"sgxtcbcomponents,omitempty"`
		PCESVN        int         `json:"pcesvn"`
		TDXComponents []component `json:"tdxtcbcomponents,omitempty"`
		ISVSVN        int         `json:"isvsvn"`
	}
	component struct {
		SVN byte `json:"svn"`
	}
	enclaveIdentity struct {
		ID                      string     `json:"id"`
		Version                 int        `json:"version"`
		IssueDate               time.Time  `json:"issueDate"`
		NextUpdate              time.Time  `json:"nextUpdate"`
		TCBEvaluationDataNumber int        `json:"tcbEvaluationDataNumber"`
		MiscSelect              string     `json:"miscselect"`
		MiscSelectMask          string     `json:"miscselectMask"`
		Attributes              string     `json:"attributes"`
		AttributesMask          string     `json:"attributesMask"`
		MRSigner                string     `json:"mrsigner"`
		ISVProdID               int        `json:"isvprodid"`
		TCBLevels               []tcbLevel `json:"tcbLevels"`
	}
)

// newPCS signs f's collateral.
func newPCS(f *Intel, rootKey, interKey, signKey *ecdsa.PrivateKey, notBefore, notAfter time.Time) (*PCS, error) {
	zeros := func(n int) string { return strings.Repeat("00", n) }
	ones := func(n int) string { return strings.Repeat("ff", n) }
	date := notBefore.UTC().Format(time.RFC3339)
	upToDate := func(t tcb) []tcbLevel { return []tcbLevel{{TCB: t, TCBDate: date, TCBStatus: "UpToDate"}} }
	// The synthetic quotes' MRSIGNERSEAM and SEAMATTRIBUTES are zero.
	module := tdxModule{MRSigner: zeros(48), Attributes: zeros(8), AttributesMask: ones(8)}

	platform := tcb{PCESVN: PCESVN, SGXComponents: make([]component, 16), TDXComponents: make([]component, 16)}
	for i, svn := range CPUSVN {
		platform.SGXComponents[i].SVN = svn
	}
	info := tcbInfo{
		ID: "TDX", Version: 3, IssueDate: notBefore.UTC(), NextUpdate: notAfter.UTC(),
		FMSPC: FMSPC, PCEID: "0000", TCBEvaluationDataNumber: 1,
		TDXModule: module, TCBLevels: upToDate(platform),
	}
	for v := 1; v <= 15; v++ {
		info.TDXModuleIdentities = append(info.TDXModuleIdentities,
			moduleIdentity{ID: fmt.Sprintf("TDX_%02x", v), tdxModule: module, TCBLevels: upToDate(tcb{ISVSVN: 0})})
	}
	qe := enclaveIdentity{
		ID: "TD_QE", Version: 2, IssueDate: notBefore.UTC(), NextUpdate: notAfter.UTC(), TCBEvaluationDataNumber: 1,
		MiscSelect: zeros(4), MiscSelectMask: ones(4), Attributes: zeros(16), AttributesMask: ones(16),
		MRSigner: zeros(32), ISVProdID: qeProdID, TCBLevels: upToDate(tcb{ISVSVN: qeSVN}),
	}

	tcbBody, err := signedJSON("tcbInfo", info, signKey)
	if err != nil {
		return nil, err
	}
	qeBody, err := signedJSON("enclaveIdentity", qe, signKey)
	if err != nil {
		return nil, err
	}
	rootCRL, err := emptyCRL(f.root, rootKey, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	pckCRL, err := emptyCRL(f.inter, interKey, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	chain := func(c *x509.Certificate) []string {
		return []string{url.QueryEscape(string(pemChain(c, f.root)))}
	}
	return &PCS{answers: map[string]answer{
		pcs.TcbInfoURL(FMSPC):     {map[string][]string{tcbInfoChainHeader: chain(f.signer)}, tcbBody},
		pcs.QeIdentityURL():       {map[string][]string{qeIdentityChainHeader: chain(f.signer)}, qeBody},
		pcs.PckCrlURL("platform"): {map[string][]string{pckCRLChainHeader: chain(f.inter)}, pckCRL},
		tdx.IntelRootCRLURL:       {map[string][]string{}, rootCRL},
	}}, nil
}

// signedJSON is Intel's signed answer: {name: v, "signature": hex of
// r || s over the bytes of v exactly as they stand in the answer}.
func signedJSON(name string, v any, k *ecdsa.PrivateKey) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sig, err := signRaw(k, raw)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{%q:%s,"signature":%q}`, name, raw, hex.EncodeToString(sig)), nil
}

// emptyCRL is a CRL of issuer revoking nothing.
func emptyCRL(issuer *x509.Certificate, k *ecdsa.PrivateKey, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
	}, issuer, k)
}
