package router

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
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
	r := New(DefaultConfig("local"), nil, nil, nil, nil, slog.New(slog.DiscardHandler))
	r.SetWorker(a, catalog(2, "m"))
	r.SetWorker(b, catalog(4, "m", "other"))
	r.SetWorker(c, catalog(1, "solo"))

	pick := func(model string, tried ...peer.ID) (peer.ID, inference.Code) {
		t.Helper()
		var seen []peer.ID
		for _, p := range tried {
			seen = append(seen, p)
		}
		w, e := r.pick(model, inference.KindChat, 0, 0, seen, nil)
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
	r.release(r.workers[a], outcomeNone)
	if id, _ := pick("m", b); id != a {
		t.Fatalf("after release: pick = %s, want a", id)
	}
}

func TestPickPrefersCheaper(t *testing.T) {
	cheap, dear, unknown := peer.ID("cheap"), peer.ID("dear"), peer.ID("unknown")
	prices := &FakePricer{}
	prices.Set(cheap, 100)
	prices.Set(dear, 500)
	r := New(DefaultConfig("local"), nil, nil, prices, nil, slog.New(slog.DiscardHandler))
	r.SetWorker(dear, catalog(4, "m"))
	r.SetWorker(cheap, catalog(1, "m"))

	w, _ := r.pick("m", inference.KindChat, 0, 0, nil, nil)
	if w.id != cheap {
		t.Fatalf("picked %s, want the cheaper worker even though it was added later", w.id)
	}
	// The cheap one is full (1 of 1): the dear one takes the next.
	if w, _ := r.pick("m", inference.KindChat, 0, 0, nil, nil); w.id != dear {
		t.Fatalf("picked %s with the cheap worker full, want dear", w.id)
	}
	// A worker with no offer is compared by load only.
	r.SetWorker(unknown, catalog(4, "m"))
	if w, _ := r.pick("m", inference.KindChat, 0, 0, nil, nil); w.id != unknown {
		t.Fatalf("picked %s, want the idle worker whose price is unknown", w.id)
	}
}

// TestPickBusyWithinPrice: when the workers within the max price are busy
// or tried, the request is refused as no worker available, not as too
// expensive: a retry later can help, a higher price need not.
func TestPickBusyWithinPrice(t *testing.T) {
	cheap, dear := peer.ID("cheap"), peer.ID("dear")
	prices := &FakePricer{}
	prices.Set(cheap, 100)
	prices.Set(dear, 500)
	r := New(DefaultConfig("local"), nil, nil, prices, nil, slog.New(slog.DiscardHandler))
	r.SetWorker(cheap, catalog(1, "m"))
	r.SetWorker(dear, catalog(4, "m"))

	tests := []struct {
		name     string
		maxPrice int64
		tried    []peer.ID
		want     peer.ID
		code     inference.Code
		msg      string
	}{
		{"within the price", 200, nil, cheap, 0, ""},
		{"cheap one busy", 200, nil, "", inference.CodeNoWorker, ""},
		{"no limit takes the dear one", 0, nil, dear, 0, ""},
		{"under every price", 50, nil, "", inference.CodeTooExpensive,
			`no worker offers model "m" at or under 50 nanoTON per million tokens (cheapest: 100)`},
		{"only the dear one tried", 600, []peer.ID{dear}, "", inference.CodeNoWorker, ""},
	}
	for _, tt := range tests {
		w, e := r.pick("m", inference.KindChat, tt.maxPrice, 0, tt.tried, nil)
		switch {
		case tt.code != 0 && (e == nil || e.Code != tt.code || tt.msg != "" && e.Message != tt.msg):
			t.Errorf("%s: got %v, %v; want %v %q", tt.name, w, e, tt.code, tt.msg)
		case tt.code == 0 && (e != nil || w.id != tt.want):
			t.Errorf("%s: got %v, %v; want %s", tt.name, w, e, tt.want)
		}
	}
}

