package seal

import (
	"crypto/hmac"
	"crypto/sha256"
)

// This file is HKDF-SHA256 (RFC 5869) for the package's 32-byte keys,
// without allocating: every request derives several keys on each side,
// and crypto/hkdf allocates an HMAC (two hash states and its pads) for
// each. The results are crypto/hkdf's, byte for byte (TestHKDF compares
// them), and the key vectors in testdata pin them.

// hmacBuf bounds the message an HMAC here hashes on the stack: a block of
// pad and the message; a longer one goes through crypto/hmac.
const hmacBuf = 384

// hmacSHA256 is HMAC-SHA256 of a, b and c, concatenated, under key.
func hmacSHA256(key, a, b, c []byte) [sha256.Size]byte {
	parts := [3][]byte{a, b, c}
	n := len(a) + len(b) + len(c)
	if n > hmacBuf-sha256.BlockSize {
		m := hmac.New(sha256.New, key)
		for _, p := range parts {
			m.Write(p)
		}
		var out [sha256.Size]byte
		m.Sum(out[:0])
		return out
	}
	var k [sha256.BlockSize]byte
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		copy(k[:], sum[:])
	} else {
		copy(k[:], key)
	}
	var buf [hmacBuf]byte
	for i := range k {
		buf[i] = k[i] ^ 0x36
	}
	end := sha256.BlockSize
	for _, p := range parts {
		end += copy(buf[end:], p)
	}
	inner := sha256.Sum256(buf[:end])
	for i := range k {
		buf[i] = k[i] ^ 0x5c
	}
	end = sha256.BlockSize + copy(buf[sha256.BlockSize:], inner[:])
	out := sha256.Sum256(buf[:end])
	clear(buf[:])
	clear(k[:])
	return out
}

// expand32 is HKDF-Expand(prk, info) of keyLen bytes, one block, where
// info is a and b concatenated.
func expand32(prk, a, b []byte) []byte {
	t := hmacSHA256(prk, a, b, one[:])
	return t[:]
}

// one is the counter of HKDF-Expand's first and only block.
var one = [1]byte{1}
