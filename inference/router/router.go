package router

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
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
	// ChunkTimeout bounds the gap between a worker's frames once it has
	// started: a worker silent for longer is cut off and the response ends
	// with upstream_timeout. 0 means one minute.
	ChunkTimeout time.Duration
	// FadeHalfLife is how fast a worker's measurements fade back to the
	// prior while it is not observed (see the package doc); 0 means one
	// minute, a negative value that they never fade.
	FadeHalfLife time.Duration
	// Now is the clock workers are measured with; time.Now if nil.
	Now func() time.Time
}

// DefaultConfig tries three workers, waits two minutes for a first chunk,
// and fades measurements with a half-life of a minute.
func DefaultConfig(network string) Config {
	return Config{Network: network, Attempts: 3, FirstChunkTimeout: 2 * time.Minute, MaxDuration: 30 * time.Minute,
		FadeHalfLife: time.Minute}
}

// Tiers tells the router what it verified about a peer: the trust tier of
// its live attestation verdict, by name (attest.Tier.String); ok is false
// for a peer without one.
type Tiers func(peer.ID) (tier string, ok bool)

// Router routes inference requests to workers.
type Router struct {
	cfg      Config
	serveCfg inference.ServeConfig
	h        host.Host
	proto    protocol.ID
	pool     *inference.Pool // streams to workers
	price    Pricer          // set before serving; nil: prices unknown
	bill     Biller          // set before serving; nil: answers carry no cost
	pay      *Payments       // set before serving; nil: nobody pays
	attest   Attester        // set before serving; nil: peers must have attested first
	tiers    Tiers
	now      func() time.Time
	halfLife float64 // FadeHalfLife in seconds; 0: measurements never fade
	log      *slog.Logger

	mu      sync.Mutex // guards workers, order, known, ttftAll and the workers' fields
	workers map[peer.ID]*worker
	order   []*worker       // insertion order, the last tie-break
	known   map[string]bool // every model any worker ever announced
	// ttftAll is the EWMA of every first-chunk latency measured, in
	// seconds: the prior of a worker not measured yet. 0 before the first.
	ttftAll float64
	hasAll  bool
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
	receipts int // receipts checked, to sample signatures
	// Measurements, as of observed (zero before the first): EWMAs of the
	// time to first chunk, in seconds, and of outcomes (1 success, 0
	// failure; a worker starts at 1).
	ttft     float64
	hasTTFT  bool
	success  float64
	observed time.Time
}

