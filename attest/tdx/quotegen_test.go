package tdx

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
	"math/big"
	"testing"
	"time"
)

// This file builds synthetic TDX v4 quotes signed by a throwaway chain
// that imitates Intel's: a root named "Intel SGX Root CA", a "PCK Platform
// CA" and a PCK certificate with the SGX extensions go-tdx-guest reads.
// Validators made with this root accept them; the production validator,
// pinned to Intel's root, must not.

// fakeIntel is a throwaway PCK certificate chain and its keys.
type fakeIntel struct {
	root     *x509.Certificate
	pckKey   *ecdsa.PrivateKey
	chainPEM []byte // leaf, intermediate, root
}

// quoteSpec is what a synthetic quote says about its TD.
type quoteSpec struct {
	ReportData   [64]byte
	Measurement  Measurement
	TEETCBSVN    [16]byte
	TDAttributes [8]byte
}

var (
	oidSGX    = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidPPID   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	oidTCB    = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2}
	oidPCEID  = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 3}
	oidFMSPC  = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	oidPCESVN = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2, 17}
	oidCPUSVN = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2, 18}
)

// fakeCPUSVN and fakePCESVN are the platform TCB in the fake PCK certificate.
var (
	fakeCPUSVN = [16]byte{5, 5, 2, 2, 3, 1, 0, 3}
	fakePCESVN = uint16(11)
)

// newFakeIntel makes a chain whose certificates are valid from notBefore to
// notAfter.
func newFakeIntel(t testing.TB, notBefore, notAfter time.Time) *fakeIntel {
	t.Helper()
	name := func(cn string) pkix.Name {
		return pkix.Name{CommonName: cn, Organization: []string{"Intel Corporation"}, Locality: []string{"Santa Clara"}, Province: []string{"CA"}, Country: []string{"US"}}
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	create := func(tmpl, parent *x509.Certificate, pub, signer any) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rootKey, interKey, pckKey := key(), key(), key()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: name("Intel SGX Root CA"),
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	root := create(rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	inter := create(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: name("Intel SGX PCK Platform CA"),
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, root, &interKey.PublicKey, rootKey)
	leaf := create(&x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: name("Intel SGX PCK Certificate"),
		NotBefore: notBefore, NotAfter: notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		SubjectKeyId:          []byte{1, 2, 3, 4},
		CRLDistributionPoints: []string{"https://pck-crl.invalid/pckcrl"},
		ExtraExtensions:       []pkix.Extension{{Id: oidSGX, Value: sgxExtension(t)}},
	}, inter, &pckKey.PublicKey, interKey)

	var chain []byte
	for _, c := range []*x509.Certificate{leaf, inter, root} {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return &fakeIntel{root: root, pckKey: pckKey, chainPEM: chain}
}

// sgxExtension encodes the PCK certificate's SGX extension: PPID, TCB
// (16 components, PCESVN, CPUSVN), PCEID and FMSPC.
func sgxExtension(t testing.TB) []byte {
	t.Helper()
	der := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type attr struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	raw := func(b []byte) asn1.RawValue { return asn1.RawValue{FullBytes: b} }
	var tcb []asn1.RawValue
	for i, svn := range fakeCPUSVN {
		oid := append(append(asn1.ObjectIdentifier{}, oidTCB...), i+1)
		tcb = append(tcb, raw(der(attr{oid, raw(der(int(svn)))})))
	}
	tcb = append(tcb,
		raw(der(attr{oidPCESVN, raw(der(int(fakePCESVN)))})),
		raw(der(attr{oidCPUSVN, raw(der(fakeCPUSVN[:]))})))
	return der([]asn1.RawValue{
		raw(der(attr{oidPPID, raw(der(make([]byte, 16)))})),
		raw(der(attr{oidTCB, raw(der(tcb))})),
		raw(der(attr{oidPCEID, raw(der([]byte{0, 0}))})),
		raw(der(attr{oidFMSPC, raw(der([]byte{0x50, 0x80, 0x6f, 0, 0, 0}))})),
	})
}

// Quote layout offsets (Intel TDX DCAP quote v4).
const (
	headerLen     = 0x30
	bodyLen       = 0x248
	offMRTD       = 0x88 // within the body
	offRTMR       = 0x148
	offReportData = 0x208
	qeReportLen   = 0x180
)

// quote makes a v4 quote for s, signed by a fresh attestation key whose
// QE report is signed by the PCK key.
func (f *fakeIntel) quote(t testing.TB, s quoteSpec) []byte {
	t.Helper()
	le16 := func(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
	le32 := func(v int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
	sign := func(k *ecdsa.PrivateKey, msg []byte) []byte {
		h := sha256.Sum256(msg)
		r, ss, err := ecdsa.Sign(rand.Reader, k, h[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		ss.FillBytes(out[32:])
		return out
	}

	header := make([]byte, headerLen)
	binary.LittleEndian.PutUint16(header[0:], 4)        // version
	binary.LittleEndian.PutUint16(header[2:], 2)        // ECDSA-256 with P-256
	binary.LittleEndian.PutUint32(header[4:], 0x81)     // TEE type TDX
	binary.LittleEndian.PutUint16(header[8:], 11)       // PCE SVN
	binary.LittleEndian.PutUint16(header[10:], 4)       // QE SVN
	copy(header[12:28], []byte{0x93, 0x9a, 0x72, 0x33}) // QE vendor ID (prefix)

	body := make([]byte, bodyLen)
	copy(body[0:16], s.TEETCBSVN[:])
	copy(body[0x78:0x80], s.TDAttributes[:])
	copy(body[offMRTD:], s.Measurement.MRTD[:])
	for i, r := range s.Measurement.RTMR {
		copy(body[offRTMR+48*i:], r[:])
	}
	copy(body[offReportData:], s.ReportData[:])

	attKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecdhPub, err := attKey.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	attPub := ecdhPub.Bytes()[1:] // X || Y
	authData := []byte("synthetic QE auth data, 32 bytes")

	qeReport := make([]byte, qeReportLen)
	binary.LittleEndian.PutUint16(qeReport[0x100:], 2) // ISV PRODID
	binary.LittleEndian.PutUint16(qeReport[0x102:], 4) // ISV SVN
	h := sha256.Sum256(append(append([]byte{}, attPub...), authData...))
	copy(qeReport[0x140:], h[:])

	var qeCert []byte
	qeCert = append(qeCert, qeReport...)
	qeCert = append(qeCert, sign(f.pckKey, qeReport)...)
	qeCert = append(qeCert, le16(len(authData))...)
	qeCert = append(qeCert, authData...)
	qeCert = append(qeCert, le16(5)...) // PCK certificate chain
	qeCert = append(qeCert, le32(len(f.chainPEM))...)
	qeCert = append(qeCert, f.chainPEM...)

	var signed []byte
	signed = append(signed, sign(attKey, append(append([]byte{}, header...), body...))...)
	signed = append(signed, attPub...)
	signed = append(signed, le16(6)...) // QE report certification data
	signed = append(signed, le32(len(qeCert))...)
	signed = append(signed, qeCert...)

	var q []byte
	q = append(q, header...)
	q = append(q, body...)
	q = append(q, le32(len(signed))...)
	return append(q, signed...)
}
