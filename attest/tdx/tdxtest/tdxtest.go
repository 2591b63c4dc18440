// Package tdxtest is a fake Intel for tests: a throwaway certificate chain
// that imitates Intel's SGX chain (a root named "Intel SGX Root CA", a
// "PCK Platform CA" and a PCK certificate with the SGX extensions
// go-tdx-guest reads), synthetic TDX v4 quotes signed under it, and the
// collateral Intel PCS would serve for them (TCB info, QE identity and
// CRLs, signed under the same root). Only tests import it.
//
// A production Validator, pinned to Intel's root, refuses every quote made
// here. Tests of package tdx trust the fake root through an unexported
// constructor; whole-network tests, which build validators with
// tdx.NewValidator, call Trust, which works only in a test binary built
// with -tags cocoon_testroot (see "Trust root" in package tdx).
package tdxtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/cocoon-mesh/cocoon/attest/tdx"
)

// CPUSVN is the SGX TCB components of the platform the fake PCK
// certificate describes.
var CPUSVN = [16]byte{5, 5, 2, 2, 3, 1, 0, 3}

const (
	// PCESVN is the PCE version of the fake platform.
	PCESVN = 11
	// FMSPC is the fake platform's FMSPC, as go-tdx-guest writes it in the
	// TCB info URL.
	FMSPC = "50806f000000"
)

// Quote layout (Intel TDX DCAP quote v4), as offsets from a quote's first
// byte, for tests that tamper with one.
const (
	headerLen   = 0x30
	bodyLen     = 0x248
	qeReportLen = 0x180

	// SignedLen is the length of the header and TD report, which the
	// attestation key signs.
	SignedLen = headerLen + bodyLen
	// OffsetMRTD is where MRTD starts.
	OffsetMRTD = headerLen + 0x88
	// OffsetRTMR is where RTMR0 starts; RTMR1-3 follow, 48 bytes each.
	OffsetRTMR = headerLen + 0x148
	// OffsetReportData is where REPORTDATA starts.
	OffsetReportData = headerLen + 0x208
	// OffsetQEReport is where the QE report, which the PCK key signs,
	// starts: after the signature data's length, the quote signature, the
	// attestation key and the certification data's type and size.
	OffsetQEReport = SignedLen + 4 + 64 + 64 + 2 + 4
)

// The QE the fake quotes claim: Intel's TDX QE product ID and an SVN the
// fake QE identity rates UpToDate.
const (
	qeProdID = 2
	qeSVN    = 4
)

// Intel is a fake Intel: its certificate chain, keys and collateral. It is
// safe for concurrent use.
type Intel struct {
	root, inter, signer *x509.Certificate
	pckKey              *ecdsa.PrivateKey
	chainPEM            []byte // leaf, intermediate, root
	pcs                 *PCS
}

// Spec is what a synthetic quote says about its TD.
type Spec struct {
	Measurement tdx.Measurement
	TEETCBSVN   [16]byte
	// TDAttributes: bit 0 of byte 0 is DEBUG.
	TDAttributes [8]byte
}

// New makes a fake Intel whose certificates, and the collateral its PCS
// serves, are valid from notBefore to notAfter.
func New(tb testing.TB, notBefore, notAfter time.Time) *Intel {
	tb.Helper()
	f, err := newIntel(notBefore, notAfter)
	if err != nil {
		tb.Fatalf("tdxtest: %v", err)
	}
	return f
}

func newIntel(notBefore, notAfter time.Time) (*Intel, error) {
	var keys [4]*ecdsa.PrivateKey
	for i := range keys {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	rootKey, interKey, pckKey, signKey := keys[0], keys[1], keys[2], keys[3]
	sgx, err := sgxExtension()
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: intelName("Intel SGX Root CA"),
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		CRLDistributionPoints: []string{tdx.IntelRootCRLURL},
	}
	root, err := create(rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	inter, err := create(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: intelName("Intel SGX PCK Platform CA"),
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, root, &interKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	leaf, err := create(&x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: intelName("Intel SGX PCK Certificate"),
		NotBefore: notBefore, NotAfter: notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		SubjectKeyId:          []byte{1, 2, 3, 4},
		CRLDistributionPoints: []string{pcs.PckCrlURL("platform")},
		ExtraExtensions:       []pkix.Extension{{Id: pcs.OidSgxExtension, Value: sgx}},
	}, inter, &pckKey.PublicKey, interKey)
	if err != nil {
		return nil, err
	}
	signer, err := create(&x509.Certificate{
		SerialNumber: big.NewInt(4), Subject: intelName("Intel SGX TCB Signing"),
		NotBefore: notBefore, NotAfter: notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
	}, root, &signKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	f := &Intel{root: root, inter: inter, signer: signer, pckKey: pckKey, chainPEM: pemChain(leaf, inter, root)}
	if f.pcs, err = newPCS(f, rootKey, interKey, signKey, notBefore, notAfter); err != nil {
		return nil, err
	}
	return f, nil
}

func intelName(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"Intel Corporation"}, Locality: []string{"Santa Clara"}, Province: []string{"CA"}, Country: []string{"US"}}
}

