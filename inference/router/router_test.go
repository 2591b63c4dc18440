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

func TestPickPrefersCheaper(t *testing.T) {
	cheap, dear, unknown := peer.ID("cheap"), peer.ID("dear"), peer.ID("unknown")
	r := New(DefaultConfig("local"), nil, nil, slog.New(slog.DiscardHandler))
	prices := map[peer.ID]int64{cheap: 100, dear: 500}
	r.SetPricer(func(p peer.ID, _ string) (int64, bool) { v, ok := prices[p]; return v, ok })
	r.SetWorker(dear, catalog(4, "m"))
	r.SetWorker(cheap, catalog(1, "m"))

	w, _ := r.pick("m", nil)
	if w.id != cheap {
		t.Fatalf("picked %s, want the cheaper worker even though it was added later", w.id)
	}
	// The cheap one is full (1 of 1): the dear one takes the next.
	if w, _ := r.pick("m", nil); w.id != dear {
		t.Fatalf("picked %s with the cheap worker full, want dear", w.id)
	}
	// A worker with no offer is compared by load only.
	r.SetWorker(unknown, catalog(4, "m"))
	if w, _ := r.pick("m", nil); w.id != unknown {
		t.Fatalf("picked %s, want the idle worker whose price is unknown", w.id)
	}
}
