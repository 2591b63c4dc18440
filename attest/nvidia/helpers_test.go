package nvidia_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/nvidia"
)

// now is the fixed clock of these tests.
var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// nonceFor is the GPU nonce of the peer whose key is made from seed, for
// evidence expiring an hour after now.
func nonceFor(t *testing.T, seed byte) [32]byte {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := attest.Binding(pub, now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	return nvidia.Nonce(b)
}

// pki is a throwaway imitation of NVIDIA's device identity hierarchy:
// root, one intermediate, and a leaf per GPU. Test only.
type pki struct {
	root      *x509.Certificate
	rootKey   *ecdsa.PrivateKey
	inter     *x509.Certificate
	interKey  *ecdsa.PrivateKey
	notAfter  time.Time
	serial    int64
	intermDER []byte
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{notAfter: now.Add(365 * 24 * time.Hour)}
	p.rootKey = newKey(t)
	rootDER := p.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: name + " root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, &p.rootKey.PublicKey, p.rootKey)
	p.root = parse(t, rootDER)
	p.interKey = newKey(t)
	p.intermDER = p.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: name + " identity"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, p.root, &p.interKey.PublicKey, p.rootKey)
	p.inter = parse(t, p.intermDER)
	return p
}

// rootPEM and pin are what a verifier trusting p is built from.
func (p *pki) rootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.root.Raw})
}

func (p *pki) pin() [32]byte { return sha256.Sum256(p.root.Raw) }

func (p *pki) verifier(t *testing.T) *nvidia.Verifier {
	t.Helper()
	v, err := nvidia.NewVerifierPinned(p.rootPEM(), p.pin())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// leaf makes a GPU attestation key and its chain, DER, leaf first, root last.
func (p *pki) leaf(t *testing.T, name string) ([][]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k := newKey(t)
	der := p.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, KeyUsage: x509.KeyUsageDigitalSignature}, p.inter, &k.PublicKey, p.interKey)
	return [][]byte{der, p.inter.Raw, p.root.Raw}, k
}

func (p *pki) sign(t *testing.T, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, by *ecdsa.PrivateKey) []byte {
	t.Helper()
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	tmpl.NotBefore = now.Add(-24 * time.Hour)
	tmpl.NotAfter = p.notAfter
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, by)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func parse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chainPEM is a chain as NVML returns it: PEM certificates, leaf first.
func chainPEM(chain [][]byte) []byte {
	var b bytes.Buffer
	for _, c := range chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	return b.Bytes()
}

// makeReport builds a Hopper-style SPDM 1.1 report over nonce with a few
// measurement blocks, signed by key as a GPU would.
func makeReport(t *testing.T, key *ecdsa.PrivateKey, nonce [32]byte) []byte {
	t.Helper()
	var b []byte
	b = append(b, 0x11, 0xE0, 0x01, 0xFF)
	b = append(b, nonce[:]...)
	b = append(b, 0x00) // slot
	var rec []byte
	for i := byte(1); i <= 3; i++ {
		val := bytes.Repeat([]byte{i}, 48)
		m := append([]byte{0x01}, binary.LittleEndian.AppendUint16(nil, uint16(len(val)))...)
		m = append(m, val...)
		rec = append(rec, i, 0x01)
		rec = binary.LittleEndian.AppendUint16(rec, uint16(len(m)))
		rec = append(rec, m...)
	}
	b = append(b, 0x11, 0x60, 0x00, 0x00, 3, byte(len(rec)), byte(len(rec)>>8), byte(len(rec)>>16))
	b = append(b, rec...)
	b = append(b, bytes.Repeat([]byte{0xAB}, 32)...) // responder nonce
	opaque := []byte{0x03, 0x00, 0x04, 0x00, '5', '8', '0', 0}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(opaque)))
	b = append(b, opaque...)
	d := sha512.Sum384(b)
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return append(append(b, r.FillBytes(make([]byte, 48))...), s.FillBytes(make([]byte, 48))...)
}

// ccOn is the system state of a machine ready for confidential work.
var ccOn = nvidia.System{CPUCaps: 2, GPUsCaps: 1, Environment: 2, Feature: 1, DevTools: 0, Ready: 1}
