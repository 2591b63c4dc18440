// Package edverify verifies Ed25519 signatures by keys that sign many
// messages, such as a worker's receipts, which its proxy checks one by
// one: about 2.4 times as fast as crypto/ed25519 once a key has been seen
// often enough to be worth a table of its multiples.
//
// crypto/ed25519 checks R = [S]B - [k]A with a double-scalar
// multiplication: about 250 point doublings, whatever the key, after
// decoding A afresh. A Table holds A decoded and 256 of its multiples
// (j * 256^i * -A for j in 1..8, i in 0..31, 41 KiB), so [k]A takes 64
// additions and 4 doublings; [S]B uses the base point's own table. The
// result is the same equation on the same complete twisted Edwards group
// law, so Verify accepts exactly what crypto/ed25519.Verify accepts
// (FuzzVerify compares them). Nothing here is secret: verification is
// over public data, and variable time is fine.
package edverify

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"

	"filippo.io/edwards25519"
)

// A Table verifies signatures by one public key. It is immutable, and
// safe for concurrent use.
type Table struct {
	pub  [ed25519.PublicKeySize]byte
	rows [32][8]edwards25519.Point // rows[i][j] = (j+1) * 256^i * -A
}

// ErrPublicKey is a public key that is not 32 bytes or not a point.
var ErrPublicKey = errors.New("edverify: invalid Ed25519 public key")

// NewTable decodes pub, as crypto/ed25519 does, and computes its
// multiples: about 70 µs, worth it for a key that verifies a few
// messages or more.
func NewTable(pub []byte) (*Table, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, ErrPublicKey
	}
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, ErrPublicKey
	}
	t := &Table{pub: [ed25519.PublicKeySize]byte(pub)}
	base := new(edwards25519.Point).Negate(a)
	for i := range t.rows {
		row := &t.rows[i]
		row[0].Set(base)
		for j := 1; j < len(row); j++ {
			row[j].Add(&row[j-1], base)
		}
		for range 8 { // base *= 256
			base.Double(base)
		}
	}
	return t, nil
}

// Verify reports whether sig is the key's valid Ed25519 signature of msg,
// as crypto/ed25519.Verify would.
func (t *Table) Verify(msg, sig []byte) bool {
	if len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(t.pub[:])
	h.Write(msg)
	var digest [sha512.Size]byte
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		return false // cannot happen: the digest is 64 bytes
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	// [S]B - [k]A must be R.
	r := t.mulNeg(k)
	r.Add(r, new(edwards25519.Point).ScalarBaseMult(s))
	return bytes.Equal(sig[:32], r.Bytes())
}

// mulNeg returns [k](-A): with k in signed radix 16, k = sum of d_i 16^i,
// it is the sum over odd i of d_i 256^((i-1)/2) (-A), times 16, plus the
// sum over even i of d_i 256^(i/2) (-A), each term from the table.
func (t *Table) mulNeg(k *edwards25519.Scalar) *edwards25519.Point {
	d := signedRadix16(k.Bytes())
	acc := edwards25519.NewIdentityPoint()
	for i := range t.rows {
		t.add(acc, i, d[2*i+1])
	}
	for range 4 {
		acc.Double(acc)
	}
	for i := range t.rows {
		t.add(acc, i, d[2*i])
	}
	return acc
}

// add adds d * 256^i * (-A) to acc, d in [-8, 8].
func (t *Table) add(acc *edwards25519.Point, i int, d int8) {
	switch {
	case d > 0:
		acc.Add(acc, &t.rows[i][d-1])
	case d < 0:
		acc.Subtract(acc, &t.rows[i][-d-1])
	}
}

// signedRadix16 returns the 64 digits d_i in [-8, 8) of a scalar below
// 2^255 in little-endian bytes b, with sum d_i 16^i equal to it (a scalar
// is below 2^253, so the last digit takes the final carry).
func signedRadix16(b []byte) [64]int8 {
	var d [64]int8
	for i := range 32 {
		d[2*i] = int8(b[i] & 15)
		d[2*i+1] = int8(b[i] >> 4)
	}
	for i := range 63 {
		carry := (d[i] + 8) >> 4
		d[i] -= carry << 4
		d[i+1] += carry
	}
	return d
}
