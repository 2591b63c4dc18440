package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
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

// Buffers of the two sizes streams use are pooled: every request opens a
// stream at each hop, and allocating its buffers was most of a request's
// garbage.
var (
	readers4k, readers16k sync.Pool // *bufio.Reader
	writers4k, writers16k sync.Pool // *bufio.Writer
)

// frameBufs holds the scratch space of frames larger than they start
// (a sealed request, a sealed answer record), up to maxPooledFrame: a
// stream per request at each hop would otherwise allocate one each time.
var frameBufs sync.Pool // *[]byte

const maxPooledFrame = 64 << 10

func readerPool(size int) *sync.Pool {
	switch size {
	case 4 << 10:
		return &readers4k
	case 16 << 10:
		return &readers16k
	}
	return nil
}

func writerPool(size int) *sync.Pool {
	switch size {
	case 4 << 10:
		return &writers4k
	case 16 << 10:
		return &writers16k
	}
	return nil
}

// NewFrameReader reads frames of at most max payload bytes from r. Its
// buffer (size bufSize, or 4 KiB if zero) is what Buffered reports on.
// Release returns the buffer for reuse.
func NewFrameReader(r io.Reader, max, bufSize int) *FrameReader {
	if bufSize <= 0 {
		bufSize = 4096
	}
	if max < 0 {
		max = 0
	}
	if p := readerPool(bufSize); p != nil {
		if br, ok := p.Get().(*bufio.Reader); ok {
			br.Reset(r)
			return &FrameReader{r: br, max: max}
		}
	}
	return &FrameReader{r: bufio.NewReaderSize(r, bufSize), max: max}
}

// Release gives the reader's buffer back for reuse. The FrameReader must
// not be used afterwards; payloads it returned become invalid.
func (fr *FrameReader) Release() {
	if fr.r == nil {
		return
	}
	if p := readerPool(fr.r.Size()); p != nil {
		fr.r.Reset(nil)
		p.Put(fr.r)
	}
	fr.putBuf()
	fr.r = nil
}

// putBuf gives the frame scratch space back, if it is poolable.
func (fr *FrameReader) putBuf() {
	if c := cap(fr.buf); c > 0 && c <= maxPooledFrame {
		b := fr.buf[:0]
		frameBufs.Put(&b)
	}
	fr.buf = nil
}

// grow makes room for a frame of size bytes: pooled space of at least
// 8 KiB up to maxPooledFrame, so that the frames of a request share one
// buffer, made once.
func (fr *FrameReader) grow(size int) {
	if size > maxPooledFrame {
		fr.buf = make([]byte, size)
		return
	}
	fr.putBuf()
	if bp, ok := frameBufs.Get().(*[]byte); ok && cap(*bp) >= size {
		fr.buf = *bp
		return
	}
	fr.buf = make([]byte, 0, max(size, 8<<10))
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
		fr.grow(size)
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
	if cap(fr.buf) > maxPooledFrame && size <= maxPooledFrame {
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
// (4 KiB if zero). Release returns the buffer for reuse.
func NewFrameWriter(w io.Writer, bufSize int) *FrameWriter {
	if bufSize <= 0 {
		bufSize = 4096
	}
	if p := writerPool(bufSize); p != nil {
		if bw, ok := p.Get().(*bufio.Writer); ok {
			bw.Reset(w)
			return &FrameWriter{w: bw}
		}
	}
	return &FrameWriter{w: bufio.NewWriterSize(w, bufSize)}
}

// Release gives the writer's buffer back for reuse, dropping anything not
// flushed. The FrameWriter must not be used afterwards.
func (fw *FrameWriter) Release() {
	if fw.w == nil {
		return
	}
	if p := writerPool(fw.w.Size()); p != nil {
		fw.w.Reset(nil)
		p.Put(fw.w)
	}
	fw.w = nil
}

// WriteFrame sends one frame to w in a single Write, without a buffer.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, len(payload)+binary.MaxVarintLen64+2), typ, payload))
	return err
}

// Write buffers one frame.
func (fw *FrameWriter) Write(typ byte, payload []byte) error {
	if fw.w.Available() < binary.MaxVarintLen64+2 {
		if err := fw.w.Flush(); err != nil {
			return err
		}
	}
	// The header is built in the writer's own free space: a local array
	// passed to Write would escape and cost an allocation per frame.
	hdr := binary.AppendUvarint(fw.w.AvailableBuffer(), uint64(len(payload)+2))
	hdr = append(hdr, FrameVersion, typ)
	if _, err := fw.w.Write(hdr); err != nil {
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
