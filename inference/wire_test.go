package inference_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
)

func TestRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		req  inference.Request
	}{
		{"chat", inference.Request{ID: "req-1", Kind: inference.KindChat, Model: "sim-small",
			Body: []byte(`{"model":"sim-small","messages":[{"role":"user","content":"hi"}]}`)}},
		{"completion", inference.Request{ID: "r", Kind: inference.KindCompletion, Model: "m", Body: []byte(`{"prompt":"x"}`)}},
		{"no ID, no body", inference.Request{Kind: inference.KindChat, Model: "m"}},
		{"binary body", inference.Request{ID: "b", Kind: inference.KindChat, Model: "m", Body: []byte{0, 0xff, '\n', '"'}}},
		{"unicode and JSON-special model", inference.Request{ID: `"quoted" <id>`, Kind: inference.KindChat, Model: "modèle/7b:q4 <&>"}},
		{"large body", inference.Request{ID: "big", Kind: inference.KindChat, Model: "m", Body: bytes.Repeat([]byte("x"), inference.MaxBodyBytes)}},
		{"max price", inference.Request{ID: "p", Kind: inference.KindChat, Model: "m", MaxPrice: 1_500_000, Body: []byte(`{}`)}},
		{"max price of one", inference.Request{Kind: inference.KindCompletion, Model: "m", MaxPrice: 1}},
		{"largest max price", inference.Request{Kind: inference.KindChat, Model: "m", MaxPrice: math.MaxInt64, Body: []byte{0xff}}},
		{"min tier dev", inference.Request{ID: "t", Kind: inference.KindChat, Model: "m", MinTier: attest.TierDev, Body: []byte(`{}`)}},
		{"min tier tee-gpu", inference.Request{Kind: inference.KindCompletion, Model: "m", MinTier: attest.TierTEEGPU}},
		{"max price and min tier", inference.Request{ID: "b", Kind: inference.KindChat, Model: "m", MaxPrice: 42, MinTier: attest.TierTEE, Body: []byte{2, 0x20}}},
		{"max tokens", inference.Request{ID: "k", Kind: inference.KindChat, Model: "m", MaxTokens: 300, Body: []byte(`{}`)}},
		{"every optional field", inference.Request{ID: "a", Kind: inference.KindChat, Model: "m", MaxPrice: 7, MinTier: attest.TierTEE,
			MaxTokens: inference.MaxTokensCap, Sealed: true, Body: []byte{1}}},
		{"max price and large body", inference.Request{ID: strings.Repeat("i", 128), Kind: inference.KindChat, Model: strings.Repeat("m", 256),
			MaxPrice: math.MaxInt64, Body: bytes.Repeat([]byte("x"), inference.MaxBodyBytes)}},
		{"sealed", inference.Request{ID: "s", Kind: inference.KindChat, Model: "m", Sealed: true, Body: []byte{1, 1, 0}}},
		{"sealed with max price and min tier", inference.Request{ID: "s", Kind: inference.KindCompletion, Model: "m", MaxPrice: 9,
			MinTier: attest.TierTEEGPU, Sealed: true, Body: []byte{1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := inference.AppendRequest([]byte("prefix"), &tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(p, []byte("prefix")) {
				t.Fatal("AppendRequest dropped dst")
			}
			got, err := inference.DecodeRequest(p[len("prefix"):])
			if err != nil {
				t.Fatal(err)
			}
			assertRequest(t, got, &tt.req)
			if len(p)+16 > inference.MaxRequestFrame+len("prefix") && len(tt.req.Body) <= inference.MaxBodyBytes {
				t.Fatalf("a %d-byte body makes a %d-byte payload, over MaxRequestFrame", len(tt.req.Body), len(p))
			}
		})
	}
}

func assertRequest(t *testing.T, got, want *inference.Request) {
	t.Helper()
	if got.ID != want.ID || got.Kind != want.Kind || got.Model != want.Model || got.MaxPrice != want.MaxPrice ||
		got.MinTier != want.MinTier || got.MaxTokens != want.MaxTokens || got.Sealed != want.Sealed || !bytes.Equal(got.Body, want.Body) {
		t.Fatalf("got {%q %v %q max %d, min %v, %d bytes}, want {%q %v %q max %d, min %v, %d bytes}",
			got.ID, got.Kind, got.Model, got.MaxPrice, got.MinTier, len(got.Body),
			want.ID, want.Kind, want.Model, want.MaxPrice, want.MinTier, len(want.Body))
	}
}

func TestDecodeRequestCopiesBody(t *testing.T) {
	p, err := inference.AppendRequest(nil, &inference.Request{Kind: inference.KindChat, Model: "m", Body: []byte("body")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := inference.DecodeRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p {
		p[i] = 'X'
	}
	if string(got.Body) != "body" {
		t.Fatalf("body aliases the payload: %q", got.Body)
	}
}

// rawRequest builds a request payload field by field, as given.
func rawRequest(kind byte, id, model, body string) []byte {
	p := []byte{kind}
	p = binary.AppendUvarint(p, uint64(len(id)))
	p = append(p, id...)
	p = binary.AppendUvarint(p, uint64(len(model)))
	p = append(p, model...)
	return append(p, body...)
}

// pricedRequest is rawRequest with the max-price flag set and maxPrice,
// as given, between the model and the body.
func pricedRequest(kind byte, id, model string, maxPrice uint64, body string) []byte {
	p := rawRequest(kind|0x10, id, model, "")
	p = binary.AppendUvarint(p, maxPrice)
	return append(p, body...)
}

// tieredRequest is rawRequest with the min-tier flag set and tier, as
// given, between the model and the body; with maxPrice above 0 the
// max-price flag and field come first.
func tieredRequest(kind byte, id, model string, maxPrice uint64, tier byte, body string) []byte {
	if maxPrice > 0 {
		p := pricedRequest(kind, id, model, maxPrice, "")
		p[0] |= 0x20
		return append(append(p, tier), body...)
	}
	return append(append(rawRequest(kind|0x20, id, model, ""), tier), body...)
}

// TestRequestHeaderCompatible: a request without a max price or a minimum
// tier encodes
// exactly as it did before the header had flags, so nodes that predate the
// flags still read it, and their requests still decode.
func TestRequestHeaderCompatible(t *testing.T) {
	tests := []struct {
		name string
		req  inference.Request
		p    []byte // the encoding
	}{
		{"no max price", inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", Body: []byte("{}")},
			rawRequest(1, "r", "m", "{}")},
		{"completion without max price", inference.Request{Kind: inference.KindCompletion, Model: "sim-small"},
			rawRequest(2, "", "sim-small", "")},
		{"max price", inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", MaxPrice: 300, Body: []byte("{}")},
			pricedRequest(1, "r", "m", 300, "{}")},
		{"min tier", inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", MinTier: attest.TierTEE, Body: []byte("{}")},
			tieredRequest(1, "r", "m", 0, 2, "{}")},
		{"max price, then min tier", inference.Request{Kind: inference.KindCompletion, Model: "m", MaxPrice: 300, MinTier: attest.TierTEEGPU},
			tieredRequest(2, "", "m", 300, 3, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := inference.AppendRequest(nil, &tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, tt.p) {
				t.Fatalf("encoded % x, want % x", p, tt.p)
			}
			got, err := inference.DecodeRequest(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			assertRequest(t, got, &tt.req)
		})
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	tests := []struct {
		name    string
		p       []byte
		wantErr bool
	}{
		{"good", rawRequest(1, "x", "m", "body"), false},
		{"ID of 128 bytes", rawRequest(1, strings.Repeat("i", 128), "m", "body"), false},
		{"model of 256 bytes", rawRequest(2, "", strings.Repeat("m", 256), "body"), false},
		{"empty payload", nil, true},
		{"kind only", []byte{1}, true},
		{"ID length varint overflows", append([]byte{1}, bytes.Repeat([]byte{0xff}, 11)...), true},
		{"ID length cut short", []byte{1, 0x80}, true},
		{"ID over 128 bytes", rawRequest(1, strings.Repeat("i", 129), "m", ""), true},
		{"ID length past the end", append([]byte{1}, binary.AppendUvarint(nil, 100)...), true},
		{"model over 256 bytes", rawRequest(1, "x", strings.Repeat("m", 257), ""), true},
		{"model length past the end", append(rawRequest(1, "x", "", "")[:3], binary.AppendUvarint(nil, 50)...), true},
		{"huge model length", append(rawRequest(1, "x", "", "")[:3], binary.AppendUvarint(nil, 1<<62)...), true},
		{"kind zero", rawRequest(0, "x", "m", ""), true},
		{"kind unknown", rawRequest(4, "x", "m", ""), true},
		{"model empty", rawRequest(2, "x", "", ""), true},
		{"model not UTF-8", rawRequest(1, "x", "m\xff", ""), true},
		{"ID not UTF-8", rawRequest(1, "\xc3", "m", ""), true},
		{"max price", pricedRequest(1, "x", "m", 1000, "body"), false},
		{"max price at the int64 limit", pricedRequest(2, "x", "m", math.MaxInt64, "body"), false},
		{"max price over the int64 limit", pricedRequest(1, "x", "m", math.MaxInt64+1, "body"), true},
		{"max price of zero flagged", pricedRequest(1, "x", "m", 0, "body"), true},
		{"max price missing", pricedRequest(1, "x", "m", 1, "")[:len(rawRequest(1, "x", "m", ""))], true},
		{"max price varint cut short", append(rawRequest(1|0x10, "x", "m", ""), 0x80), true},
		{"max price varint overflows", append(rawRequest(1|0x10, "x", "m", ""), bytes.Repeat([]byte{0xff}, 11)...), true},
		{"min tier", tieredRequest(1, "x", "m", 0, 1, "body"), false},
		{"max price and min tier", tieredRequest(2, "x", "m", 7, 3, "body"), false},
		{"min tier of zero flagged", tieredRequest(1, "x", "m", 0, 0, "body"), true},
		{"min tier unknown", tieredRequest(1, "x", "m", 0, 4, "body"), true},
		{"min tier far out", tieredRequest(1, "x", "m", 5, 0xff, "body"), true},
		{"min tier missing", rawRequest(1|0x20, "x", "m", ""), true},
		{"sealed flag", rawRequest(1|0x40, "x", "m", "body"), false},
		{"max tokens", append(append(rawRequest(1|0x80, "x", "m", ""), 0x80, 0x01), "body"...), false},
		{"max tokens of zero flagged", append(rawRequest(1|0x80, "x", "m", ""), 0), true},
		{"max tokens over 2^40", binary.AppendUvarint(rawRequest(1|0x80, "x", "m", ""), inference.MaxTokensCap+1), true},
		{"max tokens missing", rawRequest(1|0x80, "x", "m", ""), true},
		{"flag without kind", pricedRequest(0, "x", "m", 5, "body"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := inference.DecodeRequest(tt.p)
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if req.Model == "" || string(req.Body) != "body" {
					t.Fatalf("decoded %+v", req)
				}
				return
			}
			if !errors.Is(err, inference.ErrMalformed) {
				t.Fatalf("got %+v, %v; want ErrMalformed", req, err)
			}
			if req != nil {
				t.Fatalf("a malformed request decoded to %+v", req)
			}
		})
	}
}

func TestChunkRoundTrip(t *testing.T) {
	tests := []inference.Chunk{
		{},
		{Text: "Hello"},
		{FinishReason: "stop"},
		{Text: " world", FinishReason: "length"},
		{Text: "\x00\xff binary", FinishReason: strings.Repeat("f", 64)},
		{Text: strings.Repeat("long ", 1000)},
	}
	for _, c := range tests {
		p := inference.AppendChunk(nil, c)
		text, finish, err := inference.DecodeChunk(p)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if string(text) != c.Text || string(finish) != c.FinishReason {
			t.Fatalf("got %q, %q; want %q, %q", text, finish, c.Text, c.FinishReason)
		}
	}
}

func TestDecodeChunkBounds(t *testing.T) {
	withFinish := func(n uint64, rest string) []byte { return append(binary.AppendUvarint(nil, n), rest...) }
	tests := []struct {
		name       string
		p          []byte
		wantText   string
		wantFinish string
		wantErr    bool
	}{
		{"finish of 64 bytes", withFinish(64, strings.Repeat("f", 64)+"text"), "text", strings.Repeat("f", 64), false},
		{"finish fills the payload", withFinish(4, "stop"), "", "stop", false},
		{"empty payload", nil, "", "", true},
		{"finish of 65 bytes", withFinish(65, strings.Repeat("f", 65)), "", "", true},
		{"finish past the end", withFinish(5, "stop"), "", "", true},
		{"length varint overflows", bytes.Repeat([]byte{0xff}, 11), "", "", true},
		{"length varint cut short", []byte{0x80}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, finish, err := inference.DecodeChunk(tt.p)
			if tt.wantErr {
				if !errors.Is(err, inference.ErrMalformed) {
					t.Fatalf("got %q, %q, %v; want ErrMalformed", text, finish, err)
				}
				return
			}
			if err != nil || string(text) != tt.wantText || string(finish) != tt.wantFinish {
				t.Fatalf("got %q, %q, %v", text, finish, err)
			}
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	tests := []struct {
		name    string
		typ     byte
		p       []byte
		want    inference.Event
		wantErr bool
	}{
		{"chunk", inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: "hi", FinishReason: "stop"}),
			inference.Event{Type: inference.FrameChunk, Text: []byte("hi"), Finish: []byte("stop")}, false},
		{"end", inference.FrameEnd,
			inference.AppendEnd(nil, &inference.End{
				Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: 3, Cached: 1, Completion: 5}, Counted: true},
				FinishReason: "length", Simulated: true, Worker: "12D3", Tier: "dev"}),
			inference.Event{Type: inference.FrameEnd, End: &inference.End{
				Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: 3, Cached: 1, Completion: 5}, Counted: true},
				FinishReason: "length", Simulated: true, Worker: "12D3", Tier: "dev"}}, false},
		{"end with nothing", inference.FrameEnd, inference.AppendEnd(nil, &inference.End{}), inference.Event{Type: inference.FrameEnd, End: &inference.End{}}, false},
		{"end with cost", inference.FrameEnd,
			inference.AppendEnd(nil, &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 3}}, Cost: &payments.Bill{Worker: 300, Fee: 6, Total: 306}}),
			inference.Event{Type: inference.FrameEnd, End: &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 3}}, Cost: &payments.Bill{Worker: 300, Fee: 6, Total: 306}}}, false},
		{"end with cost and receipt", inference.FrameEnd,
			inference.AppendEnd(nil, &inference.End{Cost: &payments.Bill{Worker: 3, Fee: 1, Total: 4}, Receipt: []byte("signed")}),
			inference.Event{Type: inference.FrameEnd, End: &inference.End{Cost: &payments.Bill{Worker: 3, Fee: 1, Total: 4}, Receipt: []byte("signed")}}, false},
		{"end with receipt flag but none", inference.FrameEnd, []byte{8, 0, 0, 0, 0, 0, 0, 0}, inference.Event{}, true},
		{"end with receipt longer than the frame", inference.FrameEnd, []byte{8, 0, 0, 0, 0, 0, 0, 5, 'a'}, inference.Event{}, true},
		{"end with cost flag but no cost", inference.FrameEnd, []byte{4, 0, 0, 0, 0, 0, 0}, inference.Event{}, true},
		{"end with absurd cost", inference.FrameEnd, binary.AppendUvarint([]byte{4, 0, 0, 0, 0, 0, 0}, 1<<63), inference.Event{}, true},
		{"end with unknown flags", inference.FrameEnd, []byte{16, 0, 0, 0, 0, 0, 0}, inference.Event{}, true},
		{"end with trailing bytes", inference.FrameEnd, append(inference.AppendEnd(nil, &inference.End{}), 0), inference.Event{}, true},
		{"end cut short", inference.FrameEnd, []byte{0, 3}, inference.Event{}, true},
		{"end worker too long", inference.FrameEnd, append([]byte{0, 0, 0, 0, 0}, 0xff, 0x01), inference.Event{}, true},
		{"error", inference.FrameError, []byte(`{"code":4,"message":"busy"}`),
			inference.Event{Type: inference.FrameError, Err: &inference.Error{Code: inference.CodeOverloaded, Message: "busy"}}, false},
		{"error with param", inference.FrameError, []byte(`{"code":1,"message":"bad","param":"model"}`),
			inference.Event{Type: inference.FrameError, Err: &inference.Error{Code: inference.CodeBadRequest, Message: "bad", Param: "model"}}, false},
		{"error without code is internal", inference.FrameError, []byte(`{"message":"?"}`),
			inference.Event{Type: inference.FrameError, Err: &inference.Error{Code: inference.CodeInternal, Message: "?"}}, false},
		{"error with an unknown code", inference.FrameError, []byte(`{"code":999}`),
			inference.Event{Type: inference.FrameError, Err: &inference.Error{Code: 999}}, false},
		{"malformed chunk", inference.FrameChunk, []byte{0x7f}, inference.Event{}, true},
		{"empty end", inference.FrameEnd, nil, inference.Event{}, true},
		{"malformed error", inference.FrameError, []byte(`{"code":-1}`), inference.Event{}, true},
		{"error not JSON", inference.FrameError, nil, inference.Event{}, true},
		{"request frame in a response", inference.FrameRequest, rawRequest(1, "", "m", ""), inference.Event{}, true},
		{"type zero", 0, nil, inference.Event{}, true},
		{"unknown type", 7, []byte(`{}`), inference.Event{}, true},
		{"event", inference.FrameEvent, []byte(`{"choices":[]}`), inference.Event{Type: inference.FrameEvent, Text: []byte(`{"choices":[]}`)}, false},
		{"empty event", inference.FrameEvent, nil, inference.Event{}, true},
		{"event over the cap", inference.FrameEvent, make([]byte, inference.MaxEventBytes+1), inference.Event{}, true},
		{"sealed record", inference.FrameRecord, []byte{1, 2}, inference.Event{Type: inference.FrameRecord, Text: []byte{1, 2}}, false},
		{"type 255", 255, nil, inference.Event{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := inference.DecodeEvent(tt.typ, tt.p)
			if tt.wantErr {
				if !errors.Is(err, inference.ErrMalformed) {
					t.Fatalf("got %+v, %v; want ErrMalformed", ev, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertEvent(t, ev, tt.want)
		})
	}
}

func assertEvent(t *testing.T, got, want inference.Event) {
	t.Helper()
	if got.Type != want.Type || !bytes.Equal(got.Text, want.Text) || !bytes.Equal(got.Finish, want.Finish) {
		t.Fatalf("got event %d %q %q, want %d %q %q", got.Type, got.Text, got.Finish, want.Type, want.Text, want.Finish)
	}
	if !reflect.DeepEqual(got.End, want.End) {
		t.Fatalf("got End %+v, want %+v", got.End, want.End)
	}
	if (got.Err == nil) != (want.Err == nil) || got.Err != nil && *got.Err != *want.Err {
		t.Fatalf("got Err %+v, want %+v", got.Err, want.Err)
	}
}

func TestResponseReader(t *testing.T) {
	chunks := frameOf(t, func(fw *p2p.FrameWriter) error {
		if err := fw.Write(inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: "Hello"})); err != nil {
			return err
		}
		return fw.Write(inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: " world", FinishReason: "stop"}))
	})
	endFrame := frameOf(t, func(fw *p2p.FrameWriter) error {
		return inference.WriteEnd(fw, &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 2, Completion: 2}}, FinishReason: "stop"})
	})
	full := append(append([]byte(nil), chunks...), endFrame...)
	errFrame := frameOf(t, func(fw *p2p.FrameWriter) error {
		return inference.WriteError(fw, &inference.Error{Code: inference.CodeEngine, Message: "engine died"})
	})

	hello := inference.Event{Type: inference.FrameChunk, Text: []byte("Hello"), Finish: []byte{}}
	world := inference.Event{Type: inference.FrameChunk, Text: []byte(" world"), Finish: []byte("stop")}
	end := inference.Event{Type: inference.FrameEnd, End: &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 2, Completion: 2}}, FinishReason: "stop"}}
	tests := []struct {
		name    string
		stream  []byte
		want    []inference.Event
		wantErr error // after the events
	}{
		{"chunks then End", full, []inference.Event{hello, world, end}, io.ErrUnexpectedEOF},
		{"chunks then Error", append(append([]byte(nil), chunks...), errFrame...), []inference.Event{hello, world,
			{Type: inference.FrameError, Err: &inference.Error{Code: inference.CodeEngine, Message: "engine died"}}}, io.ErrUnexpectedEOF},
		{"ends without End", chunks, []inference.Event{hello, world}, io.ErrUnexpectedEOF},
		{"empty stream", nil, nil, io.ErrUnexpectedEOF},
		{"cut inside a frame", full[:len(full)-3], []inference.Event{hello, world}, io.ErrUnexpectedEOF},
		{"frame over the chunk cap", p2p.AppendFrame(nil, inference.FrameChunk, make([]byte, inference.MaxChunkFrame+1)), nil, p2p.ErrFrameTooLarge},
		{"wrong frame version", []byte{2, 9, inference.FrameChunk}, nil, p2p.ErrFrameVersion},
		{"malformed event", p2p.AppendFrame(nil, 42, nil), nil, inference.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := inference.NewResponseReader(bytes.NewReader(tt.stream))
			for i, want := range tt.want {
				ev, err := rr.Next()
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				assertEvent(t, ev, want)
			}
			if _, err := rr.Next(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("after the events: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestResponseReaderBuffered(t *testing.T) {
	a := p2p.AppendFrame(nil, inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: "a"}))
	rr := inference.NewResponseReader(bytes.NewReader(append(append([]byte(nil), a...), a...)))
	for i, want := range []bool{true, false} {
		if _, err := rr.Next(); err != nil {
			t.Fatal(err)
		}
		if got := rr.Buffered(); got != want {
			t.Fatalf("Buffered after chunk %d = %v, want %v", i, got, want)
		}
	}
}

// frameOf returns the bytes write puts through a FrameWriter.
func frameOf(t *testing.T, write func(*p2p.FrameWriter) error) []byte {
	t.Helper()
	var b bytes.Buffer
	fw := p2p.NewFrameWriter(&b, 0)
	if err := write(fw); err != nil {
		t.Fatal(err)
	}
	if err := fw.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestKind(t *testing.T) {
	tests := []struct {
		k     inference.Kind
		s     string
		valid bool
	}{
		{inference.KindChat, "chat", true},
		{inference.KindCompletion, "completion", true},
		{inference.KindEmbedding, "embedding", true},
		{0, "kind(0)", false},
		{4, "kind(4)", false},
	}
	for _, tt := range tests {
		if tt.k.String() != tt.s || tt.k.Valid() != tt.valid {
			t.Errorf("Kind %d: %q %v, want %q %v", uint8(tt.k), tt.k.String(), tt.k.Valid(), tt.s, tt.valid)
		}
		if k, err := inference.ParseKind(tt.s); tt.valid && (err != nil || k != tt.k) || !tt.valid && err == nil {
			t.Errorf("ParseKind(%q) = %v, %v", tt.s, k, err)
		}
	}
	// A model without endpoints serves chat and completion, as every
	// generative engine does; one with endpoints serves those only.
	for _, tt := range []struct {
		endpoints []string
		want      [3]bool
	}{
		{nil, [3]bool{true, true, false}},
		{[]string{"embedding"}, [3]bool{false, false, true}},
		{[]string{"chat", "embedding"}, [3]bool{true, false, true}},
	} {
		m := inference.Model{ID: "m", Endpoints: tt.endpoints}
		for i, k := range inference.Kinds {
			if m.Serves(k) != tt.want[i] {
				t.Errorf("a model with endpoints %q serves %s: %v, want %v", tt.endpoints, k, m.Serves(k), tt.want[i])
			}
		}
	}
	if got := (inference.Usage{Tokens: payments.Tokens{Prompt: 3, Cached: 2, Completion: 4}}).Total(); got != 7 {
		t.Errorf("Usage.Total = %d, want 7", got)
	}
}

// TestAppendRequestAgreesWithDecode: whatever AppendRequest encodes,
// DecodeRequest decodes to the same request. A router decodes and
// re-encodes every request, so an encoder that writes what the decoder
// refuses turns a bad request into a failure at the next hop.
func TestAppendRequestAgreesWithDecode(t *testing.T) {
	tests := []struct {
		name string
		req  inference.Request
	}{
		{"model of 5000 bytes", inference.Request{Kind: inference.KindChat, Model: strings.Repeat("m", 5000)}},
		{"ID of 1000 bytes", inference.Request{ID: strings.Repeat("<", 1000), Kind: inference.KindChat, Model: "m"}},
		{"model not UTF-8", inference.Request{Kind: inference.KindChat, Model: "\xff"}},
		{"kind zero", inference.Request{Model: "m"}},
		{"unknown kind", inference.Request{Kind: 7, Model: "m"}},
		{"no model", inference.Request{Kind: inference.KindChat}},
		{"model at the cap", inference.Request{Kind: inference.KindChat, Model: strings.Repeat("m", 256)}},
		{"negative max price", inference.Request{Kind: inference.KindChat, Model: "m", MaxPrice: -1}},
		{"max price at the limit", inference.Request{Kind: inference.KindChat, Model: "m", MaxPrice: math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := inference.AppendRequest(nil, &tt.req)
			if err != nil {
				if !errors.Is(err, inference.ErrMalformed) {
					t.Fatalf("AppendRequest refused with %v, want ErrMalformed", err)
				}
				return
			}
			got, err := inference.DecodeRequest(p)
			if err != nil {
				t.Fatalf("AppendRequest encoded a request DecodeRequest refuses: %v", err)
			}
			assertRequest(t, got, &tt.req)
		})
	}
}

// TestEndBytes pins the End frame's encoding: flags, uvarint prompt,
// completion and cached tokens, reasoning tokens, the finish reason, worker
// and tier, the cost's worker amount and proxy fee, then the receipt.
func TestEndBytes(t *testing.T) {
	end := &inference.End{
		Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: 300, Cached: 2, Completion: 5}, Reasoning: 3, Counted: true},
		FinishReason: "stop", Simulated: true, Worker: "w", Tier: "dev",
		Cost:    &payments.Bill{Worker: 128, Fee: 6, Total: 134},
		Receipt: []byte("rc"),
	}
	want := []byte{
		1 | 2 | 4 | 8 | 16, // counted, simulated, cost, receipt, reasoning
		0xac, 0x02, 5, 2,   // 300, 5, 2
		3, // reasoning
		4, 's', 't', 'o', 'p', 1, 'w', 3, 'd', 'e', 'v',
		0x80, 0x01, 6, // 128, 6
		2, 'r', 'c',
	}
	if got := inference.AppendEnd(nil, end); !bytes.Equal(got, want) {
		t.Fatalf("AppendEnd = %v, want %v", got, want)
	}
	got, err := inference.DecodeEnd(want)
	if err != nil || !reflect.DeepEqual(got, end) {
		t.Fatalf("DecodeEnd = %+v, %v; want %+v", got, err, end)
	}
}

