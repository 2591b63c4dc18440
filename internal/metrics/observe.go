package metrics

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/gateway"
)

// Request metrics are taken where a role's requests pass through an
// interface the node assembles: a worker's Backend, a client's Upstream.
// Wrapping them records every request without the worker or gateway
// knowing.

// ObserveBackend wraps a worker's backend so that every request it runs is
// recorded in r. Requests the worker refuses before they reach the
// backend (at capacity, unattested) are not.
func ObserveBackend(b inference.Backend, r *Requests) inference.Backend {
	return &observedBackend{Backend: b, r: r}
}

type observedBackend struct {
	inference.Backend
	r *Requests
}

func (b *observedBackend) Generate(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
	start := time.Now()
	var ttft time.Duration
	var emitErr error
	res, err := b.Backend.Generate(ctx, req, func(c inference.Chunk) error {
		if ttft == 0 {
			ttft = max(time.Since(start), 1)
		}
		if err := emit(c); err != nil {
			emitErr = err
			return err
		}
		return nil
	})
	code := CodeOK
	switch {
	case err == nil:
	case ctx.Err() != nil || (emitErr != nil && errors.Is(err, emitErr)):
		code = inference.CodeCancelled.String() // the proxy went away
	default:
		code = codeLabel(inference.AsError(err, inference.CodeEngine).Code)
	}
	b.r.Observe(code, ttft, time.Since(start), int(res.Usage.Completion))
	return res, err
}

// ObserveUpstream wraps a client's upstream so that every request sent
// through it is recorded in r, from the moment it is sent to its End,
// Error or abandonment.
func ObserveUpstream(up gateway.Upstream, r *Requests) gateway.Upstream {
	return observedUpstream{Upstream: up, r: r}
}

type observedUpstream struct {
	gateway.Upstream
	r *Requests
}

func (u observedUpstream) Open(ctx context.Context, req *inference.Request) (gateway.Response, error) {
	start := time.Now()
	resp, err := u.Upstream.Open(ctx, req)
	if err != nil {
		code := "upstream_error"
		switch {
		case ctx.Err() != nil:
			code = inference.CodeCancelled.String()
		case errors.Is(err, gateway.ErrNoProxy):
			code = "no_proxy"
		}
		u.r.Finish(Record{Time: start, Model: req.Model, Outcome: code, DurationMillis: millis(time.Since(start))})
		return nil, err
	}
	o := &observedResponse{Response: resp, r: u.r, start: start, model: req.Model}
	if pr, ok := resp.(gateway.ProxyResponse); ok {
		return observedProxyResponse{o, pr}, nil // the gateway pays the proxy it names
	}
	return o, nil
}

// observedProxyResponse is an observedResponse that names its proxy, as
// the response it wraps does.
type observedProxyResponse struct {
	*observedResponse
	pr gateway.ProxyResponse
}

func (o observedProxyResponse) Proxy() peer.ID { return o.pr.Proxy() }

// observedResponse records its request once: at its End or Error frame,
// at a failed read, or when it is closed before either.
type observedResponse struct {
	gateway.Response
	r     *Requests
	start time.Time
	model string
	ttft  time.Duration
	done  bool
}

func (o *observedResponse) Next() (inference.Event, error) {
	ev, err := o.Response.Next()
	switch {
	case o.done:
	case err != nil:
		code := "upstream_error"
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			code = inference.CodeCancelled.String()
		}
		o.finish(code, nil)
	case ev.Type == inference.FrameChunk || ev.Type == inference.FrameEvent || ev.Type == inference.FrameRecord:
		if o.ttft == 0 {
			o.ttft = max(time.Since(o.start), 1)
		}
	case ev.Type == inference.FrameEnd:
		o.finish(CodeOK, ev.End)
	case ev.Type == inference.FrameError:
		o.finish(codeLabel(ev.Err.Code), nil)
	}
	return ev, err
}

// Unwrap is the response observed, where the gateway finds what else it
// can do.
func (o *observedResponse) Unwrap() gateway.Response { return o.Response }

func (o *observedResponse) Close() {
	if !o.done {
		o.finish(inference.CodeCancelled.String(), nil) // the app went away
	}
	o.Response.Close()
}

// finish records the request; end is its End frame, nil without one.
func (o *observedResponse) finish(code string, end *inference.End) {
	o.done = true
	rec := Record{Time: o.start, Model: o.model, Outcome: code, TTFTMillis: millis(o.ttft), DurationMillis: millis(time.Since(o.start))}
	if end != nil {
		rec.Worker, rec.Tier = end.Worker, end.Tier
		rec.PromptTokens, rec.CompletionTokens = end.Usage.Prompt, end.Usage.Completion
		if end.Cost != nil {
			rec.CostNanoton = end.Cost.Total
		}
	}
	o.r.Finish(rec)
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// codeLabel names c for a metric label; codes this build does not know
// (a newer peer's, or garbage) share one label, so a peer cannot make the
// label set grow.
func codeLabel(c inference.Code) string {
	s := c.String()
	if strings.HasPrefix(s, "code(") {
		return "unknown_error"
	}
	return s
}
