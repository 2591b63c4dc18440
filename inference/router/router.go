// Package router is the proxy's part of the inference protocol: it keeps
// the set of workers it can reach, picks one for each request by model and
// current load, forwards the request, and relays the response frame by
// frame, flushing whenever nothing more is waiting. A worker that fails
// before its first chunk is replaced by another; one that fails after it
// ends the response with an error.
package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// Config configures a router.
type Config struct {
	Network string
	// Attempts is how many workers a request may try before the first
	// chunk arrives.
	Attempts int
	// FirstChunkTimeout bounds the wait for a worker's first frame; a
	// worker that passes it is treated as failed and the next is tried.
	FirstChunkTimeout time.Duration
	MaxDuration       time.Duration // the longest one request may stream
}

// DefaultConfig tries three workers and waits two minutes for a first
// chunk.
func DefaultConfig(network string) Config {
	return Config{Network: network, Attempts: 3, FirstChunkTimeout: 2 * time.Minute, MaxDuration: 30 * time.Minute}
}

// Tiers tells the router what it verified about a peer: ok is false for a
// peer without a live attestation verdict.
type Tiers func(peer.ID) (tier string, ok bool)

// Router routes inference requests to workers.
type Router struct {
	cfg   Config
	h     host.Host
	proto protocol.ID
	tiers Tiers
	log   *slog.Logger

	mu      sync.Mutex // guards workers, order, known
	workers map[peer.ID]*worker
	order   []peer.ID       // insertion order, the last tie-break
	known   map[string]bool // every model any worker ever announced
}

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
}

// New routes through h. tiers reports attestation verdicts: no request goes
// to a worker without one, and none is taken from a client without one.
func New(cfg Config, h host.Host, tiers Tiers, log *slog.Logger) *Router {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.FirstChunkTimeout <= 0 {
		cfg.FirstChunkTimeout = 2 * time.Minute
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 30 * time.Minute
	}
	return &Router{
		cfg: cfg, h: h, tiers: tiers,
		proto:   p2p.ProtocolID(cfg.Network, inference.ProtocolName, inference.ProtocolVersion),
		log:     log.With("component", "router"),
		workers: make(map[peer.ID]*worker),
		known:   make(map[string]bool),
	}
}

// Register serves the inference and catalog protocols on sv.
func (r *Router) Register(sv *p2p.Service) {
	sv.Handle(r.proto, r.cfg.MaxDuration, r.serveInference)
	sv.Handle(p2p.ProtocolID(r.cfg.Network, inference.CatalogProtocolName, inference.CatalogProtocolVersion), 10*time.Second, r.serveCatalog)
}

