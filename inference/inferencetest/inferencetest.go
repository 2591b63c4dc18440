// Package inferencetest provides fakes of package inference for tests:
// Backend, the one fake model engine. Production code must never import
// it; the import-rule test in internal/deptest fails if it does.
package inferencetest

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"

	"github.com/cocoon-mesh/cocoon/inference"
)

// Backend is a fake inference.Backend whose answers the test scripts.
//
// Generate counts and records each request, then runs Func if it is set.
// Otherwise it follows the script: it tells Started, waits for Gate (or
// for ctx to end, returning ctx.Err()), emits Chunks one by one (stopping
// with emit's error if emit fails), and returns Err if it is set, else
// Result.
//
// Set the fields before the first request; Backend is safe for concurrent
// use from then on.
type Backend struct {
	// Served is what Models returns.
	Served []inference.Model
	// Func, if set, answers every request instead of the script.
	Func func(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error)
	// Started, if set, receives a value as each request starts: give it
	// room, or read it, or requests wait on it.
	Started chan<- struct{}
	// Gate, if set, holds every request until it is closed (or gives the
	// request a value), or until the request's ctx ends.
	Gate <-chan struct{}
	// Chunks are the texts emitted, one chunk each.
	Chunks []string
	// Result is returned once the chunks are out, unless Err is set.
	Result inference.Result
	// Err, if set, is returned once the chunks are out.
	Err error

	calls    atomic.Int64
	mu       sync.Mutex // guards requests
	requests []inference.Request
}

var _ inference.Backend = (*Backend)(nil)

// Models returns names as models, none of them simulated: a value for
// Backend.Served.
func Models(names ...string) []inference.Model {
	out := make([]inference.Model, len(names))
	for i, n := range names {
		out[i] = inference.Model{ID: n}
	}
	return out
}

// Models returns b.Served.
func (b *Backend) Models(context.Context) ([]inference.Model, error) {
	return b.Served, nil
}

// Generate answers req as b says.
func (b *Backend) Generate(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
	b.calls.Add(1)
	b.mu.Lock()
	r := *req
	r.Body = bytes.Clone(req.Body)
	b.requests = append(b.requests, r)
	b.mu.Unlock()
	if b.Func != nil {
		return b.Func(ctx, req, emit)
	}
	if b.Started != nil {
		select {
		case b.Started <- struct{}{}:
		case <-ctx.Done():
			return inference.Result{}, ctx.Err()
		}
	}
	if b.Gate != nil {
		select {
		case <-b.Gate:
		case <-ctx.Done():
			return inference.Result{}, ctx.Err()
		}
	}
	for _, text := range b.Chunks {
		if err := emit(inference.Chunk{Text: text}); err != nil {
			return inference.Result{}, err
		}
	}
	if b.Err != nil {
		return inference.Result{}, b.Err
	}
	return b.Result, nil
}

// Calls returns how many requests Generate was given.
func (b *Backend) Calls() int {
	return int(b.calls.Load())
}

// Requests returns copies of the requests Generate was given, in order.
func (b *Backend) Requests() []inference.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]inference.Request(nil), b.requests...)
}
