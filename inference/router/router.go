// Package router is the proxy's part of the inference protocol: it keeps
// the set of workers it can reach, picks one for each request by model and
// current load, forwards the request, and relays the response frame by
// frame, flushing whenever nothing more is waiting. A worker that fails
// before its first chunk is replaced by another; one that fails after it
// ends the response with an error.
package router

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
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
	cfg      Config
	serveCfg inference.ServeConfig
	h        host.Host
	proto    protocol.ID
	pool     *inference.Pool // streams to workers
	price    Pricer          // set before serving; nil: prices unknown
	tiers    Tiers
	log      *slog.Logger

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
	sc := inference.DefaultServeConfig()
	sc.MaxDuration = cfg.MaxDuration
	return &Router{
		cfg: cfg, serveCfg: sc, h: h, tiers: tiers,
		pool:    inference.NewPool(h, cfg.Network, inference.DefaultPoolConfig()),
		proto:   p2p.ProtocolID(cfg.Network, inference.ProtocolName, inference.ProtocolVersion),
		log:     log.With("component", "router"),
		workers: make(map[peer.ID]*worker),
		known:   make(map[string]bool),
	}
}

// Register serves the inference and catalog protocols on sv.
func (r *Router) Register(sv *p2p.Service) {
	// No stream deadline: a stream carries many requests, each bounded by
	// MaxDuration in ServeRequests.
	sv.Handle(r.proto, 0, r.serveInference)
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

// Pricer reports what worker p asks for model, as one number to compare
// (nanoTON per million prompt plus completion tokens); ok is false when
// the router has no offer from p.
type Pricer func(p peer.ID, model string) (price int64, ok bool)

// SetPricer makes the router prefer cheaper workers among those that can
// take a request. Call it before the router serves.
func (r *Router) SetPricer(f Pricer) { r.price = f }

// Serving reports whether p is a worker the router sends requests to.
func (r *Router) Serving(p peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[p]
	return ok && w.up
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
func (r *Router) pick(model string, tried []peer.ID) (*worker, *inference.Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.known[model] {
		return nil, inference.Errorf(inference.CodeUnknownModel, "the model %q does not exist in this network", model)
	}
	var best *worker
	var bestPrice int64
	for _, id := range r.order {
		w := r.workers[id]
		if !w.up || slices.Contains(tried, id) || w.active >= w.maxConcurrent {
			continue
		}
		if _, ok := w.models[model]; !ok {
			continue
		}
		price := int64(-1) // unknown
		if r.price != nil {
			if p, ok := r.price(id, model); ok {
				price = p
			}
		}
		if best == nil || less(w, best, price, bestPrice) {
			best, bestPrice = w, price
		}
	}
	if best == nil {
		return nil, inference.Errorf(inference.CodeNoWorker, "no worker can take model %q now", model)
	}
	best.active++
	best.served++
	return best, nil
}

// less orders workers with free capacity: the cheaper first when both
// prices are known (the cheapest offer sells first), then by load
// (active/max, compared without division), then by requests served.
func less(a, b *worker, pa, pb int64) bool {
	if pa >= 0 && pb >= 0 && pa != pb {
		return pa < pb
	}
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
	check := func() *inference.Error {
		if _, ok := r.tiers(client); !ok {
			return inference.Errorf(inference.CodeUnattested, "proxy has no attestation verdict for %s", client)
		}
		return nil
	}
	return inference.ServeRequests(ctx, s, r.serveCfg, check, func(ctx context.Context, req *inference.Request, out *p2p.FrameWriter) error {
		return r.route(ctx, client, req, out)
	})
}

// route answers one request on out: from a worker, or with an error.
func (r *Router) route(ctx context.Context, client peer.ID, req *inference.Request, out *p2p.FrameWriter) error {
	// Built only when something is logged: With formats its attributes.
	log := func() *slog.Logger { return r.log.With("request", req.ID, "model", req.Model, "peer", client) }
	var tried []peer.ID
	var last *inference.Error
	for attempt := 0; attempt < r.cfg.Attempts; attempt++ {
		w, perr := r.pick(req.Model, tried)
		if perr != nil {
			if last == nil || perr.Code == inference.CodeUnknownModel {
				last = perr
			}
			break
		}
		tried = append(tried, w.id)
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
	if err := inference.WriteError(out, last); err != nil {
		return err
	}
	return out.Flush()
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
	// The first frame must come within FirstChunkTimeout; past it the
	// attempt is abandoned (its stream reset) and the next worker tried.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut atomic.Bool
	timer := time.AfterFunc(r.cfg.FirstChunkTimeout, func() { timedOut.Store(true); cancel() })
	call, err := r.pool.Send(actx, w.id, req)
	timer.Stop()
	if err != nil {
		switch {
		case timedOut.Load():
			return false, inference.Errorf(inference.CodeTimeout, "worker sent nothing within %s", r.cfg.FirstChunkTimeout)
		case ctx.Err() != nil:
			return false, inference.Errorf(inference.CodeCancelled, "client went away")
		}
		if r.h.Network().Connectedness(w.id) != network.Connected {
			r.WorkerDown(w.id)
		}
		return false, inference.Errorf(inference.CodeEngine, "worker failed before answering: %v", err)
	}
	defer call.Done()
	typ, p, err := call.Next()
	if err != nil {
		return false, inference.Errorf(inference.CodeInternal, "reading the first frame: %v", err)
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
	frames := 0
	for {
		switch typ {
		case inference.FrameChunk:
		case inference.FrameEnd:
			end, err := inference.DecodeEnd(p)
			if err != nil {
				return true, r.abort(out, inference.Errorf(inference.CodeEngine, "worker sent a malformed end: %v", err))
			}
			end.Tier = tier
			end.Worker = w.idStr
			if err := inference.WriteEnd(out, end); err != nil {
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
			if err := out.Flush(); err != nil {
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
			failed = false
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
		if !call.Buffered() {
			if err := out.Flush(); err != nil {
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
		}
		typ, p, err = call.Next()
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

// Close closes the idle streams to workers.
func (r *Router) Close() { r.pool.Close() }