func create(tmpl, parent *x509.Certificate, pub, signer any) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// pemChain is certs in PEM, in order.
func pemChain(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// sgxExtension encodes the PCK certificate's SGX extension: PPID, TCB
// (16 components, PCESVN, CPUSVN), PCEID and FMSPC.
func sgxExtension() ([]byte, error) {
	var err error
	der := func(v any) asn1.RawValue {
		b, merr := asn1.Marshal(v)
		if merr != nil && err == nil {
			err = merr
		}
		return asn1.RawValue{FullBytes: b}
	}
	type attr struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	var tcb []asn1.RawValue
	for i, svn := range CPUSVN {
		oid := append(append(asn1.ObjectIdentifier{}, pcs.OidTCB...), i+1)
		tcb = append(tcb, der(attr{oid, der(int(svn))}))
	}
	tcb = append(tcb,
		der(attr{pcs.OidPCESvn, der(PCESVN)}),
		der(attr{pcs.OidCPUSvn, der(CPUSVN[:])}))
	fmspc := []byte{0x50, 0x80, 0x6f, 0, 0, 0}
	ext := der([]asn1.RawValue{
		der(attr{pcs.OidPPID, der(make([]byte, 16))}),
		der(attr{pcs.OidTCB, der(tcb)}),
		der(attr{pcs.OidPCEID, der([]byte{0, 0})}),
		der(attr{pcs.OidFMSPC, der(fmspc)}),
	})
	return ext.FullBytes, err
}

// Root is the fake root certificate.
func (f *Intel) Root() *x509.Certificate { return f.root }

// Quote makes a v4 quote for s over reportData, signed by a fresh
// attestation key whose QE report is signed by the PCK key.
func (f *Intel) Quote(reportData [64]byte, s Spec) ([]byte, error) {
	le16 := func(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
	le32 := func(v int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

	header := make([]byte, headerLen)
	binary.LittleEndian.PutUint16(header[0:], 4)        // version
	binary.LittleEndian.PutUint16(header[2:], 2)        // ECDSA-256 with P-256
	binary.LittleEndian.PutUint32(header[4:], 0x81)     // TEE type TDX
	binary.LittleEndian.PutUint16(header[8:], PCESVN)   // PCE SVN
	binary.LittleEndian.PutUint16(header[10:], qeSVN)   // QE SVN
	copy(header[12:28], []byte{0x93, 0x9a, 0x72, 0x33}) // QE vendor ID (prefix)

	body := make([]byte, bodyLen)
	copy(body[0:16], s.TEETCBSVN[:])
	copy(body[0x78:0x80], s.TDAttributes[:])
	copy(body[OffsetMRTD-headerLen:], s.Measurement.MRTD[:])
	for i, r := range s.Measurement.RTMR {
		copy(body[OffsetRTMR-headerLen+48*i:], r[:])
	}
	copy(body[OffsetReportData-headerLen:], reportData[:])

	attKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ecdhPub, err := attKey.PublicKey.ECDH()
	if err != nil {
		return nil, err
	}
	attPub := ecdhPub.Bytes()[1:] // X || Y
	authData := []byte("synthetic QE auth data, 32 bytes")

	qeReport := make([]byte, qeReportLen)
	binary.LittleEndian.PutUint16(qeReport[0x100:], qeProdID)
	binary.LittleEndian.PutUint16(qeReport[0x102:], qeSVN)
	h := sha256.Sum256(append(append([]byte{}, attPub...), authData...))
	copy(qeReport[0x140:], h[:])
	qeSig, err := signRaw(f.pckKey, qeReport)
	if err != nil {
		return nil, err
	}

	var qeCert []byte
	qeCert = append(qeCert, qeReport...)
	qeCert = append(qeCert, qeSig...)
	qeCert = append(qeCert, le16(len(authData))...)
	qeCert = append(qeCert, authData...)
	qeCert = append(qeCert, le16(5)...) // PCK certificate chain
	qeCert = append(qeCert, le32(len(f.chainPEM))...)
	qeCert = append(qeCert, f.chainPEM...)

	sig, err := signRaw(attKey, append(append([]byte{}, header...), body...))
	if err != nil {
		return nil, err
	}
	var signed []byte
	signed = append(signed, sig...)
	signed = append(signed, attPub...)
	signed = append(signed, le16(6)...) // QE report certification data
	signed = append(signed, le32(len(qeCert))...)
	signed = append(signed, qeCert...)

	var q []byte
	q = append(q, header...)
	q = append(q, body...)
	q = append(q, le32(len(signed))...)
	return append(q, signed...), nil
}

// signRaw signs the SHA-256 of msg with k, as r || s of 32 bytes each: the
// encoding of Intel's quotes and collateral.
func signRaw(k *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

// Provider is a tdx.QuoteProvider that quotes a TD as its Spec says.
type Provider struct {
	intel *Intel
	spec  Spec
}

var _ tdx.QuoteProvider = Provider{}

// Quote makes a synthetic quote over reportData.
func (p Provider) Quote(reportData [64]byte) ([]byte, error) {
	return p.intel.Quote(reportData, p.spec)
}

// Provider returns a quote provider for a TD as s says.
func (f *Intel) Provider(s Spec) Provider { return Provider{intel: f, spec: s} }

// Issuer returns the attest.Issuer of a TDX worker whose TD is as s says:
// tdx.NewIssuer over f.Provider(s), so its evidence goes through the
// checks real evidence does.
func (f *Intel) Issuer(s Spec) *tdx.Issuer { return tdx.NewIssuer(f.Provider(s)) }
