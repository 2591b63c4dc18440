package seal_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
)

// FuzzDecodeSealedRequest: the decoder never panics, what it accepts
// re-encodes to the same bytes, and opening it never panics.
func FuzzDecodeSealedRequest(f *testing.F) {
	clock := clocktest.New(t0)
	var ws []*worker
	for _, kem := range kemCases {
		w := newWorker(f, clock, "a", seal.WithKEM(kem))
		ws = append(ws, w)
		c, s := seal.NewClient(nil, clock.Now), w.session(f)
		sr, o := mustSeal(f, c, "rid", []byte("body"), s)
		b, err := seal.AppendSealedRequest(nil, sr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
		// Answered through, the session is named by reference next.
		_, rs, err := w.open(f, sr)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := readAll(o, answer(f, rs, "ok")); err != nil {
			f.Fatal(err)
		}
		byRef, _ := mustSeal(f, c, "rid-2", []byte("body"), s)
		if b, err = seal.AppendSealedRequest(nil, byRef); err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{seal.Version, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		sr, err := seal.DecodeSealedRequest(data)
		parsed, perr := seal.ParseSealedRequest(data)
		if (err == nil) != (perr == nil) || (err == nil && !reflect.DeepEqual(sr, parsed)) {
			t.Fatalf("Parse %+v, %v; Decode %+v, %v", parsed, perr, sr, err)
		}
		if err != nil {
			if !isAny(err, seal.ErrMalformed, seal.ErrUnsupportedKEM) {
				t.Fatalf("decoder error without a sentinel: %v", err)
			}
			return
		}
		again, err := seal.AppendSealedRequest(nil, sr)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("re-encoding: %v, equal %v", err, bytes.Equal(again, data))
		}
		for _, w := range ws {
			w.ring.OpenRequest(sr, w.self, routing)
		}
	})
}

// FuzzParsePublicKey: the parser never panics, and what it accepts is
// the input.
func FuzzParsePublicKey(f *testing.F) {
	clock := clocktest.New(t0)
	for _, kem := range kemCases {
		f.Add(newWorker(f, clock, "a", seal.WithKEM(kem)).pub)
	}
	f.Add([]byte{0x64, 0x7a, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := seal.ParsePublicKey(data)
		if err != nil {
			if !isAny(err, seal.ErrMalformed, seal.ErrUnsupportedKEM) {
				t.Fatalf("parser error without a sentinel: %v", err)
			}
			return
		}
		if !bytes.Equal(p.Bytes(), data) {
			t.Fatal("parsed key differs from its input")
		}
	})
}

// FuzzOpenRecord: an opener fed any record after a genuine first one
// never panics, and accepts nothing but the genuine records.
func FuzzOpenRecord(f *testing.F) {
	clock := clocktest.New(t0)
	w := newWorker(f, clock, "a", seal.WithKEM(seal.X25519))
	s := w.session(f)
	c := seal.NewClient(nil, clock.Now)
	seed := func(t testing.TB) (*seal.ResponseOpener, [][]byte) {
		sr, o := mustSeal(t, c, "r", nil, s)
		_, rs, err := w.ring.OpenRequest(sr, w.self, routing)
		if err != nil {
			t.Fatal(err)
		}
		return o, answer(t, rs, "first", "second")
	}
	_, recs := seed(f)
	for _, r := range recs {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, recs := seed(t)
		if _, err := o.Open(recs[0]); err != nil {
			t.Fatal(err)
		}
		chunk, err := o.Open(data)
		switch {
		case err == nil && (!bytes.Equal(data, recs[1]) || string(chunk) != "second"):
			t.Fatalf("opened a record that was not sealed: %q", chunk)
		case err == io.EOF:
			t.Fatal("opened an end record that was not sealed")
		case err != nil && !isAny(err, seal.ErrMalformed, seal.ErrAuth, seal.ErrOrder):
			t.Fatalf("open error without a sentinel: %v", err)
		case err != nil && !errors.Is(o.Done(), err):
			t.Fatalf("Done() = %v after %v", o.Done(), err)
		}
	})
}
