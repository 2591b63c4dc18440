package directory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/discovery/directory"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

// sample is a directory of n workers with dev evidence and sealing keys.
func sample(t testing.TB, n int) *directory.Directory {
	t.Helper()
	d := &directory.Directory{Network: net}
	for i := range n {
		k, id := p2ptest.NewKey(t)
		ev, err := dev.Issuer{}.Issue(context.Background(), k.GetPublic(), t0.Add(time.Hour), fmt.Appendf(nil, "key %d", i))
		if err != nil {
			t.Fatal(err)
		}
		d.Workers = append(d.Workers, directory.Entry{Peer: id, Evidence: ev, Tier: attest.TierDev,
			Models: []directory.Model{{ID: "m", Price: &payments.Price{Prompt: 1, Completion: 2}}, {ID: "n"}}})
	}
	return d
}

func encode(t testing.TB, d *directory.Directory) []byte {
	t.Helper()
	b, skipped, err := directory.Encode(d)
	if err != nil || skipped != 0 {
		t.Fatalf("Encode: %d skipped, %v", skipped, err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	d := sample(t, 3)
	b := encode(t, d)
	got, err := directory.Decode(b, net)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encode(t, got), b) {
		t.Fatalf("re-encoding differs:\n%s\n%s", encode(t, got), b)
	}
	if len(got.Workers) != 3 || got.Workers[1].Peer != d.Workers[1].Peer || !bytes.Equal(got.Workers[1].Evidence.SealKey, []byte("key 1")) {
		t.Fatalf("decoded %+v", got.Workers)
	}
}

// TestEncodeLimits: a server leaves out what clients would refuse, rather
// than serving a directory nobody can read.
func TestEncodeLimits(t *testing.T) {
	d := sample(t, 2)
	one := d.Workers[0]
	for range directory.MaxWorkers {
		d.Workers = append(d.Workers, one) // duplicates are fine for counting
	}
	b, skipped, err := directory.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	if skipped != 2 {
		t.Fatalf("skipped %d entries, want 2 beyond MaxWorkers", skipped)
	}
	var w struct{ Workers []json.RawMessage }
	if err := json.Unmarshal(b, &w); err != nil || len(w.Workers) != directory.MaxWorkers {
		t.Fatalf("%d entries encoded, %v", len(w.Workers), err)
	}

	bad := sample(t, 1)
	bad.Workers[0].Models = nil
	if _, skipped, _ := directory.Encode(bad); skipped != 1 {
		t.Fatal("an entry with no models was encoded")
	}

	big := sample(t, 1)
	big.Workers[0].Evidence.GPU = make([]byte, 150<<10) // about 200 KiB as base64
	for range 60 {
		big.Workers = append(big.Workers, big.Workers[0])
	}
	b, skipped, err = directory.Encode(big)
	if err != nil || len(b) > directory.MaxSize || skipped == 0 {
		t.Fatalf("Encode of 61 big entries: %d bytes, %d skipped, %v", len(b), skipped, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := encode(t, sample(t, 2))
	var base map[string]any
	if err := json.Unmarshal(valid, &base); err != nil {
		t.Fatal(err)
	}
	// edit returns valid with one change made to its JSON.
	edit := func(f func(d map[string]any, w0 map[string]any)) []byte {
		var d map[string]any
		if err := json.Unmarshal(valid, &d); err != nil {
			t.Fatal(err)
		}
		f(d, d["workers"].([]any)[0].(map[string]any))
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	models := func(n int) []any {
		var ms []any
		for i := range n {
			ms = append(ms, map[string]any{"id": fmt.Sprint("m", i)})
		}
		return ms
	}
	_, other := p2ptest.NewKey(t)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not JSON", []byte("directory")},
		{"over MaxSize", append(append([]byte(nil), valid...), bytes.Repeat([]byte(" "), directory.MaxSize)...)},
		{"version 0", edit(func(d, _ map[string]any) { delete(d, "version") })},
		{"version 2", edit(func(d, _ map[string]any) { d["version"] = 2 })},
		{"another network", edit(func(d, _ map[string]any) { d["network"] = "testnet" })},
		{"too many workers", []byte(`{"version":1,"network":"local","workers":[` + strings.Repeat(`{},`, directory.MaxWorkers) + `{}]}`)},
		{"worker listed twice", edit(func(d, w0 map[string]any) { d["workers"] = append(d["workers"].([]any), w0) })},
		{"bad peer ID", edit(func(_, w0 map[string]any) { w0["peer"] = "not a peer" })},
		{"no peer ID", edit(func(_, w0 map[string]any) { delete(w0, "peer") })},
		{"evidence not an object", edit(func(_, w0 map[string]any) { w0["evidence"] = "x" })},
		{"no evidence", edit(func(_, w0 map[string]any) { delete(w0, "evidence") })},
		{"sealing key over MaxSealKey", edit(func(_, w0 map[string]any) {
			w0["evidence"].(map[string]any)["seal_key"] = make([]byte, attest.MaxSealKey+1)
		})},
		{"evidence over MaxEvidenceSize", edit(func(_, w0 map[string]any) {
			w0["evidence"].(map[string]any)["quote"] = make([]byte, attest.MaxEvidenceSize)
		})},
		{"no models", edit(func(_, w0 map[string]any) { w0["models"] = []any{} })},
		{"too many models", edit(func(_, w0 map[string]any) { w0["models"] = models(directory.MaxModels + 1) })},
		{"model listed twice", edit(func(_, w0 map[string]any) { w0["models"] = append(models(2), models(1)...) })},
		{"empty model ID", edit(func(_, w0 map[string]any) { w0["models"] = []any{map[string]any{"id": ""}} })},
		{"model ID too long", edit(func(_, w0 map[string]any) {
			w0["models"] = []any{map[string]any{"id": strings.Repeat("m", directory.MaxModelID+1)}}
		})},
		{"negative price", edit(func(_, w0 map[string]any) {
			w0["models"] = []any{map[string]any{"id": "m", "price": map[string]any{"prompt": -1}}}
		})},
		{"absurd price", edit(func(_, w0 map[string]any) {
			w0["models"] = []any{map[string]any{"id": "m", "price": map[string]any{"completion": directory.MaxPrice + 1}}}
		})},
		{"unknown tier", edit(func(_, w0 map[string]any) { w0["tier"] = "platinum" })},
		{"peer ID with bytes appended", edit(func(_, w0 map[string]any) { w0["peer"] = other.String() + "x" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := directory.Decode(tc.b, net)
			if !errors.Is(err, directory.ErrMalformed) {
				t.Fatalf("Decode = %+v, %v; want ErrMalformed", d, err)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
	if _, err := directory.Decode(valid, net); err != nil {
		t.Fatalf("the unedited directory: %v", err)
	}
}

// FuzzDecode: no input panics Decode, and whatever it accepts encodes to
// a directory it accepts again, unchanged.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, sample(f, 2)))
	f.Add([]byte(`{"version":1,"network":"local","workers":[]}`))
	f.Add([]byte(`{"version":1,"network":"local","workers":[{"peer":"12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo","evidence":{"kind":"dev"},"models":[{"id":"m"}],"tier":"tee"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := directory.Decode(b, net)
		if err != nil {
			if !errors.Is(err, directory.ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if len(d.Workers) > directory.MaxWorkers {
			t.Fatalf("%d workers accepted", len(d.Workers))
		}
		seen := map[peer.ID]bool{}
		for _, e := range d.Workers {
			if seen[e.Peer] || len(e.Models) == 0 || len(e.Models) > directory.MaxModels || e.Evidence == nil {
				t.Fatalf("accepted entry %+v", e)
			}
			seen[e.Peer] = true
		}
		again, skipped, err := directory.Encode(d)
		if err != nil || skipped != 0 {
			t.Fatalf("re-encoding what Decode accepted: %d skipped, %v", skipped, err)
		}
		d2, err := directory.Decode(again, net)
		if err != nil {
			t.Fatalf("decoding the re-encoding: %v", err)
		}
		if again2, _, _ := directory.Encode(d2); !bytes.Equal(again, again2) {
			t.Fatalf("not stable:\n%s\n%s", again, again2)
		}
	})
}
