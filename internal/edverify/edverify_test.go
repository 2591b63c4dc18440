package edverify_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"testing"

	"filippo.io/edwards25519"

	"github.com/cocoon-mesh/cocoon/internal/edverify"
)

// key returns a deterministic key pair, i-th of its kind.
func key(i int) (ed25519.PublicKey, ed25519.PrivateKey) {
	seed := sha512.Sum512([]byte(fmt.Sprint("edverify test key ", i)))
	priv := ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize])
	return priv.Public().(ed25519.PublicKey), priv
}

// order is the group order L, little endian.
var order, _ = hex.DecodeString("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")

// addL adds L to the little-endian scalar s: the same value mod L, not
// canonical.
func addL(s []byte) []byte {
	out := make([]byte, 32)
	var carry uint16
	for i := range 32 {
		v := uint16(s[i]) + uint16(order[i]) + carry
		out[i], carry = byte(v), v>>8
	}
	return out
}

// smallOrder is the encodings of points of small order, and
// non-canonical ones of them: keys crypto/ed25519 accepts and under which
// forged signatures can verify.
var smallOrder = []string{
	"0100000000000000000000000000000000000000000000000000000000000000", // identity
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
	"0000000000000000000000000000000000000000000000000000000000000080", // order 4
	"0000000000000000000000000000000000000000000000000000000000000000", // order 4
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p+1: identity, non-canonical
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = p, x sign set
}

// cases are signatures crypto/ed25519 accepts and refuses, by ordinary
// and by odd keys.
func cases(t testing.TB) []struct {
	name          string
	pub, msg, sig []byte
} {
	type c = struct {
		name          string
		pub, msg, sig []byte
	}
	var out []c
	for i := range 4 {
		pub, priv := key(i)
		msg := []byte(fmt.Sprint("message ", i))
		sig := ed25519.Sign(priv, msg)
		out = append(out, c{fmt.Sprint("valid ", i), pub, msg, sig})
		for _, bit := range []int{0, 7, 255, 256, 300, 511} {
			bad := bytes.Clone(sig)
			bad[bit/8] ^= 1 << (bit % 8)
			out = append(out, c{fmt.Sprint("bit ", bit, " flipped ", i), pub, msg, bad})
		}
		out = append(out, c{fmt.Sprint("other message ", i), pub, []byte("another"), sig})
		nonCanonical := append(bytes.Clone(sig[:32]), addL(sig[32:])...)
		out = append(out, c{fmt.Sprint("S + L ", i), pub, msg, nonCanonical})
		other, _ := key(i + 100)
		out = append(out, c{fmt.Sprint("other key ", i), other, msg, sig})
	}
	// Under a small-order key, [k]A is small: R = [S]B with S = 0 is
	// the identity, which verifies when [k]A is the identity too.
	zeroS := make([]byte, 64)
	zeroS[0] = 1 // R = identity, S = 0
	for _, h := range smallOrder {
		pub, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		for m := range 8 {
			msg := binary.BigEndian.AppendUint64(nil, uint64(m))
			out = append(out, c{fmt.Sprintf("small order %.8s msg %d", h, m), pub, msg, zeroS})
		}
	}
	return out
}

// TestMatchesStandardLibrary: a table and a cache accept exactly what
// crypto/ed25519 accepts, valid signatures and forgeries under small-order
// keys included, and refuse the rest.
func TestMatchesStandardLibrary(t *testing.T) {
	cache := edverify.NewCache(4)
	accepted := 0
	for _, tc := range cases(t) {
		want := ed25519.Verify(tc.pub, tc.msg, tc.sig)
		if want {
			accepted++
		}
		tab, err := edverify.NewTable(tc.pub)
		if _, decodes := new(edwards25519.Point).SetBytes(tc.pub); (err == nil) != (decodes == nil) {
			t.Fatalf("%s: NewTable err %v, point decodes %v", tc.name, err, decodes)
		}
		if err == nil {
			if got := tab.Verify(tc.msg, tc.sig); got != want {
				t.Errorf("%s: Table.Verify = %v, crypto/ed25519 %v", tc.name, got, want)
			}
		}
		for range edverify.BuildAfter + 1 { // through the table once built
			if got := cache.Verify(tc.pub, tc.msg, tc.sig); got != want {
				t.Fatalf("%s: Cache.Verify = %v, crypto/ed25519 %v", tc.name, got, want)
			}
		}
	}
	if accepted < 5 {
		t.Fatalf("only %d cases verify: the cases test nothing", accepted)
	}
}

