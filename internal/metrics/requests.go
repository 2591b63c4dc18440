// Package metrics records what a node measures of the requests it sends
// or serves, as Prometheus collectors for its admin API. ObserveBackend
// and ObserveUpstream wrap a worker's backend and a client's upstream so
// that every request through them is recorded, without the worker or the
// gateway knowing.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CodeOK is the outcome of a request answered in full. Other outcomes are
// the names of inference error codes ("engine_error", "cancelled", ...)
// or, where no code came back, what went wrong ("upstream_error").
const CodeOK = "ok"

// Requests records requests end to end: how each ended, how long it took,
// how long to its first token, and how many completion tokens it carried.
// It is a prometheus.Collector; its metrics carry the node's role as a
// label. Its methods are safe for concurrent use.
type Requests struct {
	total    *prometheus.CounterVec
	duration prometheus.Histogram
	ttft     prometheus.Histogram
	tokens   prometheus.Counter

	mu     sync.Mutex // guards recent and next
	recent []Record   // a ring of the last RecentRequests records
	next   int        // where the next record goes once the ring is full
}

// RecentRequests is how many finished requests a Requests keeps whole,
// for the dashboard's list.
const RecentRequests = 50

// Record is one finished request as a client's dashboard lists it.
type Record struct {
	Time    time.Time `json:"time"` // when it was sent
	Model   string    `json:"model"`
	Outcome string    `json:"outcome"` // CodeOK or why it failed
	// Worker and Tier are the worker that answered and the trust tier the
	// proxy verified for it; empty when none answered.
	Worker     string  `json:"worker,omitempty"`
	Tier       string  `json:"tier,omitempty"`
	TTFTMillis float64 `json:"ttft_ms,omitempty"` // 0 when no token came
	// DurationMillis runs from sending to the end, whatever the outcome.
	DurationMillis   float64 `json:"duration_ms"`
	PromptTokens     int64   `json:"prompt_tokens,omitempty"`
	CompletionTokens int64   `json:"completion_tokens,omitempty"`
	// CostNanoton is what the answer cost, the proxy's fee included; 0
	// when it is free or not known.
	CostNanoton int64 `json:"cost_nanoton,omitempty"`
}

// Finish records one finished request whole, for Recent, and counts it
// as Observe does.
func (r *Requests) Finish(rec Record) {
	r.Observe(rec.Outcome, time.Duration(rec.TTFTMillis*float64(time.Millisecond)),
		time.Duration(rec.DurationMillis*float64(time.Millisecond)), int(rec.CompletionTokens))
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recent) < RecentRequests {
		r.recent = append(r.recent, rec)
		return
	}
	r.recent[r.next] = rec
	r.next = (r.next + 1) % RecentRequests
}

// Recent is the last RecentRequests requests recorded by Finish, newest
// first; nil for a nil Requests.
func (r *Requests) Recent() []Record {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, 0, len(r.recent))
	for i := range len(r.recent) {
		out = append(out, r.recent[(r.next+len(r.recent)-1-i)%len(r.recent)])
	}
	return out
}

// NewRequests makes a recorder for a node of role.
func NewRequests(role string) *Requests {
	labels := prometheus.Labels{"role": role}
	return &Requests{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocoon_requests_total", Help: "Inference requests, by how they ended (ok or an error code).",
			ConstLabels: labels,
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cocoon_request_duration_seconds", Help: "Inference requests from start to end, whatever their outcome.",
			ConstLabels: labels, Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cocoon_request_ttft_seconds", Help: "Time from a request's start to its first token, for requests that got one.",
			ConstLabels: labels, Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cocoon_completion_tokens_total", Help: "Completion tokens of the requests answered in full.",
			ConstLabels: labels,
		}),
	}
}

// Observe records one finished request: code is CodeOK or why it failed;
// ttft is 0 when no token came; tokens counts completion tokens, only for
// a request answered in full.
func (r *Requests) Observe(code string, ttft, total time.Duration, tokens int) {
	r.total.WithLabelValues(code).Inc()
	r.duration.Observe(total.Seconds())
	if ttft > 0 {
		r.ttft.Observe(ttft.Seconds())
	}
	if code == CodeOK && tokens > 0 {
		r.tokens.Add(float64(tokens))
	}
}

// Describe implements prometheus.Collector.
func (r *Requests) Describe(ch chan<- *prometheus.Desc) {
	r.total.Describe(ch)
	r.duration.Describe(ch)
	r.ttft.Describe(ch)
	r.tokens.Describe(ch)
}

// Collect implements prometheus.Collector.
func (r *Requests) Collect(ch chan<- prometheus.Metric) {
	r.total.Collect(ch)
	r.duration.Collect(ch)
	r.ttft.Collect(ch)
	r.tokens.Collect(ch)
}