// SetWorker records what worker p serves and marks it up.
func (r *Router) SetWorker(p peer.ID, c *inference.Catalog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[p]
	if !ok {
		w = &worker{id: p, idStr: p.String()}
		r.workers[p] = w
		r.order = append(r.order, p)
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

// WorkerDown marks p unreachable; it gets no requests until SetWorker.
func (r *Router) WorkerDown(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[p]; ok {
		w.up = false
	}
}

// Catalog is the union of the models of reachable workers.
func (r *Router) Catalog() *inference.Catalog {
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := make(map[string]*inference.Model)
	for _, w := range r.workers {
		if !w.up {
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
		}
	}
	c := &inference.Catalog{Models: make([]inference.Model, 0, len(byID))}
	for _, m := range byID {
		c.Models = append(c.Models, *m)
	}
	sort.Slice(c.Models, func(i, j int) bool { return c.Models[i].ID < c.Models[j].ID })
	return c
}

func (r *Router) serveCatalog(ctx context.Context, s network.Stream) error {
	if _, ok := r.tiers(s.Conn().RemotePeer()); !ok {
		return inference.ErrUnattestedPeer
	}
	return inference.ServeCatalog(s, r.Catalog())
}

// pick chooses the least loaded reachable worker serving model that was
// not tried yet, and counts the request against it. Ties go to the worker
// that served fewer requests, then to the one added first.
func (r *Router) pick(model string, tried map[peer.ID]bool) (*worker, *inference.Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.known[model] {
		return nil, inference.Errorf(inference.CodeUnknownModel, "the model %q does not exist in this network", model)
	}
	var best *worker
	for _, id := range r.order {
		w := r.workers[id]
		if !w.up || tried[id] || w.active >= w.maxConcurrent {
			continue
		}
		if _, ok := w.models[model]; !ok {
			continue
		}
		if best == nil || less(w, best) {
			best = w
		}
	}
	if best == nil {
		return nil, inference.Errorf(inference.CodeNoWorker, "no worker can take model %q now", model)
	}
	best.active++
	best.served++
	return best, nil
}

// less orders by load (active/max, compared without division), then served.
func less(a, b *worker) bool {
	la, lb := a.active*b.maxConcurrent, b.active*a.maxConcurrent
	if la != lb {
		return la < lb
	}
	return a.served < b.served
}

func (r *Router) release(w *worker, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.active--
	if failed {
		w.failures++
	}
}

func (r *Router) serveInference(ctx context.Context, s network.Stream) error {
	client := s.Conn().RemotePeer()
	out := p2p.NewFrameWriter(s, 16<<10)
	defer out.Release()
	fail := func(e *inference.Error) error {
		if err := inference.WriteError(out, e); err != nil {
			return err
		}
		return out.Flush()
	}
	if _, ok := r.tiers(client); !ok {
		return fail(inference.Errorf(inference.CodeUnattested, "proxy has no attestation verdict for %s", client))
	}
	req, err := inference.ReadRequest(s)
	if err != nil {
		return fail(&inference.Error{Code: inference.CodeBadRequest, Message: err.Error()})
	}
	// Built only when something is logged: With formats its attributes.
	log := func() *slog.Logger { return r.log.With("request", req.ID, "model", req.Model, "peer", client) }

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := inference.WatchCancel(s, cancel)
	defer stop()

	tried := make(map[peer.ID]bool)
	var last *inference.Error
	for attempt := 0; attempt < r.cfg.Attempts; attempt++ {
		w, perr := r.pick(req.Model, tried)
		if perr != nil {
			if last == nil || perr.Code == inference.CodeUnknownModel {
				last = perr
			}
			break
		}
		tried[w.id] = true
		started, e := r.forward(ctx, w, req, out, log)
		if ctx.Err() != nil {
			return fmt.Errorf("client went away: %w", ctx.Err())
		}
		if e == nil {
			return nil
		}
		if started {
			// Already streaming: the error frame was forwarded.
			return nil
		}
		log().Info("worker failed before first chunk", "worker", w.id, "attempt", attempt+1, "code", e.Code, "err", e.Message)
		last = e
		if !e.Code.Retryable() {
			break
		}
	}
	if last == nil {
		last = inference.Errorf(inference.CodeNoWorker, "no worker answered")
	} else if last.Code.Retryable() && len(tried) > 0 {
		last = &inference.Error{Code: last.Code, Message: fmt.Sprintf("%d worker(s) tried: %s", len(tried), last.Message)}
	}
	return fail(last)
}

// forward sends req to w and relays its response to out. started reports
// whether anything reached the client; e is the failure, if any.
func (r *Router) forward(ctx context.Context, w *worker, req *inference.Request, out *p2p.FrameWriter, log func() *slog.Logger) (started bool, e *inference.Error) {
	failed := true
	defer func() { r.release(w, failed) }()

	tier, ok := r.tiers(w.id)
	if !ok {
		return false, inference.Errorf(inference.CodeUnattested, "worker %s has no live attestation verdict", w.id)
	}
	ws, err := r.h.NewStream(ctx, w.id, r.proto)
	if err != nil {
		r.WorkerDown(w.id)
		return false, inference.Errorf(inference.CodeEngine, "opening stream to worker: %v", err)
	}
	defer ws.Reset() // no-op once closed
	stop := context.AfterFunc(ctx, func() { ws.Reset() })
	defer stop()
	if err := inference.WriteRequest(ws, req); err != nil {
		return false, inference.Errorf(inference.CodeEngine, "sending request to worker: %v", err)
	}
	if err := ws.SetReadDeadline(time.Now().Add(r.cfg.FirstChunkTimeout)); err != nil {
		return false, inference.Errorf(inference.CodeInternal, "setting deadline: %v", err)
	}
	rr := inference.NewResponseReader(ws)
	defer rr.Release()
	in := rr.Frames()
	typ, p, err := in.Next()
	if err != nil {
		if errors.Is(err, network.ErrReset) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, inference.Errorf(inference.CodeEngine, "worker closed the stream before answering: %v", err)
		}
		if isTimeout(err) {
			return false, inference.Errorf(inference.CodeTimeout, "worker sent nothing within %s", r.cfg.FirstChunkTimeout)
		}
		return false, inference.Errorf(inference.CodeEngine, "reading from worker: %v", err)
	}
	if typ == inference.FrameError {
		ev, err := inference.DecodeEvent(typ, p)
		if err != nil {
			return false, inference.Errorf(inference.CodeEngine, "worker sent a malformed error: %v", err)
		}
		if !ev.Err.Code.Retryable() {
			failed = false // the request's fault, not the worker's
		}
		return false, ev.Err
	}
	if err := ws.SetReadDeadline(time.Time{}); err != nil {
		return false, inference.Errorf(inference.CodeInternal, "clearing deadline: %v", err)
	}
	frames := 0
	for {
		switch typ {
		case inference.FrameChunk:
		case inference.FrameEnd:
			ev, err := inference.DecodeEvent(typ, p)
			if err != nil {
				return true, r.abort(out, inference.Errorf(inference.CodeEngine, "worker sent a malformed end: %v", err))
			}
			ev.End.Tier = tier
			ev.End.Worker = w.idStr
			if err := inference.WriteEnd(out, ev.End); err != nil {
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
			if err := out.Flush(); err != nil {
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
			failed = false
			ws.Close()
			return true, nil
		case inference.FrameError:
			if err := out.Write(typ, p); err == nil {
				out.Flush()
			}
			failed = false
			return true, inference.Errorf(inference.CodeEngine, "worker reported an error mid-stream")
		default:
			return true, r.abort(out, inference.Errorf(inference.CodeEngine, "worker sent frame type %d", typ))
		}
		if err := out.Write(typ, p); err != nil {
			return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
		}
		frames++
		if in.Buffered() == 0 {
			if err := out.Flush(); err != nil {
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
		}
		typ, p, err = in.Next()
		if err != nil {
			if ctx.Err() != nil {
				return true, inference.Errorf(inference.CodeCancelled, "client went away")
			}
			log().Info("worker failed mid-stream", "worker", w.id, "chunks", frames, "err", err)
			return true, r.abort(out, inference.Errorf(inference.CodeEngine, "worker failed after %d chunks: %v", frames, err))
		}
	}
}

// abort ends a response that has started with an error frame.
func (r *Router) abort(out *p2p.FrameWriter, e *inference.Error) *inference.Error {
	if err := inference.WriteError(out, e); err == nil {
		out.Flush()
	}
	return e
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
