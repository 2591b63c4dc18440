package seal

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"
)

// Version is the sealing protocol's version, the first byte of every
// message and bound into every derivation's associated data.
const Version byte = 2

// Message types, the second byte of every message.
const (
	typeRequest byte = 1
	typeChunk   byte = 2
	typeEnd     byte = 3
)

// Size caps, checked before anything is allocated.
const (
	MaxRequestID  = 128     // bytes of a request ID
	MaxCandidates = 16      // wraps in one sealed request
	MaxBody       = 4 << 20 // plaintext bytes of a request body
	MaxRecord     = 1 << 20 // bytes of one sealed answer record
	// RecordOverhead is what sealing adds to a chunk: the header and the tag.
	RecordOverhead = recordHeaderLen + tagLen
	// MaxChunk is the largest chunk one record carries.
	MaxChunk = MaxRecord - RecordOverhead
)

// A SealedRequest is a request body sealed to one or more candidate
// workers. Its fields are what travels in the clear; the proxy may read
// them (and drop the wraps of candidates it will not use) but cannot open
// the body or change anything undetected.
type SealedRequest struct {
	RequestID string
	SealedAt  time.Time // the client's clock, to the millisecond
	Wraps     []Wrap    // one per candidate, distinct key IDs
	Body      []byte    // AES-256-GCM ciphertext of the body, tag included
}

// A Wrap carries the request key to one candidate: the client's session
// with that worker's key, named by its HPKE encapsulated key or, once the
// worker has answered through the session, by reference; the session's
// request counter; and the request key sealed under a key derived from
// the session's secret and the counter.
type Wrap struct {
	KEM     KEM
	KeyID   KeyID
	Counter uint64 // never 0; one per request in the session
	// Enc is the HPKE encapsulated key, the KEM's length, or nil when Ref
	// names the session. SealRequest's is its session's own: read it, do
	// not change it.
	Enc []byte
	// Ref names a session the worker already holds (RefLen bytes, the
	// worker's cache key of it) instead of Enc; nil when Enc is set.
	Ref []byte
	Key []byte // the sealed request key: 32 bytes and a 16-byte tag
}

// RefLen is the length of a session reference (Wrap.Ref).
const RefLen = 32

// check refuses what the wire format refuses.
func (sr *SealedRequest) check() error {
	switch {
	case sr.RequestID == "" || len(sr.RequestID) > MaxRequestID || !utf8.ValidString(sr.RequestID):
		return fmt.Errorf("%w: request ID must be valid UTF-8 of 1 to %d bytes", ErrMalformed, MaxRequestID)
	case sr.SealedAt.UnixMilli() <= 0:
		return fmt.Errorf("%w: sealing time %v", ErrMalformed, sr.SealedAt)
	case len(sr.Wraps) == 0 || len(sr.Wraps) > MaxCandidates:
		return fmt.Errorf("%w: %d wraps, want 1 to %d", ErrMalformed, len(sr.Wraps), MaxCandidates)
	case len(sr.Body) < tagLen || len(sr.Body) > MaxBody+tagLen:
		return fmt.Errorf("%w: sealed body of %d bytes", ErrMalformed, len(sr.Body))
	}
	seen := make(map[KeyID]bool, len(sr.Wraps))
	for i := range sr.Wraps {
		w := &sr.Wraps[i]
		if err := w.check(); err != nil {
			return fmt.Errorf("wrap %d: %w", i, err)
		}
		if seen[w.KeyID] {
			return fmt.Errorf("%w: two wraps for key %v", ErrMalformed, w.KeyID)
		}
		seen[w.KeyID] = true
	}
	return nil
}

func (w *Wrap) check() error {
	spec, err := w.KEM.spec()
	if err != nil {
		return err
	}
	switch {
	case w.Counter == 0:
		return fmt.Errorf("%w: wrap counter 0", ErrMalformed)
	case (w.Enc == nil) == (w.Ref == nil) || w.Ref != nil && len(w.Ref) != RefLen:
		return fmt.Errorf("%w: a wrap names its session by encapsulated key or by a %d-byte reference, one of them", ErrMalformed, RefLen)
	case w.Enc != nil && len(w.Enc) != spec.encLen:
		return fmt.Errorf("%w: %v encapsulated key of %d bytes, want %d", ErrMalformed, w.KEM, len(w.Enc), spec.encLen)
	case len(w.Key) != wrappedLen:
		return fmt.Errorf("%w: wrapped key of %d bytes, want %d", ErrMalformed, len(w.Key), wrappedLen)
	}
	return nil
}

