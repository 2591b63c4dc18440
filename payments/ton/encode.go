package ton

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
)

// encodingVersion is the first byte of an encoded SignedState.
const encodingVersion = 1

// maxSentBytes bounds the cumulative amount: the contract's Coins hold at
// most 15 bytes.
const maxSentBytes = 15

// ErrBadEncoding means bytes are not an encoded SignedState. Retrying
// cannot help.
var ErrBadEncoding = errors.New("malformed signed state")

// Encode returns s for the wire and the ledger: version (1), seqno (8 bytes,
// big-endian), the amount's length (1 byte, at most 15) and its big-endian
// bytes, and the 64-byte signature.
func (s SignedState) Encode() ([]byte, error) {
	if s.Sent == nil || s.Sent.Sign() < 0 {
		return nil, errors.New("encoding a signed state: want a non-negative amount")
	}
	sent := s.Sent.Bytes()
	if len(sent) > maxSentBytes {
		return nil, fmt.Errorf("encoding a signed state: amount of %d bytes, at most %d", len(sent), maxSentBytes)
	}
	if len(s.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("encoding a signed state: signature of %d bytes", len(s.Signature))
	}
	b := make([]byte, 0, 1+8+1+len(sent)+ed25519.SignatureSize)
	b = append(b, encodingVersion)
	b = binary.BigEndian.AppendUint64(b, s.Seqno)
	b = append(b, byte(len(sent)))
	b = append(b, sent...)
	return append(b, s.Signature...), nil
}

// DecodeSignedState parses what Encode returns. It checks the form only;
// Payee.Accept checks the signature.
func DecodeSignedState(b []byte) (SignedState, error) {
	if len(b) < 10 {
		return SignedState{}, fmt.Errorf("%w: %d bytes", ErrBadEncoding, len(b))
	}
	if b[0] != encodingVersion {
		return SignedState{}, fmt.Errorf("%w: version %d", ErrBadEncoding, b[0])
	}
	seqno := binary.BigEndian.Uint64(b[1:9])
	n := int(b[9])
	if n > maxSentBytes {
		return SignedState{}, fmt.Errorf("%w: amount of %d bytes", ErrBadEncoding, n)
	}
	rest := b[10:]
	if len(rest) != n+ed25519.SignatureSize {
		return SignedState{}, fmt.Errorf("%w: %d bytes after the header, want %d", ErrBadEncoding, len(rest), n+ed25519.SignatureSize)
	}
	if n > 0 && rest[0] == 0 {
		return SignedState{}, fmt.Errorf("%w: amount not minimally encoded", ErrBadEncoding)
	}
	return SignedState{
		State:     State{Seqno: seqno, Sent: new(big.Int).SetBytes(rest[:n])},
		Signature: append([]byte(nil), rest[n:]...),
	}, nil
}
