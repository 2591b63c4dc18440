package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Labels separate every derivation of the protocol, version included, so
// a key or tag of one use is never valid in another.
const (
	labelKeyID    = "cocoon-seal/2 key id"
	labelInfo     = "cocoon-seal/2 session"
	labelExport   = "cocoon-seal/2 session secret"
	labelWrap     = "cocoon-seal/2 wrap"
	labelRequest  = "cocoon-seal/2 request"
	labelResponse = "cocoon-seal/2 response"
	labelCache    = "cocoon-seal/2 cache"
)

// keyLen is the length of every symmetric key: AES-256.
const keyLen = 32

// tagLen is AES-GCM's tag; wrappedLen a wrapped request key.
const (
	tagLen     = 16
	wrappedLen = keyLen + tagLen
)

// HPKE's KDF; the AEAD is export-only: the session's secret is exported
// and every message is sealed under keys derived from it.
var (
	hpkeKDF  = hpke.HKDFSHA256
	hpkeAEAD = hpke.ExportOnly
)

// appendLP appends s with a one-byte length; every string bound here is
// capped below 256 bytes before it gets this far.
func appendLP(dst []byte, s string) []byte {
	return append(append(dst, byte(len(s))), s...)
}

// sessionInfo is HPKE's info for a session with worker b's key id.
func sessionInfo(b Binding, id KeyID) []byte {
	info := appendLP(appendLP([]byte(labelInfo), b.Network), b.Peer)
	return append(info, id[:]...)
}

// sessionKeys are what a session's secret gives: the AEAD that wraps its
// requests' keys and the one that seals their answers. Both take nonces
// made of the request's counter, which the client never repeats in a
// session and the worker opens at most once (its replay window), so they
// serve every request of the session without a key set up per request.
type sessionKeys struct {
	wrap, answer cipher.AEAD
}

func newSessionKeys(secret []byte) (sessionKeys, error) {
	wk := expand32(secret, []byte(labelWrap), nil)
	defer clear(wk)
	ak := expand32(secret, []byte(labelResponse), nil)
	defer clear(ak)
	wrap, err := newAEAD(wk)
	if err != nil {
		return sessionKeys{}, err
	}
	answer, err := newAEAD(ak)
	if err != nil {
		return sessionKeys{}, err
	}
	return sessionKeys{wrap: wrap, answer: answer}, nil
}

// wrapNonce writes the nonce of the wrap of the request with counter ctr
// into n.
func wrapNonce(n *[12]byte, ctr uint64) []byte {
	*n = [12]byte{}
	binary.BigEndian.PutUint64(n[4:], ctr)
	return n[:]
}

// requestAAD is what a request's body is bound to.
func requestAAD(network, reqID string, sealedAt int64) []byte {
	aad := appendLP(appendLP([]byte{Version, typeRequest}, network), reqID)
	return binary.BigEndian.AppendUint64(aad, uint64(sealedAt))
}

// wrapAAD is what a wrap is bound to: the request, the SHA-256 of the
// sealed body and of the routing header, then the worker, its key and the
// counter. The body's hash matters because every candidate can recover
// the request key: without it, a candidate could seal another body under
// that key and the others' wraps would still open. The header's is what
// the proxy reads to route and bill (model, sizes, prices, tier), so it
// cannot be changed on the way.
func wrapAAD(b Binding, reqID string, sealedAt int64, bodyHash, headerHash [sha256.Size]byte, id KeyID, ctr uint64) []byte {
	aad := requestAAD(b.Network, reqID, sealedAt)
	aad = append(aad, bodyHash[:]...)
	aad = append(aad, headerHash[:]...)
	aad = appendLP(aad, b.Peer)
	aad = append(aad, id[:]...)
	return binary.BigEndian.AppendUint64(aad, ctr)
}

// bodyKey derives the body's key from the request key.
func bodyKey(reqKey []byte) []byte {
	return expand32(reqKey, []byte(labelRequest), nil)
}

// newAEAD returns AES-256-GCM under key. crypto/cipher's GCM keeps no
// state between calls: one serves concurrent requests.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("making AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("making GCM: %w", err)
	}
	return aead, nil
}

// zeroNonce is the nonce of keys used exactly once (body keys).
var zeroNonce [12]byte

// sealOnce seals plaintext under a single-use key.
func sealOnce(dst, key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return aead.Seal(dst, zeroNonce[:], plaintext, aad), nil
}

// openOnce opens ciphertext sealed by sealOnce; failure is ErrAuth.
func openOnce(key, ciphertext, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	p, err := aead.Open(nil, zeroNonce[:], ciphertext, aad)
	if err != nil {
		return nil, ErrAuth
	}
	return p, nil
}