// The measurement model; the package doc gives the formula.
const (
	ttftAlpha    = 0.25                 // weight of a new first-chunk latency in the EWMA
	successAlpha = 0.25                 // weight of a new outcome in the EWMA
	latencyBase  = 0.05                 // seconds added to every latency, so near-zero ones compare sanely
	minSuccess   = 0.05                 // the floor of the success ratio in the score
	defaultFade  = time.Minute          // Config.FadeHalfLife when zero
	unknownPrice = int64(math.MinInt64) // a price the router has no offer for
)

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
	if cfg.ChunkTimeout <= 0 {
		cfg.ChunkTimeout = time.Minute
	}
	if cfg.FadeHalfLife == 0 {
		cfg.FadeHalfLife = defaultFade
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sc := inference.DefaultServeConfig()
	sc.MaxDuration = cfg.MaxDuration
	return &Router{
		cfg: cfg, serveCfg: sc, h: h, tiers: tiers, now: cfg.Now, halfLife: max(cfg.FadeHalfLife.Seconds(), 0),
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

// Pricer reports what worker p asks for model, as one number to compare
// (nanoTON per million prompt plus completion tokens); ok is false when
// the router has no offer from p.
type Pricer func(p peer.ID, model string) (price int64, ok bool)

// SetPricer makes the router prefer cheaper workers among those that can
// take a request, and lets it honour a request's MaxPrice: without one, no
// price is known and a request with a MaxPrice finds no worker. Call it
// before the router serves.
func (r *Router) SetPricer(f Pricer) { r.price = f }

// Biller prices one answer: what the worker's prices and the proxy's fee
// make of the usage it reported. price is the one the worker's receipt
// names, nil without a receipt (then the worker's offer says). ok is false
// when the worker's prices are unknown.
type Biller func(p peer.ID, model string, u inference.Usage, price *payments.Price) (c inference.Cost, ok bool)

// SetBiller makes the router put each answer's cost in its End frame.
func (r *Router) SetBiller(f Biller) { r.bill = f }

// Attester runs the attestation handshake with p, giving both sides a
// verdict.
type Attester func(ctx context.Context, p peer.ID) error

// SetAttester makes the router attest a client that opens a stream without
// a verdict here, instead of refusing it: a client that attested this
// proxy before it restarted keeps its own verdict and does not attest
// again by itself. Call it before the router serves.
func (r *Router) SetAttester(f Attester) { r.attest = f }

// attested reports whether p has a verdict, attesting it first if it has
// none and the router can.
func (r *Router) attested(ctx context.Context, p peer.ID) bool {
	if _, ok := r.tiers(p); ok {
		return true
	}
	if r.attest == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.attest(ctx, p); err != nil {
		r.log.Info("attesting a peer without a verdict", "peer", p, "err", err)
		return false
	}
	_, ok := r.tiers(p)
	return ok
}

// Payments is how a router settles with clients and workers.
type Payments struct {
	// Admit is asked before routing whether client may be served: it has
	// a channel open to this proxy and owes no more than its credit.
	Admit func(client peer.ID) *inference.Error
	// Payable says whether the proxy can pay worker: only such workers
	// are routed to.
	Payable func(worker peer.ID) bool
	// Served is told of each answer a client got whose receipt (nil for
	// none) agreed with what was relayed, with its cost.
	Served func(client peer.ID, c inference.Cost, receipt []byte)
}

// SetPayments makes the router settle answers; call it before serving.
func (r *Router) SetPayments(p *Payments) { r.pay = p }

// checkReceipt checks a worker's signed receipt against what the router
// relayed: request, streamed content, model, tokens, worker and proxy. The
// price it names is checked by whoever settles the payment, against the
// worker's offer. The signature, which costs some fifty times the rest, is
// verified on a worker's first receipt and every verifyEvery-th after it:
// a worker that signs badly is caught within verifyEvery answers, and the
// client verifies every one.
func (r *Router) checkReceipt(w *worker, req *inference.Request, end *inference.End, content hash.Hash) error {
	r.mu.Lock()
	verify := w.receipts%verifyEvery == 0
	w.receipts++
	r.mu.Unlock()
	open := payments.Open
	if verify {
		open = payments.Verify
	}
	got, err := open(end.Receipt, w.id)
	if err != nil {
		return err
	}
	want := &payments.Receipt{
		RequestID:   req.ID,
		RequestHash: payments.Hash(req.Body),
		Model:       req.Model,
		Tokens: payments.Tokens{Prompt: end.Usage.PromptTokens, Cached: min(end.Usage.CachedTokens, end.Usage.PromptTokens),
			Completion: end.Usage.CompletionTokens},
		Price:  got.Price,
		Worker: w.id,
		Proxy:  r.h.ID(),
	}
	content.Sum(want.ResponseHash[:0])
	return payments.Check(got, want)
}

// verifyEvery is how often the router verifies a worker's receipt
// signature.
const verifyEvery = 16

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

// Catalog is the union of the models of reachable workers (with payments,
// of those the proxy can pay: it routes to no other).
func (r *Router) Catalog() *inference.Catalog {
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := make(map[string]*inference.Model)
	for _, w := range r.workers {
		if !w.up || (r.pay != nil && !r.pay.Payable(w.id)) {
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
	if !r.attested(ctx, s.Conn().RemotePeer()) {
		return inference.ErrUnattestedPeer
	}
	return inference.ServeCatalog(s, r.Catalog())
}

// pick chooses the worker for a request for model that was not tried yet,
// and counts the request against it: among reachable workers with free
// capacity, whose verified tier is at least minTier (0: any tier) and
// whose price is at most maxPrice (0: any price), the one first in the
// order the package doc gives. It runs on every request: one pass over the
// workers, one clock read, no allocation.
func (r *Router) pick(model string, maxPrice int64, minTier attest.Tier, tried []peer.ID) (*worker, *inference.Error) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.known[model] {
		return nil, inference.Errorf(inference.CodeUnknownModel, "the model %q does not exist in this network", model)
	}
	var best candidate
	unpayable := false // a worker was passed over for want of a payment channel
	for _, w := range r.order {
		if !w.up || w.active >= w.maxConcurrent || slices.Contains(tried, w.id) {
			continue
		}
		if _, ok := w.models[model]; !ok {
			continue
		}
		if minTier > 0 && r.tierLocked(w.id) < minTier {
			continue
		}
		if r.pay != nil && !r.pay.Payable(w.id) {
			unpayable = true
			continue
		}
		price := r.priceLocked(w.id, model)
		if maxPrice > 0 && (price == unknownPrice || price > maxPrice) {
			continue
		}
		c := candidate{w: w, price: price, score: r.scoreLocked(w, now)}
		if best.w == nil || c.before(best) {
			best = c
		}
	}
	if best.w == nil {
		if minTier > 0 {
			if e := r.untrustedLocked(model, minTier); e != nil {
				return nil, e
			}
		}
		if maxPrice > 0 {
			if e := r.tooExpensiveLocked(model, maxPrice, minTier); e != nil {
				return nil, e
			}
		}
		if unpayable {
			return nil, inference.Errorf(inference.CodeNoWorker, "no worker this proxy has a payment channel to can take model %q now", model)
		}
		return nil, inference.Errorf(inference.CodeNoWorker, "no worker can take model %q now", model)
	}
	best.w.active++
	best.w.served++
	return best.w, nil
}

// priceLocked is what p asks for model, or unknownPrice.
func (r *Router) priceLocked(p peer.ID, model string) int64 {
	if r.price == nil {
		return unknownPrice
	}
	if v, ok := r.price(p, model); ok {
		return v
	}
	return unknownPrice
}

// tierLocked is the tier of p's live verdict, or 0 without one. Known
// tier names cost no allocation.
func (r *Router) tierLocked(p peer.ID) attest.Tier {
	if r.tiers == nil {
		return 0
	}
	name, ok := r.tiers(p)
	if !ok {
		return 0
	}
	t, err := attest.ParseTier(name)
	if err != nil {
		return 0
	}
	return t
}

// untrustedLocked explains a failed pick with a minimum tier: nil when
// some reachable worker serving model is trusted enough (it is busy or was
// tried, so the request failed for another reason) or none has a live
// verdict at all, else the error naming the tier wanted and the best one
// available.
func (r *Router) untrustedLocked(model string, minTier attest.Tier) *inference.Error {
	var best attest.Tier
	for _, w := range r.order {
		if _, ok := w.models[model]; !ok || !w.up {
			continue
		}
		best = max(best, r.tierLocked(w.id))
	}
	if best == 0 || best >= minTier {
		return nil
	}
	return inference.Errorf(inference.CodeUntrusted, "no worker serves model %q at trust tier %s or above (best available: %s)",
		model, minTier, best)
}

// tooExpensiveLocked explains a failed pick with a price ceiling, among
// the workers trusted enough for minTier: nil when some reachable one
// serving model is within it (it is busy or was tried, so the request
// failed for another reason), else the error naming the cheapest price
// on offer.
func (r *Router) tooExpensiveLocked(model string, maxPrice int64, minTier attest.Tier) *inference.Error {
	cheapest := unknownPrice
	for _, w := range r.order {
		if _, ok := w.models[model]; !ok || !w.up {
			continue
		}
		if minTier > 0 && r.tierLocked(w.id) < minTier {
			continue
		}
		price := r.priceLocked(w.id, model)
		if price == unknownPrice {
			continue
		}
		if price <= maxPrice {
			return nil
		}
		if cheapest == unknownPrice || price < cheapest {
			cheapest = price
		}
	}
	e := inference.Errorf(inference.CodeTooExpensive, "no worker offers model %q at or under %d nanoTON per million tokens", model, maxPrice)
	if cheapest == unknownPrice {
		e.Message += " (no worker's price for it is known)"
	} else {
		e.Message += fmt.Sprintf(" (cheapest: %d)", cheapest)
	}
	return e
}

// candidate is a worker that can take a request, with what pick compares.
type candidate struct {
	w     *worker
	price int64 // unknownPrice when unknown
	score float64
}

// before orders candidates: the cheaper first when both prices are known
// (the cheapest offer sells first), then the lower score, then the one
// that served fewer requests. pick keeps the earlier of equals, so
// insertion order breaks the last tie.
func (c candidate) before(b candidate) bool {
	if c.price != unknownPrice && b.price != unknownPrice && c.price != b.price {
		return c.price < b.price
	}
	if c.score != b.score {
		return c.score < b.score
	}
	return c.w.served < b.w.served
}

// scoreLocked estimates the wait for a first chunk from w, in seconds:
// its first-chunk latency, stretched by its load and by the retries its
// failures cost. Lower is better.
func (r *Router) scoreLocked(w *worker, now time.Time) float64 {
	ttft, success := r.estimateLocked(w, now)
	load := float64(w.active) / float64(w.maxConcurrent)
	return (ttft + latencyBase) * (1 + load) / max(success, minSuccess)
}

// estimateLocked is w's first-chunk latency and success ratio as of now:
// its measurements, faded towards the prior for the time since they were
// made. A worker never measured gets the prior: the latency of all
// workers, and a success ratio of 1.
func (r *Router) estimateLocked(w *worker, now time.Time) (ttft, success float64) {
	prior := r.ttftAll
	if w.observed.IsZero() {
		return prior, 1
	}
	k := r.keptLocked(w, now)
	ttft = prior
	if w.hasTTFT {
		ttft = prior + (w.ttft-prior)*k
	}
	return ttft, 1 - (1-w.success)*k
}

// keptLocked is the weight w's measurements keep at now: halved every
// half-life since they were made.
func (r *Router) keptLocked(w *worker, now time.Time) float64 {
	age := now.Sub(w.observed)
	if age <= 0 || r.halfLife == 0 {
		return 1
	}
	return math.Exp2(-age.Seconds() / r.halfLife)
}

// foldLocked makes w's faded estimate its new state, before a new
// measurement is added to it.
func (r *Router) foldLocked(w *worker, now time.Time) {
	if w.observed.IsZero() {
		return
	}
	ttft, success := r.estimateLocked(w, now)
	if w.hasTTFT {
		w.ttft = ttft
	}
	w.success = success
}

// firstChunk records that w sent its first frame d after the request.
func (r *Router) firstChunk(w *worker, d time.Duration) {
	now := r.now()
	s := max(d.Seconds(), 0)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.foldLocked(w, now)
	if w.hasTTFT {
		w.ttft += ttftAlpha * (s - w.ttft)
	} else {
		w.ttft, w.hasTTFT = s, true
	}
	if r.hasAll {
		r.ttftAll += ttftAlpha * (s - r.ttftAll)
	} else {
		r.ttftAll, r.hasAll = s, true
	}
	w.observed = now
}

// outcome is how an attempt on a worker went, as far as the worker is
// concerned.
type outcome uint8

const (
	outcomeNone    outcome = iota // not the worker's doing: the client left, or the request was bad
	outcomeSuccess                // the response ended with End
	outcomeFailure                // the worker failed, before its first chunk or after
)

// release ends an attempt on w and records its outcome.
func (r *Router) release(w *worker, o outcome) {
	var now time.Time
	if o != outcomeNone {
		now = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w.active--
	if o == outcomeNone {
		return
	}
	r.foldLocked(w, now)
	x := 1.0
	if o == outcomeFailure {
		x = 0
		w.failures++
	}
	w.success += successAlpha * (x - w.success)
	w.observed = now
}

// WorkerStats is what the router knows of one worker, for operators.
type WorkerStats struct {
	Peer          peer.ID
	Up            bool             // the router sends it requests
	Models        []string         // sorted
	Prices        map[string]int64 // per model, nanoTON per million prompt plus completion tokens, where an offer is known
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
			Success: w.success, Observed: w.observed,
		}
		if w.hasTTFT {
			st.TTFT = time.Duration(w.ttft * float64(time.Second))
		}
		for m := range w.models {
			st.Models = append(st.Models, m)
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

func (r *Router) serveInference(ctx context.Context, s network.Stream) error {
	client := s.Conn().RemotePeer()
	r.attested(ctx, client)
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
	// The max price and the minimum tier are the proxy's to honour;
	// workers get the request without them, as they did before requests
	// carried them.
	if r.pay != nil {
		if e := r.pay.Admit(client); e != nil {
			if err := inference.WriteError(out, e); err != nil {
				return err
			}
			return out.Flush()
		}
	}
	fwd := req
	if req.MaxPrice != 0 || req.MinTier != 0 {
		c := *req
		c.MaxPrice, c.MinTier = 0, 0
		fwd = &c
	}
	var tried []peer.ID
	var last *inference.Error
	for attempt := 0; attempt < r.cfg.Attempts; attempt++ {
		w, perr := r.pick(req.Model, req.MaxPrice, req.MinTier, tried)
		if perr != nil {
			if last == nil || perr.Code == inference.CodeUnknownModel {
				last = perr
			}
			break
		}
		tried = append(tried, w.id)
		started, e := r.forward(ctx, client, w, fwd, req.MinTier, out, log)
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
		if e.Code == inference.CodeUntrusted {
			// Its verdict changed since pick: another worker may do, and
			// this attempt does not count as one.
			attempt--
			continue
		}
		if e.Code == inference.CodePaymentRequired {
			// The worker says this proxy owes it: not the client's
			// doing, and another worker may do.
			log().Warn("worker refuses this proxy for payment", "worker", w.id, "err", e.Message)
			last = inference.Errorf(inference.CodeNoWorker, "a worker refused this proxy: %s", e.Message)
			continue
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
// whether anything reached the client; e is the failure, if any. It
// measures w: the time to its first frame, and whether it failed. It
// checks w's verdict once more, just before sending: a worker whose tier
// fell under minTier since pick gets nothing, and e is CodeUntrusted.
func (r *Router) forward(ctx context.Context, client peer.ID, w *worker, req *inference.Request, minTier attest.Tier, out *p2p.FrameWriter, log func() *slog.Logger) (started bool, e *inference.Error) {
	o := outcomeFailure
	defer func() { r.release(w, o) }()

	tier, ok := r.tiers(w.id)
	if !ok {
		return false, inference.Errorf(inference.CodeUnattested, "worker %s has no live attestation verdict", w.id)
	}
	if minTier > 0 {
		if t, err := attest.ParseTier(tier); err != nil || t < minTier {
			o = outcomeNone
			return false, inference.Errorf(inference.CodeUntrusted, "worker %s is at trust tier %q, under %s", w.id, tier, minTier)
		}
	}
	// The first frame must come within FirstChunkTimeout; past it the
	// attempt is abandoned (its stream reset) and the next worker tried.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut atomic.Bool
	timer := time.AfterFunc(r.cfg.FirstChunkTimeout, func() { timedOut.Store(true); cancel() })
	sent := r.now()
	call, err := r.pool.Send(actx, w.id, req)
	timer.Stop()
	if err != nil {
		switch {
		case timedOut.Load():
			return false, inference.Errorf(inference.CodeTimeout, "worker sent nothing within %s", r.cfg.FirstChunkTimeout)
		case ctx.Err() != nil:
			o = outcomeNone
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
			o = outcomeNone // the request's fault, not the worker's
		}
		return false, ev.Err
	}
	r.firstChunk(w, r.now().Sub(sent))
	// From now on each frame must follow the last within ChunkTimeout.
	var stalled atomic.Bool
	gap := time.AfterFunc(r.cfg.ChunkTimeout, func() { stalled.Store(true); cancel() })
	defer gap.Stop()
	frames := 0
	content := sha256.New() // of the streamed text, to check the receipt
	for {
		switch typ {
		case inference.FrameChunk:
			if text, _, err := inference.DecodeChunk(p); err == nil {
				content.Write(text)
			}
		case inference.FrameEnd:
			end, err := inference.DecodeEnd(p)
			if err != nil {
				return true, r.abort(out, inference.Errorf(inference.CodeEngine, "worker sent a malformed end: %v", err))
			}
			o = outcomeSuccess
			end.Tier = tier
			end.Worker = w.idStr
			end.Cost = nil // the proxy prices answers, not the worker
			if r.bill != nil {
				// The receipt's price, which the client pays by; checked
				// against the offer by the biller.
				var price *payments.Price
				if end.Receipt != nil {
					if rc, err := payments.Open(end.Receipt, w.id); err == nil {
						price = &rc.Price
					}
				}
				if c, ok := r.bill(w.id, req.Model, end.Usage, price); ok {
					end.Cost = &c
				}
			}
			if err := inference.WriteEnd(out, end); err != nil {
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
			if err := out.Flush(); err != nil {
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
			// Checked after the client has its answer, off its latency: a
			// worker whose receipt disagrees with what it streamed is
			// marked failed, and routed to less.
			if end.Receipt != nil {
				if err := r.checkReceipt(w, req, end, content); err != nil {
					o = outcomeFailure
					log().Warn("worker's receipt refused", "worker", w.id, "err", err)
					return true, nil // the client refuses it too, and pays nothing
				}
			}
			if r.pay != nil && end.Cost != nil {
				r.pay.Served(client, *end.Cost, end.Receipt)
			}
			return true, nil
		case inference.FrameError:
			if ev, err := inference.DecodeEvent(typ, p); err == nil && !ev.Err.Code.Retryable() {
				o = outcomeNone // not the worker failing: the request, or its requester
			}
			if err := out.Write(typ, p); err == nil {
				out.Flush()
			}
			return true, inference.Errorf(inference.CodeEngine, "worker reported an error mid-stream")
		default:
			return true, r.abort(out, inference.Errorf(inference.CodeEngine, "worker sent frame type %d", typ))
		}
		if err := out.Write(typ, p); err != nil {
			o = outcomeNone
			return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
		}
		frames++
		if !call.Buffered() {
			if err := out.Flush(); err != nil {
				o = outcomeNone
				return true, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
		}
		gap.Reset(r.cfg.ChunkTimeout)
		typ, p, err = call.Next()
		if err != nil {
			if ctx.Err() != nil {
				o = outcomeNone
				return true, inference.Errorf(inference.CodeCancelled, "client went away")
			}
			if stalled.Load() {
				log().Info("worker stalled mid-stream", "worker", w.id, "chunks", frames, "gap", r.cfg.ChunkTimeout)
				return true, r.abort(out, inference.Errorf(inference.CodeTimeout, "worker sent nothing for %s after %d chunks", r.cfg.ChunkTimeout, frames))
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
