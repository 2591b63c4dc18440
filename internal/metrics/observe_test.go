package metrics_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/gateway"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
	"github.com/cocoon-mesh/cocoon/payments"
)

// gathered reads r's metrics: counters by "name{code}" and histograms'
// sample counts by "name_count".
func gathered(t *testing.T, r *metrics.Requests) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" {
					name += "{" + l.GetValue() + "}"
				}
			}
			if h := m.GetHistogram(); h != nil {
				out[name+"_count"] = float64(h.GetSampleCount())
			} else {
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func checkGathered(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// scripted is a backend that emits chunks, then ends with err or usage.
func scripted(chunks int, err error) *inferencetest.Backend {
	return &inferencetest.Backend{Chunks: slices.Repeat([]string{"x"}, chunks), Err: err,
		Result: inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 3, Completion: int64(chunks)}}}}
}

func TestObserveBackend(t *testing.T) {
	r := metrics.NewRequests("worker")
	gone := errors.New("stream reset")
	emit := func(inference.Chunk) error { return nil }
	for _, c := range []struct {
		b    *inferencetest.Backend
		emit func(inference.Chunk) error
	}{
		{scripted(4, nil), emit},
		{scripted(2, nil), emit},
		{scripted(1, errors.New("engine died")), emit},
		{scripted(0, inference.Errorf(inference.CodeBadRequest, "no")), emit},
		{scripted(3, nil), func(inference.Chunk) error { return gone }}, // the proxy went away
	} {
		metrics.ObserveBackend(c.b, r).Generate(t.Context(), &inference.Request{}, c.emit)
	}
	checkGathered(t, gathered(t, r), map[string]float64{
		"cocoon_requests_total{ok}":             2,
		"cocoon_requests_total{engine_error}":   1,
		"cocoon_requests_total{bad_request}":    1,
		"cocoon_requests_total{cancelled}":      1,
		"cocoon_completion_tokens_total":        6,
		"cocoon_request_duration_seconds_count": 5,
		"cocoon_request_ttft_seconds_count":     4, // the bad request had no first token
	})
}

// scriptedUpstream answers every Open with its events, then err, through
// proxy if it names one.
type scriptedUpstream struct {
	openErr error
	events  []inference.Event
	err     error
	proxy   peer.ID
}

func (u scriptedUpstream) Catalog(context.Context) (*inference.Catalog, error) { return nil, nil }

func (u scriptedUpstream) Open(ctx context.Context, req *inference.Request) (gateway.Response, error) {
	if u.openErr != nil {
		return nil, u.openErr
	}
	r := &scriptedResponse{events: u.events, err: u.err}
	if u.proxy != "" {
		return proxyResponse{r, u.proxy}, nil
	}
	return r, nil
}

type proxyResponse struct {
	*scriptedResponse
	proxy peer.ID
}

func (r proxyResponse) Proxy() peer.ID { return r.proxy }

type scriptedResponse struct {
	events []inference.Event
	err    error
}

func (r *scriptedResponse) Next() (inference.Event, error) {
	if len(r.events) == 0 {
		return inference.Event{}, r.err
	}
	ev := r.events[0]
	r.events = r.events[1:]
	return ev, nil
}

func (r *scriptedResponse) Buffered() bool { return len(r.events) > 0 }
func (r *scriptedResponse) Close()         {}

func TestObserveUpstream(t *testing.T) {
	r := metrics.NewRequests("client")
	chunk := inference.Event{Type: inference.FrameChunk, Text: []byte("x")}
	end := inference.Event{Type: inference.FrameEnd, End: &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Completion: 5}}}}
	for _, c := range []struct {
		up    scriptedUpstream
		reads int // Next calls before Close; -1 reads until the response ends
	}{
		{scriptedUpstream{events: []inference.Event{chunk, chunk, end}, proxy: "proxy-a"}, -1},
		{scriptedUpstream{events: []inference.Event{{Type: inference.FrameError, Err: inference.Errorf(inference.CodeNoWorker, "none")}}}, -1},
		{scriptedUpstream{events: []inference.Event{{Type: inference.FrameError, Err: &inference.Error{Code: 999}}}}, -1},
		{scriptedUpstream{events: []inference.Event{chunk}, err: io.ErrUnexpectedEOF}, -1},
		{scriptedUpstream{events: []inference.Event{chunk, chunk, end}}, 1}, // the app hung up
		{scriptedUpstream{openErr: gateway.ErrNoProxy}, 0},
	} {
		resp, err := metrics.ObserveUpstream(c.up, r).Open(t.Context(), &inference.Request{})
		if err != nil {
			continue
		}
		// The gateway pays the proxy a response names: wrapped, it still
		// names the same one, and a response that named none still does not.
		pr, ok := resp.(gateway.ProxyResponse)
		if ok != (c.up.proxy != "") || ok && pr.Proxy() != c.up.proxy {
			t.Errorf("wrapped response names proxy %v (%v), want %q", ok, pr, c.up.proxy)
		}
		for i := 0; c.reads < 0 || i < c.reads; i++ {
			ev, err := resp.Next()
			if err != nil || ev.Type != inference.FrameChunk {
				break
			}
		}
		resp.Close()
	}
	checkGathered(t, gathered(t, r), map[string]float64{
		"cocoon_requests_total{ok}":                  1,
		"cocoon_requests_total{no_worker_available}": 1,
		"cocoon_requests_total{unknown_error}":       1,
		"cocoon_requests_total{upstream_error}":      1,
		"cocoon_requests_total{cancelled}":           1,
		"cocoon_requests_total{no_proxy}":            1,
		"cocoon_completion_tokens_total":             5,
		"cocoon_request_duration_seconds_count":      6,
		"cocoon_request_ttft_seconds_count":          3,
	})
}
