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
	labelKeyID    = "cocoon-seal/1 key id"
	labelInfo     = "cocoon-seal/1 session"
	labelExport   = "cocoon-seal/1 session secret"
	labelWrap     = "cocoon-seal/1 wrap"
	labelRequest  = "cocoon-seal/1 request"
	labelResponse = "cocoon-seal/1 response"
	labelCache    = "cocoon-seal/1 cache"
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

// wrapKey derives the key that wraps one request's key: from the session's
// secret and the request's counter, so each is used once.
func wrapKey(secret []byte, ctr uint64) []byte {
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], ctr)
	return expand32(secret, []byte(labelWrap), c[:])
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

// responseKey derives the key of one worker's answer: from the request key
// (fresh per request) and that worker's wrap key (known to the client and
// that worker only, so another candidate cannot answer in its name):
// HKDF with the request key as salt.
func responseKey(reqKey, wk []byte, b Binding, id KeyID) []byte {
	info := appendLP(appendLP([]byte(labelResponse), b.Network), b.Peer)
	info = append(info, id[:]...)
	prk := extract(reqKey, wk)
	defer clear(prk[:])
	return expand32(prk[:], info, nil)
}

// newAEAD returns AES-256-GCM under key.
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

// zeroNonce is the nonce of keys used exactly once (wrap and body keys).
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