// TestCacheKeepsUsedKeys: a key gets a table after BuildAfter valid
// signatures, never from bad ones, and the cache keeps at most its size,
// dropping the least recently used.
func TestCacheKeepsUsedKeys(t *testing.T) {
	cache := edverify.NewCache(2)
	sign := func(i int) (ed25519.PublicKey, []byte, []byte) {
		pub, priv := key(i)
		msg := []byte("m")
		return pub, msg, ed25519.Sign(priv, msg)
	}
	pub0, msg, sig0 := sign(0)
	bad := bytes.Clone(sig0)
	bad[0] ^= 1
	for range 3 * edverify.BuildAfter {
		if cache.Verify(pub0, msg, bad) {
			t.Fatal("a bad signature verified")
		}
	}
	if n := cache.Len(); n != 0 {
		t.Fatalf("bad signatures built %d tables", n)
	}
	use := func(i int) {
		pub, msg, sig := sign(i)
		for range edverify.BuildAfter {
			if !cache.Verify(pub, msg, sig) {
				t.Fatalf("key %d: a valid signature refused", i)
			}
		}
	}
	use(0)
	if n := cache.Len(); n != 1 {
		t.Fatalf("after %d valid signatures: %d tables, want 1", edverify.BuildAfter, n)
	}
	use(1)
	use(0) // 0 is now more recent than 1
	use(2) // evicts 1
	if n := cache.Len(); n != 2 {
		t.Fatalf("%d tables, want the cache's size, 2", n)
	}
	// Key 1 lost its table: it verifies through crypto/ed25519, and
	// wrong lengths are refused without a panic.
	pub1, msg1, sig1 := sign(1)
	if !cache.Verify(pub1, msg1, sig1) || cache.Verify(pub1[:31], msg1, sig1) || cache.Verify(pub1, msg1, sig1[:63]) {
		t.Fatal("verification without a table, or of wrong lengths, is wrong")
	}
}

// FuzzVerify: for any key, message and signature, derived from a valid
// one by the fuzzer's changes, a table and a cache agree with
// crypto/ed25519.
func FuzzVerify(f *testing.F) {
	for _, tc := range cases(f) {
		f.Add(tc.pub, tc.msg, tc.sig)
	}
	cache := edverify.NewCache(8)
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if len(pub) != ed25519.PublicKeySize {
			if cache.Verify(pub, msg, sig) {
				t.Fatal("a key of the wrong length verified")
			}
			return
		}
		want := ed25519.Verify(pub, msg, sig)
		if got := cache.Verify(pub, msg, sig); got != want {
			t.Fatalf("Cache.Verify = %v, crypto/ed25519 %v", got, want)
		}
		tab, err := edverify.NewTable(pub)
		if err != nil {
			if want {
				t.Fatalf("NewTable refused a key that verifies: %v", err)
			}
			return
		}
		if got := tab.Verify(msg, sig); got != want {
			t.Fatalf("Table.Verify = %v, crypto/ed25519 %v", got, want)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	pub, priv := key(0)
	msg := bytes.Repeat([]byte("r"), 200) // about a receipt
	sig := ed25519.Sign(priv, msg)
	b.Run("crypto-ed25519", func(b *testing.B) {
		for b.Loop() {
			ed25519.Verify(pub, msg, sig)
		}
	})
	tab, err := edverify.NewTable(pub)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("table", func(b *testing.B) {
		for b.Loop() {
			tab.Verify(msg, sig)
		}
	})
	b.Run("new-table", func(b *testing.B) {
		for b.Loop() {
			edverify.NewTable(pub)
		}
	})
}