// TestPickMinTier: workers under the minimum tier are skipped; when they
// are all that serve the model the error says so, but a trusted worker
// that is busy or tried makes it no_worker_available.
func TestPickMinTier(t *testing.T) {
	dev, tee, none := peer.ID("dev"), peer.ID("tee"), peer.ID("none")
	verdicts := &FakeVerdicts{}
	verdicts.Set(dev, attest.TierDev)
	verdicts.Set(tee, attest.TierTEE)
	r := New(DefaultConfig("local"), nil, verdicts, nil, nil, slog.New(slog.DiscardHandler))
	r.SetWorker(dev, catalog(4, "m", "devonly"))
	r.SetWorker(tee, catalog(1, "m"))
	r.SetWorker(none, catalog(4, "m", "devonly", "unattested"))

	tests := []struct {
		name  string
		model string
		min   attest.Tier
		tried []peer.ID
		want  peer.ID
		code  inference.Code
		msg   string
	}{
		{"tee for tee", "m", attest.TierTEE, nil, tee, 0, ""},
		{"tee busy", "m", attest.TierTEE, nil, "", inference.CodeNoWorker, ""},
		{"dev for dev", "m", attest.TierDev, nil, dev, 0, ""},
		{"any takes the unattested one by load", "m", 0, []peer.ID{dev}, none, 0, ""},
		{"only dev serves it", "devonly", attest.TierTEE, nil, "", inference.CodeUntrusted,
			`no worker serves model "devonly" at trust tier tee or above (best available: dev)`},
		{"tee-gpu wanted", "m", attest.TierTEEGPU, nil, "", inference.CodeUntrusted,
			`no worker serves model "m" at trust tier tee-gpu or above (best available: tee)`},
		{"none attested", "unattested", attest.TierDev, nil, "", inference.CodeNoWorker, ""},
	}
	for _, tt := range tests {
		w, e := r.pick(tt.model, inference.KindChat, 0, tt.min, tt.tried, nil)
		switch {
		case tt.code != 0 && (e == nil || e.Code != tt.code || tt.msg != "" && e.Message != tt.msg):
			t.Errorf("%s: got %v, %v; want %v %q", tt.name, w, e, tt.code, tt.msg)
		case tt.code == 0 && (e != nil || w.id != tt.want):
			t.Errorf("%s: got %v, %v; want %s", tt.name, w, e, tt.want)
		}
	}
}

// TestScoreFades: a worker that failed loses to a healthy one with a
// little load, and wins again once its failure has faded for a half-life.
func TestScoreFades(t *testing.T) {
	flaky, busy := peer.ID("flaky"), peer.ID("busy")
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	cfg := DefaultConfig("local")
	cfg.Now, cfg.FadeHalfLife = clk.Now, time.Minute
	r := New(cfg, nil, nil, nil, nil, slog.New(slog.DiscardHandler))
	r.SetWorker(flaky, catalog(4, "m"))
	r.SetWorker(busy, catalog(4, "m"))

	w, _ := r.pick("m", inference.KindChat, 0, 0, nil, nil)
	if w.id != flaky {
		t.Fatalf("first pick %s, want flaky (added first)", w.id)
	}
	r.release(w, outcomeFailure) // success 0.75: score 0.05/0.75 = 0.067
	w, _ = r.pick("m", inference.KindChat, 0, 0, nil, nil)
	if w.id != busy {
		t.Fatalf("after a failure: pick %s, want busy", w.id)
	}
	// busy now holds 1 of 4: score 0.05 × 1.25 = 0.0625, under flaky's.
	if w, _ := r.pick("m", inference.KindChat, 0, 0, nil, nil); w.id != busy {
		t.Fatalf("with busy at 1/4: pick %s, want busy", w.id)
	}
	r.release(r.workers[busy], outcomeNone)
	// busy at 1/4 again. A half-life later flaky's success is 0.875:
	// 0.05/0.875 = 0.057 beats 0.0625.
	clk.Advance(time.Minute)
	if w, _ := r.pick("m", inference.KindChat, 0, 0, nil, nil); w.id != flaky {
		t.Fatalf("a half-life after the failure: pick %s, want flaky", w.id)
	}
	if st := r.Workers(); st[0].Failures != 1 || st[0].Success != 0.75 || st[1].Failures != 0 || st[1].Success != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkPick is the router's per-request choice among 64 workers with
// prices and measurements, on the real clock.
func BenchmarkPick(b *testing.B) {
	prices := &FakePricer{}
	r := New(DefaultConfig("local"), nil, nil, prices, nil, slog.New(slog.DiscardHandler))
	for i := range 64 {
		id := peer.ID(fmt.Sprintf("w%02d", i))
		prices.Set(id, int64(100+i%4))
		r.SetWorker(id, catalog(64, "m"))
		w, _ := r.pick("m", inference.KindChat, 0, 0, nil, nil)
		r.firstChunk(w, time.Duration(i)*time.Millisecond)
		r.release(w, outcomeSuccess)
	}
	b.ReportAllocs()
	for b.Loop() {
		w, e := r.pick("m", inference.KindChat, 1000, 0, nil, nil)
		if e != nil {
			b.Fatal(e)
		}
		r.release(w, outcomeNone)
	}
}
