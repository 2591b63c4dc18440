package router

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
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
	// ReserveTokens is the completion a request is assumed to reach at
	// worst, for its reservation against the client's channel (Settler
	// Reserve): the proxy cannot read a sealed request's max_tokens. 4,096
	// if zero.
	ReserveTokens int64
	// MaxPerClient bounds the requests one client has in flight here;
	// more are refused (CodeOverloaded). 1,024 if zero.
	MaxPerClient int
	// ClientShare is the share of a worker's slots (its max concurrency),
	// in percent, one client may hold, so that one client cannot take
	// every slot of a worker. 75 if zero.
	ClientShare int
	// WriteTimeout bounds each write to a client: a client that stops
	// reading is cut off after it, and its worker's request stopped,
	// instead of holding the worker until MaxDuration. One minute if zero.
	WriteTimeout time.Duration
	// Now is the clock workers are measured with; time.Now if nil.
	Now func() time.Time
}

// DefaultConfig tries three workers, waits two minutes for a first chunk,
// and fades measurements with a half-life of a minute.
func DefaultConfig(network string) Config {
	return Config{Network: network, Attempts: 3, FirstChunkTimeout: 2 * time.Minute, MaxDuration: 30 * time.Minute,
		FadeHalfLife: time.Minute}
}

// Verdicts is the attestation state the router needs; *attest.Handshaker
// implements it.
type Verdicts interface {
	// Verified returns p's live verdict, if any.
	Verified(p peer.ID) (attest.Verdict, bool)
	// Forget drops p's verdict; Attest then runs the handshake again.
	Forget(p peer.ID)
	// Attest runs the handshake with p when it has no live verdict.
	Attest(ctx context.Context, p peer.ID) (attest.Verdict, error)
}

// Pricer prices answers from workers' live offers plus this proxy's fee
// (implemented in package payments).
type Pricer interface {
	// PerMillion is what a client pays for model through this proxy to
	// worker p for a million prompt plus a million completion tokens; ok
	// is false when the router has no offer from p.
	PerMillion(p peer.ID, model string) (int64, bool)
	// Offered is worker p's price for model in its live offer.
	Offered(p peer.ID, model string) (payments.Price, bool)
	// Bill prices one answer; receipt, when non-nil, is the price the
	// worker signed, which wins over the offer (the router has checked it
	// is an offer's). ok is false when the worker's prices are unknown.
	Bill(p peer.ID, model string, t payments.Tokens, receipt *payments.Price) (payments.Bill, bool)
}

// Settler is the proxy's payment channels; nil when payments are off.
// *channels.Manager implements it.
type Settler interface {
	// Admit says whether client may be served: it has a channel open to
	// this proxy and owes no more than its credit. An error is answered as
	// CodePaymentRequired.
	Admit(client peer.ID) error
	// Payable says whether the proxy can pay worker: only workers for
	// which it is nil are routed to.
	Payable(worker peer.ID) error
	// Reserve sets amount nanoTON aside in client's channel for an
	// answer about to be served, its worst case, or refuses (answered as
	// CodePaymentRequired) when the channel's unspent deposit, less what
	// answers in flight have set aside, does not cover it. release gives
	// it back once the answer was served (after Served) or failed.
	Reserve(client peer.ID, amount uint64) (release func(), err error)
	// Served records that client owes amount nanoTON for an answer it got.
	Served(client peer.ID, amount uint64)
	// Relaying says that the End of an answer worker served, with its
	// signed receipt, is about to reach the client: the proxy owes worker
	// part nanoTON for it from now, before the client can pay for it.
	// checked follows once the router compared the receipt with what it
	// relayed: with the receipt (the proxy is paid by it, and pays worker
	// its part now), or nil when it refused it.
	Relaying(worker peer.ID, part uint64) (checked func(receipt []byte))
}

// Router routes inference requests to workers.
type Router struct {
	cfg      Config
	serveCfg inference.ServeConfig
	h        host.Host
	proto    protocol.ID
	pool     *inference.Pool // streams to workers
	verdicts Verdicts
	prices   Pricer  // nil: prices unknown, answers carry no cost
	settler  Settler // nil: nobody pays
	now      func() time.Time
	halfLife float64 // FadeHalfLife in seconds; 0: measurements never fade
	log      *slog.Logger

	mu      sync.Mutex // guards workers, order, known, ttftAll, clients and the workers' fields
	workers map[peer.ID]*worker
	clients map[peer.ID]*clientLoad // the clients with requests in flight
	order   []*worker               // insertion order, the last tie-break
	known   map[string]bool         // every model any worker ever announced
	// ttftAll is the EWMA of every first-chunk latency measured, in
	// seconds: the prior of a worker not measured yet. 0 before the first.
	ttftAll float64
	hasAll  bool
}

// New routes through h. verdicts reports and runs attestation: no request
// goes to a worker without a live verdict, and none is taken from a client
// without one (a client that opens a stream without one, having attested
// this proxy before it restarted, is attested first). prices, when not
// nil, makes the router prefer cheaper workers, honour a request's
// MaxPrice (without it, a request with a MaxPrice finds no worker) and put
// each answer's cost in its End frame. settler, when not nil, makes the
// router settle answers: clients are served while paid up, only payable
// workers are routed to, and each answer's total is owed by its client.
// Callers pass a nil interface for an absent prices or settler, not a nil
// pointer in one.
func New(cfg Config, h host.Host, verdicts Verdicts, prices Pricer, settler Settler, log *slog.Logger) *Router {
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
	if cfg.ReserveTokens <= 0 {
		cfg.ReserveTokens = 4096
	}
	if cfg.FadeHalfLife == 0 {
		cfg.FadeHalfLife = defaultFade
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = 1024
	}
	if cfg.ClientShare <= 0 || cfg.ClientShare > 100 {
		cfg.ClientShare = 75
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	sc := inference.DefaultServeConfig()
	sc.MaxDuration = cfg.MaxDuration
	return &Router{
		cfg: cfg, serveCfg: sc, h: h, verdicts: verdicts, prices: prices, settler: settler,
		now: cfg.Now, halfLife: max(cfg.FadeHalfLife.Seconds(), 0),
		pool:    inference.NewPool(h, cfg.Network, inference.DefaultPoolConfig()),
		proto:   p2p.ProtocolID(cfg.Network, inference.ProtocolName, inference.ProtocolVersion),
		log:     log.With("component", "router"),
		workers: make(map[peer.ID]*worker),
		clients: make(map[peer.ID]*clientLoad),
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

// Close closes the idle streams to workers.
func (r *Router) Close() { r.pool.Close() }

// reattest runs the handshake with worker p again: it refused a request
// sealed to the key its verdict binds, so it has a new one (it restarted,
// with its identity and new evidence). Clients find the new key in this
// proxy's directory once the handshake is done.
func (r *Router) reattest(ctx context.Context, p peer.ID) {
	r.verdicts.Forget(p)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.verdicts.Attest(ctx, p); err != nil {
		r.log.Info("attesting a worker again", "worker", p, "err", err)
	}
}

// tierOf is the tier of p's live verdict, or 0 without one.
func (r *Router) tierOf(p peer.ID) attest.Tier {
	if r.verdicts == nil {
		return 0
	}
	v, ok := r.verdicts.Verified(p)
	if !ok {
		return 0
	}
	return knownTier(v.Tier)
}

// knownTier is t, or 0 for a tier this node does not know, which it
// trusts for nothing.
func knownTier(t attest.Tier) attest.Tier {
	if t < attest.TierDev || t > attest.TierTEEGPU {
		return 0
	}
	return t
}
