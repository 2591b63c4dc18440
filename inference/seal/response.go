package seal

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
)

// A ResponseSealer seals one answer, chunk by chunk, back to the client
// that sealed the request. Its key is the answer key of the client's
// session with this worker, which only the two know, so only that client
// opens the records, and it knows they came from this worker; the nonces
// hold the request's counter, so a record opens only within its own
// answer. It is safe for concurrent use, though
// chunks are numbered in the order Seal is called.
type ResponseSealer struct {
	aead cipher.AEAD // the session's answer key
	ctr  uint64      // the request's counter in the session

	mu    sync.Mutex // guards seq, ended and nonce
	seq   uint64     // the next chunk's number
	ended bool
	nonce [12]byte // scratch
}

// Seal returns chunk sealed as the answer's next record. chunk may be
// empty; it must be at most MaxChunk bytes.
func (s *ResponseSealer) Seal(chunk []byte) ([]byte, error) { return s.AppendSeal(nil, chunk) }

// AppendSeal is Seal appending the record to dst, which must not overlap
// chunk: a worker seals every chunk into one reused buffer.
func (s *ResponseSealer) AppendSeal(dst, chunk []byte) ([]byte, error) {
	if len(chunk) > MaxChunk {
		return nil, fmt.Errorf("sealing answer chunk: %w: %d bytes, at most %d", ErrMalformed, len(chunk), MaxChunk)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, fmt.Errorf("sealing answer chunk: %w", ErrEnded)
	}
	if s.seq+1 >= maxRecords { // the end record needs a number too
		return nil, fmt.Errorf("sealing answer chunk: %w: an answer has at most %d records", ErrMalformed, maxRecords)
	}
	rec := s.sealLocked(dst, typeChunk, chunk)
	s.seq++
	return rec, nil
}

// End returns the answer's end record, which seals the number of chunks
// sent; after it, the sealer refuses to seal more.
func (s *ResponseSealer) End() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, fmt.Errorf("ending answer: %w", ErrEnded)
	}
	s.ended = true
	return s.sealLocked(nil, typeEnd, binary.BigEndian.AppendUint64(nil, s.seq)), nil
}

// sealLocked appends the record of plaintext to dst.
func (s *ResponseSealer) sealLocked(dst []byte, typ byte, plaintext []byte) []byte {
	dst = slices.Grow(dst, RecordOverhead+len(plaintext))
	start := len(dst)
	rec := recordHeader(dst, typ, s.seq)
	return s.aead.Seal(rec, recordNonce(&s.nonce, s.ctr, s.seq), plaintext, rec[start:start+recordHeaderLen])
}

// A ResponseOpener opens the records of one answer on the client. The
// first record tells which candidate answered; from then on only that
// worker's records open. The first failure is final: every later call
// returns it. It is safe for concurrent use, though records must be
// passed in the order they arrived.
type ResponseOpener struct {
	candidates []candidate

	mu     sync.Mutex // guards chosen, next, ended, err and nonce
	chosen int        // index in candidates; -1 until a record opened
	next   uint64     // the next chunk's number
	ended  bool
	err    error    // the first failure
	nonce  [12]byte // scratch
	buf    []byte   // the last chunk opened, reused by the next
}

// candidate is one worker the request was sealed to and the key its
// answer would be sealed with.
type candidate struct {
	session *Session // the client's session with the candidate
	ctr     uint64   // the request's counter in that session
}

// Open opens the answer's next record and returns its chunk, valid until
// the next call (its buffer is reused), or, for the end record, nil and
// io.EOF. A record that fails authentication (changed,
// or from another request or worker) is ErrAuth; one out of sequence
// (dropped, reordered, duplicated) is ErrOrder; one after the end record
// is ErrAfterEnd.
func (o *ResponseOpener) Open(record []byte) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return nil, o.err
	}
	chunk, err := o.openLocked(record)
	if err != nil && err != io.EOF {
		o.err = fmt.Errorf("opening answer record %d: %w", o.next, err)
		return nil, o.err
	}
	return chunk, err
}

func (o *ResponseOpener) openLocked(record []byte) ([]byte, error) {
	if o.ended {
		return nil, ErrAfterEnd
	}
	typ, seq, sealed, err := parseRecord(record)
	if err != nil {
		return nil, err
	}
	aad := record[:recordHeaderLen]
	if o.buf == nil {
		o.buf = (*openBufs.Get().(*[]byte))[:0]
	}
	if n := len(sealed); cap(o.buf) < n {
		// Grown ahead, not to each record's size: an answer's records
		// differ in size, and each would otherwise allocate its own.
		o.buf = make([]byte, 0, max(n, 2*cap(o.buf), minOpenBuf))
	}
	var plain []byte
	if o.chosen >= 0 {
		c := &o.candidates[o.chosen]
		plain, err = c.session.keys.answer.Open(o.buf[:0], recordNonce(&o.nonce, c.ctr, seq), sealed, aad)
	} else {
		err = ErrAuth
		for i, c := range o.candidates {
			if p, e := c.session.keys.answer.Open(o.buf[:0], recordNonce(&o.nonce, c.ctr, seq), sealed, aad); e == nil {
				plain, err, o.chosen = p, nil, i
				// The worker caches a session before it answers through
				// it: the session's next requests name it by reference.
				c.session.known.Store(true)
				break
			}
		}
	}
	if err != nil {
		return nil, ErrAuth
	}
	o.buf = plain
	if seq != o.next {
		return nil, fmt.Errorf("%w: record %d, want %d", ErrOrder, seq, o.next)
	}
	if typ == typeChunk {
		o.next++
		return plain, nil
	}
	if len(plain) != 8 || binary.BigEndian.Uint64(plain) != seq {
		return nil, fmt.Errorf("%w: end record's count does not match its number", ErrMalformed)
	}
	o.ended = true
	// The last chunk was valid until this call: the buffer serves the
	// next answer.
	if cap(o.buf) <= maxPooledOpenBuf {
		b := o.buf[:0]
		openBufs.Put(&b)
	}
	o.buf = nil
	return nil, io.EOF
}

// ResendKeys makes the next requests of every session this answer's
// request was sealed through carry the session's encapsulated key again,
// after a worker refused it with ErrUnknownSession (answered as the code
// the mesh gives that error).
func (o *ResponseOpener) ResendKeys() {
	for _, c := range o.candidates {
		c.session.known.Store(false)
	}
}

// minOpenBuf is the least space a ResponseOpener opens records into;
// answers return buffers up to maxPooledOpenBuf to openBufs when they end.
const (
	minOpenBuf       = 8 << 10
	maxPooledOpenBuf = 64 << 10
)

// openBufs holds the buffers of answers that ended, for the next: a
// client opens every answer it gets.
var openBufs = sync.Pool{New: func() any { b := make([]byte, 0, minOpenBuf); return &b }}

// Done returns nil if the end record was opened and no record failed;
// ErrTruncated if the answer has not ended; else the first failure.
func (o *ResponseOpener) Done() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.err != nil:
		return o.err
	case !o.ended:
		return fmt.Errorf("answer after %d chunks: %w", o.next, ErrTruncated)
	}
	return nil
}

// Worker returns the binding and key of the candidate whose record opened,
// which proves that worker sealed the answer; ok is false before any did.
func (o *ResponseOpener) Worker() (worker Binding, id KeyID, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.chosen < 0 {
		return Binding{}, KeyID{}, false
	}
	c := o.candidates[o.chosen]
	return c.session.worker, c.session.id, true
}
