package seal

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"unicode/utf8"
)

// KEM identifies a key encapsulation mechanism by its HPKE KEM ID
// (RFC 9180 and draft-ietf-hpke-pq). Its zero value is invalid.
type KEM uint16

// The KEMs a sealing key may use.
const (
	// MLKEM768X25519 is the hybrid post-quantum KEM (X-Wing): ML-KEM-768
	// combined with X25519. The default; see the package doc for why.
	MLKEM768X25519 KEM = 0x647a
	// X25519 is DHKEM(X25519, HKDF-SHA256): classical only, smaller and
	// faster. Kept for measurements and for peers that cannot do ML-KEM.
	X25519 KEM = 0x0020
)

// String names the KEM.
func (k KEM) String() string {
	switch k {
	case MLKEM768X25519:
		return "mlkem768x25519"
	case X25519:
		return "x25519"
	}
	return fmt.Sprintf("kem(%#04x)", uint16(k))
}

// kemSpec is what the package needs to know of a KEM.
type kemSpec struct {
	kem    func() hpke.KEM
	pubLen int // serialized public key, without our KEM ID prefix
	encLen int // encapsulated key
}

var kems = map[KEM]kemSpec{
	MLKEM768X25519: {kem: hpke.MLKEM768X25519, pubLen: 1216, encLen: 1120},
	X25519:         {kem: func() hpke.KEM { return hpke.DHKEM(ecdh.X25519()) }, pubLen: 32, encLen: 32},
}

// spec returns k's spec, or ErrUnsupportedKEM.
func (k KEM) spec() (kemSpec, error) {
	s, ok := kems[k]
	if !ok {
		return kemSpec{}, fmt.Errorf("%w: %v", ErrUnsupportedKEM, k)
	}
	return s, nil
}

// Size caps of keys. MaxPublicKey is the largest public key of a supported
// KEM with its prefix; maxEnc the largest encapsulated key.
const (
	MaxPublicKey = 2 + 1216
	maxEnc       = 1120
)

// KeyID names a sealing key: the first 16 bytes of SHA-256 over a label
// and the public key's wire form (KEM ID included). Wraps carry it so a
// worker finds its key, and every key derivation binds it.
type KeyID [16]byte

// String is the ID in hex.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

func keyIDOf(pubWire []byte) KeyID {
	h := sha256.New()
	h.Write([]byte(labelKeyID))
	h.Write(pubWire)
	var id KeyID
	copy(id[:], h.Sum(nil))
	return id
}

// PublicKey is a worker's sealing public key, parsed and checked.
type PublicKey struct {
	kem  KEM
	id   KeyID
	key  hpke.PublicKey
	wire []byte
}

// ParsePublicKey parses a sealing public key's wire form: the KEM ID
// (2 bytes, big endian) then the KEM's serialized public key, whose length
// the KEM fixes. The length is checked before anything is parsed.
func ParsePublicKey(b []byte) (*PublicKey, error) {
	if len(b) < 2 || len(b) > MaxPublicKey {
		return nil, fmt.Errorf("%w: public key of %d bytes", ErrMalformed, len(b))
	}
	kem := KEM(binary.BigEndian.Uint16(b))
	spec, err := kem.spec()
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	if len(b)-2 != spec.pubLen {
		return nil, fmt.Errorf("%w: %v public key of %d bytes, want %d", ErrMalformed, kem, len(b)-2, spec.pubLen)
	}
	key, err := spec.kem().NewPublicKey(b[2:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v public key: %v", ErrMalformed, kem, err)
	}
	wire := append([]byte(nil), b...)
	return &PublicKey{kem: kem, id: keyIDOf(wire), key: key, wire: wire}, nil
}

// KEM is the key's KEM.
func (p *PublicKey) KEM() KEM { return p.kem }

// ID is the key's ID.
func (p *PublicKey) ID() KeyID { return p.id }

// Bytes is the key's wire form. The caller must not modify it.
func (p *PublicKey) Bytes() []byte { return p.wire }

func marshalPublicKey(kem KEM, raw []byte) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(raw)), uint16(kem))
	return append(b, raw...)
}

// Caps on a Binding's fields.
const (
	MaxNetwork = 64
	MaxPeer    = 128
)

// Binding names a worker in a network: what every key derivation of a
// session binds, so that what was sealed for one worker of one network
// opens nowhere else. The client takes it from the worker's verified
// evidence; the worker passes its own.
type Binding struct {
	Network string // the network's name, as in protocol IDs ("mainnet")
	Peer    string // the worker's libp2p peer ID, in its string form
}

// check refuses empty or oversized fields.
func (b Binding) check() error {
	switch {
	case b.Network == "" || len(b.Network) > MaxNetwork || !utf8.ValidString(b.Network):
		return fmt.Errorf("%w: network name must be valid UTF-8 of 1 to %d bytes", ErrMalformed, MaxNetwork)
	case b.Peer == "" || len(b.Peer) > MaxPeer || !utf8.ValidString(b.Peer):
		return fmt.Errorf("%w: peer ID must be valid UTF-8 of 1 to %d bytes", ErrMalformed, MaxPeer)
	}
	return nil
}
