package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameVersion is the version byte every frame carries. A reader refuses
// frames of any other version, so an incompatible peer fails loudly.
const FrameVersion = 1

// Frame layout: uvarint(n) | version byte | type byte | payload (n-2 bytes).
// The length is checked against the reader's cap before anything is
// allocated.

// Frame errors. None of them is helped by retrying on the same stream.
var (
	ErrFrameTooLarge = errors.New("frame exceeds size cap")
	ErrFrameVersion  = errors.New("unsupported frame version")
	ErrFrameShort    = errors.New("frame shorter than its header")
)

// FrameReader reads frames from a buffered stream.
type FrameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewFrameReader reads frames of at most max payload bytes from r. Its
// buffer (size bufSize, or 4 KiB if zero) is what Buffered reports on.
func NewFrameReader(r io.Reader, max, bufSize int) *FrameReader {
	if bufSize <= 0 {
		bufSize = 4096
	}
	return &FrameReader{r: bufio.NewReaderSize(r, bufSize), max: max}
}

// Next reads the next frame. The payload is valid until the next call.
// At a clean end of stream it returns io.EOF; a frame cut short returns
// io.ErrUnexpectedEOF.
func (fr *FrameReader) Next() (typ byte, payload []byte, err error) {
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("reading frame length: %w", err)
	}
	if n < 2 {
		return 0, nil, ErrFrameShort
	}
	if n-2 > uint64(fr.max) {
		return 0, nil, fmt.Errorf("%w: %d > %d bytes", ErrFrameTooLarge, n-2, fr.max)
	}
	size := int(n)
	if cap(fr.buf) < size {
		fr.buf = make([]byte, size)
	}
	b := fr.buf[:size]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("reading frame: %w", err)
	}
	if b[0] != FrameVersion {
		return 0, nil, fmt.Errorf("%w: %d", ErrFrameVersion, b[0])
	}
	// Drop oversized scratch space so one big frame doesn't pin memory.
	if cap(fr.buf) > 64<<10 && size <= 64<<10 {
		fr.buf = nil
	}
	return b[1], b[2:], nil
}

// Buffered reports how many bytes are already read from the stream but not
// yet returned. Zero means the next Next would wait on the network: the
// moment to flush whatever was forwarded so far.
func (fr *FrameReader) Buffered() int { return fr.r.Buffered() }

// FrameWriter writes frames into a buffer; nothing reaches the stream until
// Flush (or the buffer fills).
type FrameWriter struct {
	w *bufio.Writer
}

// NewFrameWriter writes frames to w through a buffer of bufSize bytes
// (4 KiB if zero).
func NewFrameWriter(w io.Writer, bufSize int) *FrameWriter {
	if bufSize <= 0 {
		bufSize = 4096
	}
	return &FrameWriter{w: bufio.NewWriterSize(w, bufSize)}
}

// Write buffers one frame.
func (fw *FrameWriter) Write(typ byte, payload []byte) error {
	var hdr [binary.MaxVarintLen64 + 2]byte
	n := binary.PutUvarint(hdr[:], uint64(len(payload)+2))
	hdr[n] = FrameVersion
	hdr[n+1] = typ
	if _, err := fw.w.Write(hdr[:n+2]); err != nil {
		return err
	}
	_, err := fw.w.Write(payload)
	return err
}

// Flush sends everything buffered.
func (fw *FrameWriter) Flush() error { return fw.w.Flush() }

// AppendFrame appends one encoded frame to dst; tests and fuzzers use it to
// build raw input.
func AppendFrame(dst []byte, typ byte, payload []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(payload)+2))
	dst = append(dst, FrameVersion, typ)
	return append(dst, payload...)
}
