package p2p_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/p2p"
)

type frame struct {
	typ     byte
	payload []byte
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		max     int
		bufSize int
		frames  []frame
	}{
		{"empty payload", 16, 0, []frame{{1, nil}}},
		{"one byte", 16, 0, []frame{{7, []byte{0}}}},
		{"varint boundary", 1 << 10, 0, []frame{
			{1, bytes.Repeat([]byte{'a'}, 125)}, // n = 127: one length byte
			{2, bytes.Repeat([]byte{'b'}, 126)}, // n = 128: two length bytes
		}},
		{"payload exactly at cap", 100, 0, []frame{{3, bytes.Repeat([]byte{'c'}, 100)}}},
		{"frame larger than read buffer", 1 << 20, 16, []frame{{4, bytes.Repeat([]byte("xyz"), 10000)}}},
		{"big then small then big", 1 << 20, 0, []frame{
			{1, bytes.Repeat([]byte{1}, 100<<10)},
			{2, []byte("small")},
			{3, bytes.Repeat([]byte{3}, 70<<10)},
			{4, nil},
		}},
		{"every type byte", 8, 0, []frame{{0, []byte("a")}, {255, []byte("b")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stream bytes.Buffer
			fw := p2p.NewFrameWriter(&stream, tt.bufSize)
			var appended []byte
			for _, f := range tt.frames {
				if err := fw.Write(f.typ, f.payload); err != nil {
					t.Fatal(err)
				}
				appended = p2p.AppendFrame(appended, f.typ, f.payload)
			}
			if err := fw.Flush(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(stream.Bytes(), appended) {
				t.Fatalf("FrameWriter and AppendFrame disagree:\n%x\n%x", stream.Bytes(), appended)
			}

			fr := p2p.NewFrameReader(&stream, tt.max, tt.bufSize)
			for i, want := range tt.frames {
				typ, payload, err := fr.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if typ != want.typ || !bytes.Equal(payload, want.payload) {
					t.Fatalf("frame %d: got type %d, %d bytes; want type %d, %d bytes", i, typ, len(payload), want.typ, len(want.payload))
				}
			}
			if _, _, err := fr.Next(); err != io.EOF {
				t.Fatalf("after the last frame: got %v, want io.EOF", err)
			}
		})
	}
}

func TestFrameWriterBuffersUntilFlush(t *testing.T) {
	var stream bytes.Buffer
	fw := p2p.NewFrameWriter(&stream, 0)
	if err := fw.Write(1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if stream.Len() != 0 {
		t.Fatalf("%d bytes reached the stream before Flush", stream.Len())
	}
	if err := fw.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := p2p.AppendFrame(nil, 1, []byte("hello")); !bytes.Equal(stream.Bytes(), want) {
		t.Fatalf("got %x, want %x", stream.Bytes(), want)
	}
}

func TestFrameReaderErrors(t *testing.T) {
	uvarint := func(n uint64) []byte { return binary.AppendUvarint(nil, n) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name  string
		input []byte
		max   int
		want  error
	}{
		{"clean end", nil, 16, io.EOF},
		{"length zero", uvarint(0), 16, p2p.ErrFrameShort},
		{"length one", cat(uvarint(1), []byte{p2p.FrameVersion}), 16, p2p.ErrFrameShort},
		{"one over the cap", cat(uvarint(2+17), []byte{p2p.FrameVersion, 1}, make([]byte, 17)), 16, p2p.ErrFrameTooLarge},
		{"1 GiB claimed with a 1 KiB cap", uvarint(1<<30 + 2), 1 << 10, p2p.ErrFrameTooLarge},
		{"max uint64 length", uvarint(^uint64(0)), 1 << 10, p2p.ErrFrameTooLarge},
		{"version zero", cat(uvarint(3), []byte{0, 1, 'x'}), 16, p2p.ErrFrameVersion},
		{"version two", cat(uvarint(2), []byte{2, 1}), 16, p2p.ErrFrameVersion},
		{"truncated payload", cat(uvarint(10), []byte{p2p.FrameVersion, 1, 'a'}), 16, io.ErrUnexpectedEOF},
		{"header only", uvarint(10), 16, io.ErrUnexpectedEOF},
		{"truncated length", []byte{0x80}, 16, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := p2p.NewFrameReader(bytes.NewReader(tt.input), tt.max, 0)
			_, _, err := fr.Next()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFrameReaderLengthOverflow(t *testing.T) {
	// Eleven continuation bytes overflow a uint64: an error, not a clean EOF.
	input := append(bytes.Repeat([]byte{0xff}, 10), 0x01)
	fr := p2p.NewFrameReader(bytes.NewReader(input), 16, 0)
	_, _, err := fr.Next()
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want an overflow error", err)
	}
}

// headerOnly serves a frame header and fails the test if anything reads
// past it.
type headerOnly struct {
	t      *testing.T
	header []byte
}

func (r *headerOnly) Read(p []byte) (int, error) {
	if len(r.header) == 0 {
		r.t.Error("reader asked for bytes after the header")
		return 0, errors.New("read past the header")
	}
	n := copy(p, r.header)
	r.header = r.header[n:]
	return n, nil
}

func TestFrameCapCheckedBeforeAllocation(t *testing.T) {
	hdr := binary.AppendUvarint(nil, 1<<30+2)
	hdr = append(hdr, p2p.FrameVersion, 1)
	fr := p2p.NewFrameReader(&headerOnly{t: t, header: hdr}, 1<<10, 0)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := fr.Next()
	runtime.ReadMemStats(&after)

	if !errors.Is(err, p2p.ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("Next allocated %d bytes for a frame over the cap", grew)
	}
}

// oneFramePerRead hands out one chunk per Read call, like a network that
// delivers frames as they are sent.
type oneFramePerRead struct{ chunks [][]byte }

func (r *oneFramePerRead) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	if len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

func TestFrameReaderBuffered(t *testing.T) {
	a := p2p.AppendFrame(nil, 1, []byte("first"))
	b := p2p.AppendFrame(nil, 2, []byte("second"))
	tests := []struct {
		name string
		src  io.Reader
		want []int // Buffered after each Next
	}{
		{"both frames arrive together", bytes.NewReader(append(append([]byte(nil), a...), b...)), []int{len(b), 0}},
		{"frames arrive apart", &oneFramePerRead{chunks: [][]byte{a, b}}, []int{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := p2p.NewFrameReader(tt.src, 64, 0)
			if got := fr.Buffered(); got != 0 {
				t.Fatalf("Buffered before reading = %d, want 0", got)
			}
			for i, want := range tt.want {
				if _, _, err := fr.Next(); err != nil {
					t.Fatal(err)
				}
				if got := fr.Buffered(); got != want {
					t.Fatalf("Buffered after frame %d = %d, want %d", i, got, want)
				}
			}
		})
	}
}

func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{})
	f.Add(p2p.AppendFrame(nil, 1, []byte("hello")))
	f.Add(p2p.AppendFrame(p2p.AppendFrame(nil, 1, nil), 255, bytes.Repeat([]byte{0xaa}, 300)))
	f.Add([]byte{0x05, 0x02, 0x01, 'a', 'b', 'c'})
	f.Add([]byte{0x00})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x04})
	f.Add(bytes.Repeat([]byte{0xff}, 11))
	f.Add([]byte(strings.Repeat("\x03\x01\x07x", 20)))
	const max = 1 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := p2p.NewFrameReader(bytes.NewReader(data), max, 16)
		var frames []frame
		var err error
		for {
			var typ byte
			var payload []byte
			typ, payload, err = fr.Next()
			if err != nil {
				break
			}
			if len(payload) > max {
				t.Fatalf("payload of %d bytes passed a cap of %d", len(payload), max)
			}
			frames = append(frames, frame{typ, append([]byte(nil), payload...)})
		}
		if err == io.EOF && fr.Buffered() != 0 {
			t.Fatalf("io.EOF with %d bytes still buffered", fr.Buffered())
		}

		// What was read re-encodes to frames that read back the same.
		var enc []byte
		for _, f := range frames {
			enc = p2p.AppendFrame(enc, f.typ, f.payload)
		}
		fr = p2p.NewFrameReader(bytes.NewReader(enc), max, 0)
		for i, want := range frames {
			typ, payload, err := fr.Next()
			if err != nil {
				t.Fatalf("re-read frame %d: %v", i, err)
			}
			if typ != want.typ || !bytes.Equal(payload, want.payload) {
				t.Fatalf("re-read frame %d differs", i)
			}
		}
		if _, _, err := fr.Next(); err != io.EOF {
			t.Fatalf("re-read end: got %v, want io.EOF", err)
		}
	})
}