// AppendSealedRequest appends sr's wire form to dst. It refuses what
// DecodeSealedRequest refuses, so a bad message fails at its source. The
// format, all integers big endian:
//
//	version  u8 = 1
//	type     u8 = 1 (request)
//	sealedAt u64, Unix milliseconds
//	idLen    u8 (1..128), then the request ID (UTF-8)
//	nWraps   u8 (1..16), then per wrap:
//	    kem     u16
//	    keyID   [16]
//	    counter u64 (not 0)
//	    encLen  u16 (the KEM's: 1120 or 32), then enc; or 0, then a
//	            32-byte reference to a session the worker holds
//	    key     [48]
//	bodyLen  u32 (16..MaxBody+16), then the sealed body
//
// Nothing may follow the body.
func AppendSealedRequest(dst []byte, sr *SealedRequest) ([]byte, error) {
	if err := sr.check(); err != nil {
		return nil, fmt.Errorf("encoding sealed request: %w", err)
	}
	n := 2 + 8 + 1 + len(sr.RequestID) + 1 + 4 + len(sr.Body)
	for _, w := range sr.Wraps {
		n += 2 + len(w.KeyID) + 8 + 2 + len(w.Enc) + len(w.Ref) + len(w.Key)
	}
	dst = slices.Grow(dst, n) // one allocation, not one per doubling
	dst = append(dst, Version, typeRequest)
	dst = binary.BigEndian.AppendUint64(dst, uint64(sr.SealedAt.UnixMilli()))
	dst = appendLP(dst, sr.RequestID)
	dst = append(dst, byte(len(sr.Wraps)))
	for _, w := range sr.Wraps {
		dst = binary.BigEndian.AppendUint16(dst, uint16(w.KEM))
		dst = append(dst, w.KeyID[:]...)
		dst = binary.BigEndian.AppendUint64(dst, w.Counter)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(w.Enc)))
		if w.Enc == nil {
			dst = append(dst, w.Ref...)
		}
		dst = append(dst, w.Enc...)
		dst = append(dst, w.Key...)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(sr.Body)))
	return append(dst, sr.Body...), nil
}

// reader reads a message field by field; every length is checked against
// its cap and against what is left before anything is allocated.
type reader struct {
	p   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.p) {
		r.err = fmt.Errorf("%w: message ends early", ErrMalformed)
		return nil
	}
	b := r.p[:n:n]
	r.p = r.p[n:]
	return b
}

