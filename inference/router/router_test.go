package router

import (
	"log/slog"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/inference"
)

func catalog(maxConc int, models ...string) *inference.Catalog {
	c := &inference.Catalog{MaxConcurrent: maxConc}
	for _, m := range models {
		c.Models = append(c.Models, inference.Model{ID: m})
	}
	return c
}

func TestPick(t *testing.T) {
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	r := New(DefaultConfig("local"), nil, nil, slog.New(slog.DiscardHandler))
	r.SetWorker(a, catalog(2, "m"))
	r.SetWorker(b, catalog(4, "m", "other"))
	r.SetWorker(c, catalog(1, "solo"))

	pick := func(model string, tried ...peer.ID) (peer.ID, inference.Code) {
		t.Helper()
		var seen []peer.ID
		for _, p := range tried {
			seen = append(seen, p)
		}
		w, e := r.pick(model, seen)
		if e != nil {
			return "", e.Code
		}
		return w.id, 0
	}
	// Idle and unserved: insertion order breaks the tie.
	if id, _ := pick("m"); id != a {
		t.Fatalf("first pick = %s, want a", id)
	}
	// a is at 1/2, b at 0/4: b.
	if id, _ := pick("m"); id != b {
		t.Fatalf("second pick = %s, want b (least loaded)", id)
	}
	// a 1/2 = 0.5, b 1/4 = 0.25: b again.
	if id, _ := pick("m"); id != b {
		t.Fatalf("third pick = %s, want b", id)
	}
	// Tried workers are skipped.
	if id, _ := pick("m", b); id != a {
		t.Fatalf("pick excluding b = %s, want a", id)
	}
	// a is now full (2/2).
	if id, _ := pick("m", b); id != "" {
		t.Fatalf("pick with a full and b tried = %s, want none", id)
	}
	if _, code := pick("m", b); code != inference.CodeNoWorker {
		t.Fatalf("code = %v, want CodeNoWorker", code)
	}
	if _, code := pick("nope"); code != inference.CodeUnknownModel {
		t.Fatalf("unknown model: code = %v, want CodeUnknownModel", code)
	}
	// A worker that went down takes nothing, but its model stays known.
	r.WorkerDown(c)
	if _, code := pick("solo"); code != inference.CodeNoWorker {
		t.Fatalf("solo with its worker down: code = %v, want CodeNoWorker", code)
	}
	if got := r.Catalog().Models; len(got) != 2 || got[0].ID != "m" || got[0].Workers != 2 || got[1].ID != "other" {
		t.Fatalf("catalog = %+v, want m (2 workers) and other; solo is down", got)
	}
	// Releasing frees capacity.
	r.release(r.workers[a], false)
	if id, _ := pick("m", b); id != a {
		t.Fatalf("after release: pick = %s, want a", id)
	}
}
