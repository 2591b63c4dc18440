package seal

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestHKDF: the allocation-free HMAC and HKDF here give crypto/hmac's and
// crypto/hkdf's results for keys and messages of every length around the
// block size and the stack buffer's bound.
func TestHKDF(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bytesOf := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for _, kl := range []int{0, 1, 31, 32, 33, 63, 64, 65, 200} {
		for _, ml := range []int{0, 1, 55, 56, 64, 100, hmacBuf - 64, hmacBuf - 63, 1000} {
			key, msg := bytesOf(kl), bytesOf(ml)
			a, b, c := msg[:ml/3], msg[ml/3:ml/2], msg[ml/2:]
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			want := m.Sum(nil)
			if got := hmacSHA256(key, a, b, c); !bytes.Equal(got[:], want) {
				t.Errorf("HMAC key %d bytes, message %d: %x, want %x", kl, ml, got, want)
			}
			wantX, err := hkdf.Expand(sha256.New, key, string(msg), keyLen)
			if err != nil {
				t.Fatal(err)
			}
			if got := expand32(key, a, msg[ml/3:]); !bytes.Equal(got, wantX) {
				t.Errorf("Expand key %d bytes, info %d: %x, want %x", kl, ml, got, wantX)
			}
		}
	}
}
