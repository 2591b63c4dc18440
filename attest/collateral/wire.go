package collateral

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// Protocol name and version: collateral is served at
// p2p.ProtocolID(network, ProtocolName, ProtocolVersion).
const (
	ProtocolName    = "collateral"
	ProtocolVersion = "1"
)

// ProtocolID is the collateral protocol of network.
func ProtocolID(network string) protocol.ID {
	return p2p.ProtocolID(network, ProtocolName, ProtocolVersion)
}

// Limits of the wire format.
const (
	// MaxURL bounds a request. go-tdx-guest's longest URL is under 100
	// bytes.
	MaxURL = 256
	// MaxHeader bounds an answer's header, encoded. Intel's issuer chains
	// are about 2.5 KiB.
	MaxHeader = 16 << 10
	// MaxHeaderFields bounds the names in an answer's header.
	MaxHeaderFields = 32
	// maxAnswer bounds an answer frame's payload.
	maxAnswer = binary.MaxVarintLen64 + MaxHeader + tdx.MaxCollateral
)

// Frame types.
const (
	frameRequest byte = 1
	frameAnswer  byte = 2
	frameRefused byte = 3
)

// Status codes of a refusal.
const (
	codeNotCached  = "not-cached"
	codeBadRequest = "bad-request"
)

// Errors of a request. None is helped by asking the same peer again soon.
var (
	// ErrNotCollateralURL: the URL is not one collateral checks fetch
	// (tdx.IsCollateralURL); nobody is asked.
	ErrNotCollateralURL = errors.New("not an Intel PCS collateral URL")
	// ErrNotCached: the peer holds no answer for the URL; another may.
	ErrNotCached = errors.New("collateral not cached by the peer")
	// ErrRefused: the peer found the request malformed.
	ErrRefused = errors.New("collateral request refused")
	// ErrMalformed: the peer's answer does not decode or breaks a limit.
	ErrMalformed = errors.New("malformed collateral answer")
)

// decodeRequest returns the URL a request asks for.
func decodeRequest(payload []byte) (string, error) {
	if len(payload) == 0 || len(payload) > MaxURL {
		return "", fmt.Errorf("%w: request of %d bytes, want 1 to %d", ErrNotCollateralURL, len(payload), MaxURL)
	}
	url := string(payload)
	if !tdx.IsCollateralURL(url) {
		return "", fmt.Errorf("%w: %.100q", ErrNotCollateralURL, url)
	}
	return url, nil
}

// encodeAnswer encodes header and body, checking them against the limits
// decodeAnswer applies.
func encodeAnswer(header map[string][]string, body []byte) ([]byte, error) {
	if header == nil {
		header = map[string][]string{}
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	if err := checkAnswer(len(header), len(h), len(body)); err != nil {
		return nil, err
	}
	out := make([]byte, 0, binary.MaxVarintLen64+len(h)+len(body))
	out = binary.AppendUvarint(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, body...), nil
}

// decodeAnswer decodes an answer's payload; the body aliases payload.
func decodeAnswer(payload []byte) (map[string][]string, []byte, error) {
	if len(payload) > maxAnswer {
		return nil, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(payload), maxAnswer)
	}
	n, k := binary.Uvarint(payload)
	if k <= 0 || n > uint64(len(payload)-k) {
		return nil, nil, fmt.Errorf("%w: header length", ErrMalformed)
	}
	h, body := payload[k:k+int(n)], payload[k+int(n):]
	if len(h) > MaxHeader {
		return nil, nil, fmt.Errorf("%w: header of %d bytes, at most %d", ErrMalformed, len(h), MaxHeader)
	}
	var header map[string][]string
	if err := json.Unmarshal(h, &header); err != nil || header == nil {
		return nil, nil, fmt.Errorf("%w: header: not a JSON object of string lists", ErrMalformed)
	}
	if err := checkAnswer(len(header), len(h), len(body)); err != nil {
		return nil, nil, err
	}
	return header, body, nil
}

func checkAnswer(fields, headerLen, bodyLen int) error {
	switch {
	case fields > MaxHeaderFields:
		return fmt.Errorf("%w: %d header names, at most %d", ErrMalformed, fields, MaxHeaderFields)
	case headerLen > MaxHeader:
		return fmt.Errorf("%w: header of %d bytes, at most %d", ErrMalformed, headerLen, MaxHeader)
	case bodyLen == 0 || bodyLen > tdx.MaxCollateral:
		return fmt.Errorf("%w: body of %d bytes, want 1 to %d", ErrMalformed, bodyLen, tdx.MaxCollateral)
	}
	return nil
}