func (r *reader) u8() int {
	if b := r.take(1); b != nil {
		return int(b[0])
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// capped reads a length-prefixed field whose length must be in [lo, hi].
func (r *reader) capped(n, lo, hi int, what string) []byte {
	if r.err == nil && (n < lo || n > hi) {
		r.err = fmt.Errorf("%w: %s of %d bytes, want %d to %d", ErrMalformed, what, n, lo, hi)
	}
	return r.take(n)
}

// DecodeSealedRequest decodes a sealed request (see AppendSealedRequest
// for the format). Enc, wrapped keys and body are copied out of p.
func DecodeSealedRequest(p []byte) (*SealedRequest, error) {
	sr, err := decodeSealedRequest(&reader{p: p}, clone)
	if err != nil {
		return nil, fmt.Errorf("decoding sealed request: %w", err)
	}
	return sr, nil
}

// ParseSealedRequest is DecodeSealedRequest without the copies: the
// request's fields alias p, which the caller must not change while it
// uses them (a worker parses the body it already holds).
func ParseSealedRequest(p []byte) (*SealedRequest, error) {
	sr, err := decodeSealedRequest(&reader{p: p}, func(b []byte) []byte { return b })
	if err != nil {
		return nil, fmt.Errorf("decoding sealed request: %w", err)
	}
	return sr, nil
}

func decodeSealedRequest(r *reader, clone func([]byte) []byte) (*SealedRequest, error) {
	if v, t := r.u8(), r.u8(); r.err == nil && (v != int(Version) || t != int(typeRequest)) {
		return nil, fmt.Errorf("%w: version %d type %d, want sealed request version %d", ErrMalformed, v, t, Version)
	}
	at := r.u64()
	if r.err == nil && (at == 0 || at > math.MaxInt64) {
		return nil, fmt.Errorf("%w: sealing time %d", ErrMalformed, at)
	}
	sr := &SealedRequest{SealedAt: time.UnixMilli(int64(at))}
	sr.RequestID = string(r.capped(r.u8(), 1, MaxRequestID, "request ID"))
	n := r.u8()
	if r.err == nil && (n == 0 || n > MaxCandidates) {
		return nil, fmt.Errorf("%w: %d wraps, want 1 to %d", ErrMalformed, n, MaxCandidates)
	}
	sr.Wraps = make([]Wrap, n)
	for i := range sr.Wraps {
		w := &sr.Wraps[i]
		w.KEM = KEM(r.u16())
		copy(w.KeyID[:], r.take(len(w.KeyID)))
		w.Counter = r.u64()
		if n := int(r.u16()); n == 0 {
			w.Ref = clone(r.take(RefLen))
		} else {
			w.Enc = clone(r.capped(n, 1, maxEnc, "encapsulated key"))
		}
		w.Key = clone(r.take(wrappedLen))
	}
	sr.Body = clone(r.capped(int(r.u32()), tagLen, MaxBody+tagLen, "sealed body"))
	switch {
	case r.err != nil:
		return nil, r.err
	case len(r.p) != 0:
		return nil, fmt.Errorf("%w: %d bytes after the body", ErrMalformed, len(r.p))
	}
	return sr, sr.check()
}

// Recipients reads what a proxy routes a sealed request by: its request ID
// and the key IDs of its candidates, in wrap order. It checks the whole
// format (ParseSealedRequest) and copies nothing but the key IDs.
func Recipients(p []byte) (reqID string, keys []KeyID, err error) {
	sr, err := ParseSealedRequest(p)
	if err != nil {
		return "", nil, err
	}
	keys = make([]KeyID, len(sr.Wraps))
	for i := range sr.Wraps {
		keys[i] = sr.Wraps[i].KeyID
	}
	return sr.RequestID, keys, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// An answer record is:
//
//	version u8 = 1
//	type    u8: 2 (chunk) or 3 (end)
//	seq     u64: the chunk's index from 0; the end record's is the count
//	sealed  AES-256-GCM ciphertext and tag; the end record's plaintext is
//	        the chunk count, u64
//
// The header is the associated data; the nonce is the type byte, three
// zero bytes and seq, so no two records of one answer share a nonce.
const recordHeaderLen = 10

func recordHeader(dst []byte, typ byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, Version, typ), seq)
}

// recordNonce writes the nonce of record seq of the answer to the
// request with counter ctr into n. The record's type is in its header,
// which is the AEAD's associated data.
func recordNonce(n *[12]byte, ctr, seq uint64) []byte {
	binary.BigEndian.PutUint64(n[:8], ctr)
	binary.BigEndian.PutUint32(n[8:], uint32(seq))
	return n[:]
}

// maxRecords bounds an answer's records, its end record included, so a
// record's number fits its nonce.
const maxRecords = 1 << 32

// parseRecord splits a record into its header fields and sealed part.
func parseRecord(rec []byte) (typ byte, seq uint64, sealed []byte, err error) {
	if len(rec) < RecordOverhead || len(rec) > MaxRecord {
		return 0, 0, nil, fmt.Errorf("%w: record of %d bytes", ErrMalformed, len(rec))
	}
	if rec[0] != Version || (rec[1] != typeChunk && rec[1] != typeEnd) {
		return 0, 0, nil, fmt.Errorf("%w: record version %d type %d", ErrMalformed, rec[0], rec[1])
	}
	seq = binary.BigEndian.Uint64(rec[2:recordHeaderLen])
	if seq >= maxRecords {
		return 0, 0, nil, fmt.Errorf("%w: record number %d, at most %d", ErrMalformed, seq, maxRecords-1)
	}
	return rec[1], seq, rec[recordHeaderLen:], nil
}
