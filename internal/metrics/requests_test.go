package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cocoon-mesh/cocoon/internal/metrics"
)

func TestRequests(t *testing.T) {
	r := metrics.NewRequests("client")
	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	for _, o := range []struct {
		code        string
		ttft, total time.Duration
		tokens      int
	}{
		{metrics.CodeOK, 20 * time.Millisecond, 300 * time.Millisecond, 7},
		{metrics.CodeOK, 2 * time.Second, 3 * time.Second, 5},
		{"engine_error", 0, 40 * time.Millisecond, 0},
		{"cancelled", 30 * time.Millisecond, time.Second, 3}, // tokens of a cut answer are not counted
	} {
		r.Observe(o.code, o.ttft, o.total, o.tokens)
	}

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	type sample struct {
		count uint64
		sum   float64
	}
	counters := map[string]float64{}
	hists := map[string]sample{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["role"] != "client" {
				t.Errorf("%s: role label = %q, want client", f.GetName(), labels["role"])
			}
			name := f.GetName()
			if c, ok := labels["code"]; ok {
				name += "{" + c + "}"
			}
			if h := m.GetHistogram(); h != nil {
				hists[name] = sample{h.GetSampleCount(), h.GetSampleSum()}
			} else {
				counters[name] = m.GetCounter().GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"cocoon_requests_total{ok}":           2,
		"cocoon_requests_total{engine_error}": 1,
		"cocoon_requests_total{cancelled}":    1,
		"cocoon_completion_tokens_total":      12,
	} {
		if got := counters[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]sample{
		"cocoon_request_duration_seconds": {4, 4.34},
		"cocoon_request_ttft_seconds":     {3, 2.05}, // the engine error had no first token
	} {
		got := hists[name]
		if got.count != want.count || got.sum < want.sum-1e-9 || got.sum > want.sum+1e-9 {
			t.Errorf("%s: %d samples summing to %v, want %d summing to %v", name, got.count, got.sum, want.count, want.sum)
		}
	}
}

// TestRecent: Finish keeps the last RecentRequests requests whole, newest
// first, and counts each as Observe does.
func TestRecent(t *testing.T) {
	for _, n := range []int{0, 1, metrics.RecentRequests, metrics.RecentRequests + 7} {
		r := metrics.NewRequests("client")
		for i := range n {
			r.Finish(metrics.Record{Model: "m", Outcome: metrics.CodeOK, CompletionTokens: int64(i), DurationMillis: 1})
		}
		got := r.Recent()
		if want := min(n, metrics.RecentRequests); len(got) != want {
			t.Fatalf("%d finished: %d recent, want %d", n, len(got), want)
		}
		for i, rec := range got {
			if want := int64(n - 1 - i); rec.CompletionTokens != want {
				t.Fatalf("%d finished: recent[%d] is request %d, want %d", n, i, rec.CompletionTokens, want)
			}
		}
	}
	if got := (*metrics.Requests)(nil).Recent(); got != nil {
		t.Errorf("a nil Requests has %d recent", len(got))
	}
}
