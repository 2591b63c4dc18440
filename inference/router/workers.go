package router

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/seal"
)

// worker is what the router knows of one worker.
type worker struct {
	id            peer.ID
	idStr         string // id.String(), which base58-encodes on every call
	models        map[string]inference.Model
	maxConcurrent int
	up            bool
	// active and served are the router's own counts of what it sent.
	active   int
	served   int
	failures int
	// refusedUntil: the worker billed at a price it does not offer, and
	// gets no requests before then.
	refusedUntil time.Time
	// sealKey is the sealing key of w's verdict when sealID was computed.
	sealKey []byte
	sealID  seal.KeyID
	// Measurements, as of observed (zero before the first): EWMAs of the
	// time to first chunk, in seconds, and of outcomes (1 success, 0
	// failure; a worker starts at 1).
	ttft     float64
	hasTTFT  bool
	success  float64
	observed time.Time
}

// SetWorker records what worker p serves and marks it up.
func (r *Router) SetWorker(p peer.ID, c *inference.Catalog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[p]
	if !ok {
		w = &worker{id: p, idStr: p.String(), success: 1}
		r.workers[p] = w
		r.order = append(r.order, w)
	}
	w.models = make(map[string]inference.Model, len(c.Models))
	for _, m := range c.Models {
		w.models[m.ID] = m
		r.known[m.ID] = true
	}
	w.maxConcurrent = c.MaxConcurrent
	if w.maxConcurrent <= 0 {
		w.maxConcurrent = 1
	}
	w.up = true
}

// Serving reports whether p is a worker the router sends requests to.
func (r *Router) Serving(p peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[p]
	return ok && w.up
}

// refuseFor is how long a worker that billed at a price it does not offer
// gets no requests: long enough that its answers are not worth the
// trouble, short enough that a worker that fixes its configuration comes
// back without an operator.
const refuseFor = 10 * time.Minute

// refuse stops routing to w for refuseFor.
func (r *Router) refuse(w *worker) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	w.refusedUntil = now.Add(refuseFor)
}

// WorkerDown marks p unreachable; it gets no requests until SetWorker.
func (r *Router) WorkerDown(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[p]; ok {
		w.up = false
	}
}

// Catalog is the union of the models of reachable workers (with payments,
// of those the proxy can pay: it routes to no other).
func (r *Router) Catalog() *inference.Catalog {
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := make(map[string]*inference.Model)
	for _, w := range r.workers {
		if !w.up || !r.payable(w.id) {
			continue
		}
		for _, m := range w.models {
			e, ok := byID[m.ID]
			if !ok {
				e = &inference.Model{ID: m.ID, Simulated: m.Simulated}
				byID[m.ID] = e
			}
			e.Workers++
			e.Simulated = e.Simulated && m.Simulated
			e.Endpoints = unionEndpoints(e.Endpoints, m, e.Workers == 1)
		}
	}
	c := &inference.Catalog{Models: make([]inference.Model, 0, len(byID))}
	for _, m := range byID {
		c.Models = append(c.Models, *m)
	}
	sort.Slice(c.Models, func(i, j int) bool { return c.Models[i].ID < c.Models[j].ID })
	return c
}

// unionEndpoints adds the endpoints m is served for to have (those of the
// workers before it; first says m is the first). Since no endpoints means
// chat and completion, the union is spelled out once the workers differ.
func unionEndpoints(have []string, m inference.Model, first bool) []string {
	if first {
		return slices.Clone(m.Endpoints)
	}
	out := inference.UnionEndpoints(have, m.Endpoints)
	if slices.Equal(out, inference.UnionEndpoints(nil)) {
		return nil
	}
	return out
}

func (r *Router) serveCatalog(_ context.Context, s network.Stream) error {
	return inference.ServeCatalog(s, r.Catalog())
}

// WorkerStats is what the router knows of one worker, for operators.
type WorkerStats struct {
	Peer   peer.ID
	Up     bool             // the router sends it requests
	Models []string         // sorted
	Prices map[string]int64 // per model, nanoTON per million prompt plus completion tokens, where an offer is known
	// Endpoints are, per model it announced endpoints for, the kinds of
	// request it serves the model for (inference.Model.Endpoints); a model
	// not in it is served for chat and completion.
	Endpoints     map[string][]string
	MaxConcurrent int
	Active        int // requests in flight
	Served        int // requests sent to it
	Failures      int // attempts it failed, before its first chunk or after
	// TTFT is the EWMA of its time to first chunk; 0 until measured.
	TTFT time.Duration
	// Success is the EWMA of its outcomes, from 0 (failing) to 1
	// (healthy); 1 until measured. Routing fades TTFT and Success towards
	// the prior as they age (see the package doc); these are as measured.
	Success  float64
	Observed time.Time // when the last measurement was made; zero if none
	// RefusedUntil is when a worker that billed at a price it does not
	// offer gets requests again; zero if it never did.
	RefusedUntil time.Time
}

// Workers reports every worker the router has known, up or down, in the
// order they were added.
func (r *Router) Workers() []WorkerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]WorkerStats, 0, len(r.order))
	for _, w := range r.order {
		st := WorkerStats{
			Peer: w.id, Up: w.up, MaxConcurrent: w.maxConcurrent,
			Active: w.active, Served: w.served, Failures: w.failures,
			Success: w.success, Observed: w.observed, RefusedUntil: w.refusedUntil,
		}
		if w.hasTTFT {
			st.TTFT = time.Duration(w.ttft * float64(time.Second))
		}
		for m, model := range w.models {
			st.Models = append(st.Models, m)
			if len(model.Endpoints) > 0 {
				if st.Endpoints == nil {
					st.Endpoints = make(map[string][]string)
				}
				st.Endpoints[m] = model.Endpoints
			}
			if p := r.priceLocked(w.id, m); p != unknownPrice {
				if st.Prices == nil {
					st.Prices = make(map[string]int64)
				}
				st.Prices[m] = p
			}
		}
		slices.Sort(st.Models)
		out = append(out, st)
	}
	return out
}
