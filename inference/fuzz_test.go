package inference_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range []inference.Request{
		{ID: "req-1", Kind: inference.KindChat, Model: "sim-small", Body: []byte(`{"model":"sim-small","messages":[{"role":"user","content":"hi"}],"stream":true}`)},
		{Kind: inference.KindCompletion, Model: "m", Body: []byte(`{"prompt":"x","max_tokens":4}`)},
		{Kind: inference.KindChat, Model: "m"},
		{ID: "p", Kind: inference.KindChat, Model: "m", MaxPrice: 250_000, Body: []byte(`{"messages":[]}`)},
		{Kind: inference.KindCompletion, Model: "m", MaxPrice: math.MaxInt64},
		{ID: "t", Kind: inference.KindChat, Model: "m", MinTier: attest.TierTEE, Body: []byte(`{"messages":[]}`)},
		{Kind: inference.KindCompletion, Model: "m", MaxPrice: 9, MinTier: attest.TierTEEGPU, Body: []byte(`{}`)},
	} {
		p, err := inference.AppendRequest(nil, &r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Add(rawRequest(1, "id", "m", "b"))
	f.Add(rawRequest(3, "", "m", ""))
	f.Add(rawRequest(2, "\xed\xa0\x80", "\u00e9", ""))
	f.Add(append(rawRequest(0x11, "id", "m", ""), 0x00, '{'))
	f.Add(append(rawRequest(0x12, "", "m", ""), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f))
	f.Add(append(rawRequest(0x11, "", "m", ""), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01))
	f.Add(rawRequest(0x21, "id", "m", "b"))
	f.Add(append(rawRequest(0x21, "id", "m", ""), 0x00, '{'))
	f.Add(append(rawRequest(0x22, "", "m", ""), 0x04))
	f.Add(append(rawRequest(0x31, "", "m", ""), 0x01, 0x03, '{'))
	f.Add(rawRequest(0x41, "id", "m", "b"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		req, err := inference.DecodeRequest(p)
		if err != nil {
			if !errors.Is(err, inference.ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			if req != nil {
				t.Fatal("request returned with an error")
			}
			return
		}
		if !req.Kind.Valid() || req.Model == "" || req.MaxPrice < 0 || req.MinTier > attest.TierTEEGPU {
			t.Fatalf("decoded an invalid request %+v", req)
		}
		if len(req.Body) > len(p) {
			t.Fatal("body longer than the payload")
		}
		// decode(encode(x)) == x for every x that decodes.
		enc, err := inference.AppendRequest(nil, req)
		if err != nil {
			if !errors.Is(err, inference.ErrMalformed) {
				t.Fatalf("AppendRequest: %v", err)
			}
			return
		}
		again, err := inference.DecodeRequest(enc)
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		assertRequest(t, again, req)
	})
}

// FuzzRequestRoundTrip checks decode(encode(x)) == x from the encoding
// side, for requests the gateway can produce: valid UTF-8 strings (they
// come from JSON), a valid kind, a model of at most 256 bytes, an ID of at
// most 128, any max price that is not negative, any known minimum tier
// or none.
func FuzzRequestRoundTrip(f *testing.F) {
	f.Add("req-1", uint8(1), "sim-small", int64(0), uint8(0), []byte(`{"messages":[]}`))
	f.Add("", uint8(2), "m", int64(1), uint8(1), []byte{})
	f.Add("\u2028<>&\"\\", uint8(1), "a/b:c", int64(math.MaxInt64), uint8(3), []byte{0, 1, 2})
	f.Add("p", uint8(1), "m", int64(-5), uint8(2), []byte(`{}`))
	f.Add("t", uint8(1), "m", int64(5), uint8(4), []byte(`{}`))
	f.Fuzz(func(t *testing.T, id string, kind uint8, model string, maxPrice int64, minTier uint8, body []byte) {
		req := &inference.Request{ID: id, Kind: inference.Kind(kind), Model: model, MaxPrice: maxPrice,
			MinTier: attest.Tier(minTier), Body: body}
		if !req.Kind.Valid() || model == "" || len(model) > 256 || len(id) > 128 ||
			!utf8.ValidString(id) || !utf8.ValidString(model) {
			return
		}
		if maxPrice < 0 || req.MinTier > attest.TierTEEGPU {
			if _, err := inference.AppendRequest(nil, req); !errors.Is(err, inference.ErrMalformed) {
				t.Fatalf("max price %d, min tier %d: %v, want ErrMalformed", maxPrice, minTier, err)
			}
			return
		}
		p, err := inference.AppendRequest(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := inference.DecodeRequest(p)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		assertRequest(t, got, req)
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: "Hello", FinishReason: "stop"}))
	f.Add(inference.FrameChunk, []byte{})
	f.Add(inference.FrameEnd, inference.AppendEnd(nil, &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 3, Completion: 5}}, FinishReason: "length", Simulated: true, Worker: "w", Tier: "dev"}))
	f.Add(inference.FrameEnd, []byte{0})
	f.Add(inference.FrameEnd, inference.AppendEnd(nil, &inference.End{Cost: &payments.Bill{Worker: 1000, Fee: 20, Total: 1020}, Receipt: []byte("r")}))
	f.Add(inference.FrameError, []byte(`{"code":4,"message":"busy","param":"x"}`))
	f.Add(inference.FrameError, []byte(`{"code":70000}`))
	f.Add(byte(0), []byte{})
	f.Add(byte(9), []byte(`{}`))
	f.Add(inference.FrameRecord, []byte{1, 2, 0})
	f.Add(inference.FrameEvent, []byte(`{"choices":[{"index":1,"delta":{"content":"x"}}]}`))
	f.Fuzz(func(t *testing.T, typ byte, p []byte) {
		ev, err := inference.DecodeEvent(typ, p)
		if err != nil {
			if !errors.Is(err, inference.ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		if ev.Type != typ {
			t.Fatalf("event type %d from frame type %d", ev.Type, typ)
		}
		switch typ {
		case inference.FrameChunk:
			if len(ev.Finish) > 64 {
				t.Fatalf("finish reason of %d bytes", len(ev.Finish))
			}
			enc := inference.AppendChunk(nil, inference.Chunk{Text: string(ev.Text), FinishReason: string(ev.Finish)})
			text, finish, err := inference.DecodeChunk(enc)
			if err != nil || !bytes.Equal(text, ev.Text) || !bytes.Equal(finish, ev.Finish) {
				t.Fatalf("chunk round trip: %q %q %v, want %q %q", text, finish, err, ev.Text, ev.Finish)
			}
		case inference.FrameEnd:
			again, err := inference.DecodeEvent(typ, inference.AppendEnd(nil, ev.End))
			if err != nil || !reflect.DeepEqual(again.End, ev.End) {
				t.Fatalf("End round trip: %+v, %v; want %+v", again.End, err, ev.End)
			}
		case inference.FrameError:
			if ev.Err == nil || ev.Err.Code == 0 {
				t.Fatalf("error event %+v", ev.Err)
			}
			b, err := json.Marshal(ev.Err)
			if err != nil {
				t.Fatal(err)
			}
			again, err := inference.DecodeEvent(typ, b)
			if err != nil || !reflect.DeepEqual(again.Err, ev.Err) {
				t.Fatalf("Error round trip: %+v, %v; want %+v", again.Err, err, ev.Err)
			}
		case inference.FrameRecord:
			// Opaque to every hop: only the client opens it.
			if !bytes.Equal(ev.Text, p) {
				t.Fatalf("record %x decoded as %x", p, ev.Text)
			}
		case inference.FrameEvent:
			// The engine's event as it was, within its cap: the client
			// node checks its JSON.
			if !bytes.Equal(ev.Text, p) || len(p) == 0 || len(p) > inference.MaxEventBytes {
				t.Fatalf("event of %d bytes decoded as %d", len(p), len(ev.Text))
			}
		default:
			t.Fatalf("frame type %d decoded", typ)
		}
	})
}

func FuzzDecodeCatalog(f *testing.F) {
	f.Add([]byte(`{"models":[{"id":"sim-small","simulated":true}],"max_concurrent":64,"active":3}`))
	f.Add([]byte(`{"models":[{"id":"a","workers":2},{"id":"b"}]}`))
	f.Add([]byte(`{"models":[]}`))
	f.Add([]byte(`{"models":[{"id":""}]}`))
	f.Add([]byte(`{"active":-1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := inference.DecodeCatalog(b)
		if err != nil {
			if !errors.Is(err, inference.ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		if len(c.Models) > 1024 || c.MaxConcurrent < 0 || c.Active < 0 {
			t.Fatalf("accepted %+v", c)
		}
		for _, m := range c.Models {
			if m.ID == "" || len(m.ID) > 256 {
				t.Fatalf("accepted model ID %q", m.ID)
			}
		}
		enc, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := inference.DecodeCatalog(enc)
		if err != nil {
			t.Fatalf("re-encoded catalog does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip: %+v, want %+v", again, c)
		}
	})
}

// FuzzSealedChunks: a sealed record's plaintext either splits into chunks
// that together use it all and re-encode to the same chunks, or is
// refused as malformed; nothing panics or reads past it.
func FuzzSealedChunks(f *testing.F) {
	var p []byte
	for _, c := range []inference.Chunk{{Text: "Hello"}, {Event: []byte(`{"choices":[]}`)}, {Text: ", world", FinishReason: "stop"}, {}} {
		p = inference.AppendSealedChunk(p, c)
	}
	f.Add(p)
	f.Add([]byte{0})
	f.Add([]byte{10, 0, 'a'})
	f.Add([]byte{3, '{'})
	split := func(t *testing.T, p []byte) ([]inference.Chunk, error) {
		var out []inference.Chunk
		for len(p) > 0 {
			ev, rest, err := inference.NextSealedChunk(p)
			if err != nil {
				return nil, err
			}
			if len(rest) >= len(p) {
				t.Fatal("a chunk consumed nothing")
			}
			if ev.Type == inference.FrameEvent {
				out = append(out, inference.Chunk{Event: slices.Clone(ev.Text)})
			} else {
				out = append(out, inference.Chunk{Text: string(ev.Text), FinishReason: string(ev.Finish)})
			}
			p = rest
		}
		return out, nil
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		chunks, err := split(t, p)
		if err != nil {
			if !errors.Is(err, inference.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		var again []byte
		for _, c := range chunks {
			again = inference.AppendSealedChunk(again, c)
		}
		back, err := split(t, again)
		if err != nil || !reflect.DeepEqual(back, chunks) {
			t.Fatalf("%+v re-encoded as %x, which splits into %+v (%v)", chunks, again, back, err)
		}
	})
}
