package collateral

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/google/go-tdx-guest/pcs"
	tdxtesting "github.com/google/go-tdx-guest/testing"

	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// sampleAnswer is Intel's QE identity answer from go-tdx-guest's samples.
func sampleAnswer(f *testing.F) []byte {
	r := tdxtesting.TestGetter.Responses[pcs.QeIdentityURL()]
	b, err := encodeAnswer(r.Header, r.Body)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzDecodeRequest: a request decodes only to a collateral URL, and only
// within MaxURL.
func FuzzDecodeRequest(f *testing.F) {
	for u := range tdxtesting.TestGetter.Responses {
		f.Add([]byte(u))
	}
	f.Add([]byte("https://example.com/"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := decodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrNotCollateralURL) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if !tdx.IsCollateralURL(u) || len(b) > MaxURL || u != string(b) {
			t.Fatalf("accepted %q", b)
		}
	})
}

// FuzzDecodeAnswer: an answer decodes only within the limits, and what
// decodes encodes to an answer that decodes the same.
func FuzzDecodeAnswer(f *testing.F) {
	f.Add(sampleAnswer(f))
	f.Add([]byte{2, '{', '}', 'x'})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add([]byte{4, 'n', 'u', 'l', 'l', 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := decodeAnswer(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if len(body) == 0 || len(body) > tdx.MaxCollateral || len(h) > MaxHeaderFields || h == nil {
			t.Fatalf("accepted %d header names, %d bytes of body", len(h), len(body))
		}
		again, err := encodeAnswer(h, body)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		h2, body2, err := decodeAnswer(again)
		if err != nil || !reflect.DeepEqual(h, h2) || !bytes.Equal(body, body2) {
			t.Fatalf("re-decoding: %v", err)
		}
	})
}

// fakeCache answers the sample QE identity and records what it is asked.
type fakeCache struct{ asked []string }

func (c *fakeCache) Cached(url string) (map[string][]string, []byte, bool) {
	c.asked = append(c.asked, url)
	r, ok := tdxtesting.TestGetter.Responses[url]
	if !ok || url != pcs.QeIdentityURL() {
		return nil, nil, false
	}
	return r.Header, r.Body, true
}

// conn is one side of a stream: in is what the peer sent, out what this
// side writes.
type conn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *conn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *conn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *conn) CloseWrite() error           { return nil }

// FuzzServe drives the server's handler with arbitrary input: it never
// panics, consults its cache only for collateral URLs, and writes exactly
// one frame, a refusal or the cached answer to the URL asked for.
func FuzzServe(f *testing.F) {
	for u := range tdxtesting.TestGetter.Responses {
		f.Add(p2p.AppendFrame(nil, frameRequest, []byte(u)))
	}
	f.Add(p2p.AppendFrame(nil, frameRequest, []byte("https://example.com/")))
	f.Add(p2p.AppendFrame(nil, frameAnswer, []byte(pcs.QeIdentityURL())))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1})
	f.Add([]byte{})
	s := NewServer("local", nil, slog.New(slog.DiscardHandler))
	f.Fuzz(func(t *testing.T, in []byte) {
		cache := &fakeCache{}
		s.cache = cache
		c := &conn{in: bytes.NewReader(in)}
		err := s.answer(c)
		for _, u := range cache.asked {
			if !tdx.IsCollateralURL(u) {
				t.Fatalf("looked up %q", u)
			}
		}
		if err != nil {
			if c.out.Len() != 0 {
				t.Fatalf("failed (%v) after writing %d bytes", err, c.out.Len())
			}
			return
		}
		fr := p2p.NewFrameReader(&c.out, maxAnswer, 0)
		typ, payload, err := fr.Next()
		if err != nil {
			t.Fatalf("wrote no frame: %v", err)
		}
		switch typ {
		case frameRefused:
			if code := string(payload); code != codeNotCached && code != codeBadRequest {
				t.Fatalf("refused with %q", code)
			}
		case frameAnswer:
			if len(cache.asked) != 1 || cache.asked[0] != pcs.QeIdentityURL() {
				t.Fatalf("answered after looking up %q", cache.asked)
			}
			if _, body, err := decodeAnswer(payload); err != nil || !bytes.Equal(body, tdxtesting.TestGetter.Responses[pcs.QeIdentityURL()].Body) {
				t.Fatalf("answer does not decode to the cached one: %v", err)
			}
		default:
			t.Fatalf("frame type %d", typ)
		}
		if _, _, err := fr.Next(); err != io.EOF {
			t.Fatalf("more than one frame: %v", err)
		}
	})
}

// FuzzExchange feeds the requester arbitrary answers: it never panics,
// and returns an answer only when one frame of the answer type decodes.
func FuzzExchange(f *testing.F) {
	f.Add(p2p.AppendFrame(nil, frameAnswer, sampleAnswer(f)))
	f.Add(p2p.AppendFrame(nil, frameRefused, []byte(codeNotCached)))
	f.Add(p2p.AppendFrame(nil, frameRefused, []byte(codeBadRequest)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &conn{in: bytes.NewReader(in)}
		h, body, err := exchange(c, pcs.QeIdentityURL())
		if err != nil {
			return
		}
		fr := p2p.NewFrameReader(bytes.NewReader(in), maxAnswer, 0)
		typ, payload, ferr := fr.Next()
		if ferr != nil || typ != frameAnswer {
			t.Fatalf("answered from type %d (%v)", typ, ferr)
		}
		h2, body2, derr := decodeAnswer(payload)
		if derr != nil || !reflect.DeepEqual(h, h2) || !bytes.Equal(body, body2) {
			t.Fatalf("answer differs from the frame's (%v)", derr)
		}
		if !bytes.Equal(c.out.Bytes(), p2p.AppendFrame(nil, frameRequest, []byte(pcs.QeIdentityURL()))) {
			t.Fatalf("sent %q", c.out.Bytes())
		}
	})
}