// TestEndJSON pins End's JSON: OpenAI's names for the token counts, and the
// cost's worker, proxy_fee and total.
func TestEndJSON(t *testing.T) {
	tests := []struct {
		name string
		end  inference.End
		want string
	}{
		{"empty", inference.End{}, `{"usage":{"prompt_tokens":0,"completion_tokens":0}}`},
		{"full", inference.End{
			Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: 3, Cached: 1, Completion: 5}, Counted: true},
			FinishReason: "stop", Simulated: true, Worker: "w", Tier: "dev",
			Cost: &payments.Bill{Worker: 300, Fee: 6, Total: 306}, Receipt: []byte("r")},
			`{"usage":{"prompt_tokens":3,"completion_tokens":5,"cached_tokens":1,"counted":true},"finish_reason":"stop",` +
				`"simulated":true,"worker":"w","tier":"dev","cost":{"worker":300,"proxy_fee":6,"total":306},"receipt":"cg=="}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(&tt.end)
		if err != nil || string(b) != tt.want {
			t.Errorf("%s: %s, %v; want %s", tt.name, b, err, tt.want)
			continue
		}
		var back inference.End
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, tt.end) {
			t.Errorf("%s: decodes to %+v, %v; want %+v", tt.name, back, err, tt.end)
		}
	}
}

// TestUsageBilled: an answer is billed for its counts, with no more cached
// tokens than prompt tokens.
func TestUsageBilled(t *testing.T) {
	tests := []struct {
		u    inference.Usage
		want payments.Tokens
	}{
		{inference.Usage{Tokens: payments.Tokens{Prompt: 5, Cached: 2, Completion: 3}, Counted: true}, payments.Tokens{Prompt: 5, Cached: 2, Completion: 3}},
		{inference.Usage{Tokens: payments.Tokens{Prompt: 5, Cached: 9, Completion: 3}}, payments.Tokens{Prompt: 5, Cached: 5, Completion: 3}},
	}
	for _, tt := range tests {
		if got := tt.u.Billed(); got != tt.want {
			t.Errorf("%+v.Billed() = %+v, want %+v", tt.u, got, tt.want)
		}
	}
}
