// Package node assembles a role from the domain packages: it is the only
// package that imports them all, and the only one cmd and testnet import.
// The one switch on Role lives here.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/net/netutil"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/chain/liteclient"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/backend/openai"
	"github.com/cocoon-mesh/cocoon/inference/backend/sim"
	"github.com/cocoon-mesh/cocoon/inference/gateway"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Node is one running Cocoon node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	backend inference.Backend // workers; set by New or WithBackend

	h      host.Host
	sv     *p2p.Service
	hs     *attest.Handshaker
	kinds  *attest.Kinds // the evidence kinds this node accepts from peers
	keeper *discovery.Keeper
	worker *worker.Server
	router *router.Router
	gw     *gateway.Server
	up     *gateway.Proxies
	book   *offers.Book
	gossip *offers.Gossip
	// newOffer wakes followOffers when a worker's offer enters the book.
	newOffer chan struct{}
	// joined wakes announce when a peer joins the offers topic.
	joined chan struct{}
	http   *http.Server

	chain    chain.Chain        // set by WithChain, or a lite client
	lite     *liteclient.Client // the lite client this node made, if any
	registry *registry.Reader   // nil without a root contract
	dht      *dht.DHT           // nil for a client or worker with no bootstrap peer
	slots    *p2p.Reservations  // a private worker's relay slots; nil otherwise
	pay      *payState          // nil without payments
	// engineWait is set when a worker's engine did not answer at start;
	// awaitEngine reports its warm-up.
	engineWait bool
	admin      *http.Server // the admin API; nil when admin.addr is empty
	adminURL   string
	requests   *metrics.Requests // what the node measured of the requests it sent or served, for /metrics
	ln         net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Option changes how New assembles a node.
type Option func(*Node)

// WithBackend makes a worker serve b instead of the backend its config
// names. Tests and benchmarks use it to put fakes behind a real worker.
func WithBackend(b inference.Backend) Option { return func(n *Node) { n.backend = b } }

// New checks cfg and prepares a node; it starts nothing.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log.With("role", cfg.Role.String()), newOffer: make(chan struct{}, 1), joined: make(chan struct{}, 1),
		requests: metrics.NewRequests(cfg.Role.String())}
	for _, o := range opts {
		o(n)
	}
	if cfg.Role == RoleWorker && n.backend == nil {
		b, err := newBackend(cfg.Worker, n.log)
		if err != nil {
			return nil, err
		}
		n.backend = b
	}
	return n, nil
}

func newBackend(cfg WorkerConfig, log *slog.Logger) (inference.Backend, error) {
	switch cfg.Backend {
	case "sim":
		return sim.New(cfg.Sim.Sim())
	case "openai":
		return openai.New(openai.Config{BaseURL: cfg.OpenAI.URL, APIKey: cfg.OpenAI.APIKey, Models: cfg.OpenAI.Models}, log)
	}
	return nil, fmt.Errorf("worker.backend: %q: want sim or openai", cfg.Backend)
}

// Start brings the node up: identity, host, handshake, the role's
// services, and for a client the HTTP API. Close undoes it.
func (n *Node) Start(ctx context.Context) error {
	key, err := p2p.LoadOrCreateIdentity(n.cfg.DataDir)
	if err != nil {
		return err
	}
	h, err := p2p.NewHost(n.cfg.P2P, key)
	if err != nil {
		return err
	}
	n.h = h
	n.log = n.log.With("self", h.ID()) // "peer" is the other side, in every log line
	n.sv = p2p.NewService(h, n.log)
	issuer, err := n.newIssuer()
	if err != nil {
		n.Close()
		return err
	}
	if n.kinds, err = n.newKinds(); err != nil {
		n.Close()
		return err
	}
	n.hs = attest.NewHandshaker(h, issuer, n.kinds,
		attest.Config{Network: n.cfg.Network, Validity: n.cfg.Attest.Validity.D()}, n.log)
	n.hs.Register(n.sv)
	if _, err := n.hs.Evidence(ctx); err != nil {
		n.Close()
		return err
	}
	if err := n.startDiscovery(ctx); err != nil {
		n.Close()
		return err
	}
	if err := n.startPayments(); err != nil {
		n.Close()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel

	if n.cfg.Role == RoleWorker || n.cfg.Role == RoleProxy {
		n.book = offers.NewBook(nil) // before the router, which reads prices from it
	}
	var roleErr error
	switch n.cfg.Role {
	case RoleWorker:
		roleErr = n.startWorker(ctx, h)
	case RoleProxy:
		roleErr = n.startProxy(h)
	case RoleClient:
		roleErr = n.startClient(h)
	}
	if roleErr != nil {
		n.Close()
		return roleErr
	}
	if n.book != nil {
		gc := offers.GossipConfig{Network: n.cfg.Network, Accepted: n.offerAccepted, PeerJoined: n.peerJoined}
		if n.gossip, err = offers.StartGossip(h, gc, n.book, n.log); err != nil {
			n.Close()
			return err
		}
		n.wg.Go(func() { n.announce(runCtx, key) })
	}
	if n.cfg.Role == RoleProxy {
		n.wg.Go(func() { n.followOffers(runCtx) })
	}
	if n.keeper != nil {
		n.wg.Go(func() { n.keeper.Run(runCtx) })
	}
	if n.engineWait {
		n.wg.Go(func() { n.awaitEngine(runCtx) })
	}
	if n.pay != nil && n.cfg.Role != RoleWorker {
		n.wg.Go(func() { n.keepChannels(runCtx) })
	}
	if n.dht != nil {
		n.wg.Go(func() { n.lookup(runCtx) })
	}
	if err := n.startAdmin(); err != nil {
		n.Close()
		return err
	}
	n.log.Info("node started", "network", n.cfg.Network, "addrs", n.Addrs(), "admin", n.adminURL)
	return nil
}

func (n *Node) attestedProxies() []peer.ID {
	var out []peer.ID
	for _, p := range n.keeper.Up() {
		if _, ok := n.hs.Verified(p); !ok {
			continue
		}
		// With payments, a proxy is used once a channel to it is open.
		if n.pay != nil && n.pay.m.Payable(p) != nil {
			continue
		}
		out = append(out, p)
	}
	return out
}

// awaitEngine reports a worker's engine warming up: every 10 s while it
// does not answer, and once when it does, with how long it took. Offers
// go out as soon as it answers (announce retries on its own).
func (n *Node) awaitEngine(ctx context.Context) {
	start := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := start
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := n.worker.Catalog(cctx)
		cancel()
		if err == nil {
			var ids []string
			for _, m := range c.Models {
				ids = append(ids, m.ID)
			}
			n.log.Info("engine ready", "models", strings.Join(ids, ","), "waited", time.Since(start).Round(time.Second))
			n.peerJoined("") // announce the offer now
			return
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			n.log.Info("still waiting for the engine", "waited", time.Since(start).Round(time.Second), "err", err)
		}
	}
}

// attest runs the attestation handshake with p, for a peer that reached
// this node without a verdict here.
func (n *Node) attest(ctx context.Context, p peer.ID) error {
	_, err := n.hs.Attest(ctx, p)
	return err
}

// attestOnly is a keeper hook for peers that need only be attested: a
// worker's proxies, a client's proxies.
func (n *Node) attestOnly() discovery.Hooks {
	return discovery.Hooks{
		Up: func(ctx context.Context, p peer.ID) error {
			_, err := n.hs.Attest(ctx, p)
			return err
		},
		Down: func(peer.ID) {},
	}
}

// relayedThrough is the keeper hook of a private worker: it attests each
// proxy and holds a slot on it, so that others reach the worker through
// it. A new slot is announced in the worker's next offer, soon.
func (n *Node) relayedThrough() discovery.Hooks {
	n.slots = p2p.NewReservations(n.h, nil)
	return discovery.Hooks{
		Up: func(ctx context.Context, p peer.ID) error {
			if _, err := n.hs.Attest(ctx, p); err != nil {
				return err
			}
			before := len(n.slots.Addrs())
			if err := n.slots.Reserve(ctx, peer.AddrInfo{ID: p}); err != nil {
				return err
			}
			if len(n.slots.Addrs()) != before {
				n.peerJoined(p) // announce the new addresses
			}
			return nil
		},
		Down: func(p peer.ID) { n.slots.Drop(p) },
	}
}

func (n *Node) startWorker(ctx context.Context, h host.Host) error {
	verified := func(p peer.ID) bool { _, ok := n.hs.Verified(p); return ok }
	price := payments.Price{Prompt: n.cfg.Worker.Price.Prompt, Cached: n.cfg.Worker.Price.Cached, Completion: n.cfg.Worker.Price.Completion}
	receipts := &worker.Receipts{Key: h.Peerstore().PrivKey(h.ID()), Price: func(string) payments.Price { return price }}
	admit, served := n.workerPayments()
	n.worker = worker.New(worker.Config{Network: n.cfg.Network, MaxConcurrent: n.cfg.Worker.MaxConcurrent, Receipts: receipts,
		Admit: admit, Served: served, Attest: n.attest}, h.ID(), observeBackend(n.backend, n.requests), verified, n.log)
	n.worker.Register(n.sv)
	if _, err := n.worker.Catalog(ctx); err != nil {
		n.log.Warn("engine not answering yet; waiting for it (a model may still be loading)", "err", err)
		n.engineWait = true
	}
	proxies, err := discovery.ParseAddrs(n.cfg.Worker.Proxies)
	if err != nil {
		return fmt.Errorf("worker.proxies: %w", err)
	}
	// The root contract's proxies and those found in the DHT join these.
	hooks := n.attestOnly()
	if n.cfg.P2P.Private {
		hooks = n.relayedThrough()
	}
	n.keeper = discovery.NewKeeper(h, append(proxies, n.bootstrapPeers()...), n.cfg.Worker.CheckInterval.D(), hooks, n.log)
	return nil
}

func (n *Node) startProxy(h host.Host) error {
	rc := router.DefaultConfig(n.cfg.Network)
	rc.Attempts = n.cfg.Proxy.Attempts
	rc.FirstChunkTimeout = n.cfg.Proxy.FirstChunkTimeout.D()
	rc.ChunkTimeout = n.cfg.Proxy.ChunkTimeout.D()
	n.router = router.New(rc, h, func(p peer.ID) (string, bool) {
		v, ok := n.hs.Verified(p)
		return v.Tier.String(), ok
	}, n.log)
	n.router.SetPricer(n.offerPrice)
	n.router.SetBiller(n.bill)
	n.router.SetPayments(n.proxyPayments())
	n.router.SetAttester(n.attest)
	n.router.Register(n.sv)
	workers, err := discovery.ParseAddrs(n.cfg.Proxy.Workers)
	if err != nil {
		return fmt.Errorf("proxy.workers: %w", err)
	}
	catalog := p2p.ProtocolID(n.cfg.Network, inference.CatalogProtocolName, inference.CatalogProtocolVersion)
	n.keeper = discovery.NewKeeper(h, workers, n.cfg.Proxy.CheckInterval.D(), discovery.Hooks{
		Up: func(ctx context.Context, p peer.ID) error {
			if _, err := n.hs.Attest(ctx, p); err != nil {
				return err
			}
			c, err := inference.FetchCatalog(ctx, h, p, catalog)
			if err != nil {
				return err
			}
			n.router.SetWorker(p, c)
			return nil
		},
		Down: n.router.WorkerDown,
	}, n.log)
	return nil
}

func (n *Node) startClient(h host.Host) error {
	proxies, err := discovery.ParseAddrs(n.cfg.Client.Proxies)
	if err != nil {
		return fmt.Errorf("client.proxies: %w", err)
	}
	n.keeper = discovery.NewKeeper(h, append(proxies, n.bootstrapPeers()...), n.cfg.Client.CheckInterval.D(), n.attestOnly(), n.log)
	n.up = gateway.NewProxies(h, n.cfg.Network, n.attestedProxies)
	gc := gateway.Config{APIKey: n.cfg.Client.APIKey, FirstByteTimeout: n.cfg.Client.RequestTimeout.D(),
		MaxPrice: n.cfg.Client.MaxPrice, MinTier: n.cfg.Client.MinTier()}
	if n.pay != nil {
		gc.Admit, gc.Paid = n.clientAdmit, n.clientPaid
	}
	if n.registry != nil {
		gc.MaxFeePPM = func() int64 {
			if reg := n.registryNow(); reg != nil {
				return int64(reg.Fees.ProxyFeePPM)
			}
			return -1
		}
	}
	n.gw = gateway.New(gc, observeUpstream(n.up, n.requests), n.log)
	ln, err := net.Listen("tcp", n.cfg.Client.APIAddr)
	if err != nil {
		return fmt.Errorf("client.api_addr: %w", err)
	}
	// Connections past the cap wait in the kernel's backlog until one
	// closes; each is bounded in time by the server's timeouts.
	ln = netutil.LimitListener(ln, n.cfg.Client.MaxConnections)
	n.ln = ln
	n.http = gateway.NewHTTPServer(n.gw)
	n.wg.Go(func() {
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("API server stopped", "err", err)
		}
	})
	return nil
}

// announce publishes the node's offer at once, every announce interval,
// just after a peer joins the offers topic, and within a second of a
// change others route by (a worker's load quartile, the node's addresses);
// each offer lives three intervals. Should a message be lost, the next
// announcement makes up for it.
func (n *Node) announce(ctx context.Context, key crypto.PrivKey) {
	every := n.cfg.Gossip.AnnounceInterval.D()
	// The first announcement usually goes out before gossipsub's first
	// heartbeat has built a mesh, and is lost; the second follows a
	// heartbeat later rather than a whole interval.
	t := time.NewTimer(min(every, 1500*time.Millisecond))
	defer t.Stop()
	check := time.NewTicker(min(every, changeCheck))
	defer check.Stop()
	publish := true
	var last string
	var sent time.Time
	for {
		if publish {
			// Peers take at most offers.PublishRate offers a second from
			// one publisher and score down one that sends more.
			if wait := time.Until(sent.Add(offers.MinPublishGap)); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			sent = time.Now()
			last = n.offerState()
			if err := n.publishOffer(ctx, key, 3*every); err != nil && ctx.Err() == nil {
				n.log.Warn("announcing offer", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			publish = true
			t.Reset(every)
		case <-check.C:
			publish = n.offerState() != last
		case <-n.joined:
			// Joins come in bursts; one announcement shortly after covers
			// them all.
			publish = false
			if !t.Stop() {
				select { // drain a fire that raced with the join
				case <-t.C:
				default:
				}
			}
			t.Reset(joinSettle)
		}
	}
}

// changeCheck is how often a node checks whether its offer changed.
const changeCheck = time.Second

// offerState sums up what in the node's offer, when it changes, is worth
// announcing before the next interval: a worker's load in quarters of its
// capacity, and the node's addresses (a private worker's relay slots).
func (n *Node) offerState() string {
	state := strings.Join(n.Addrs(), " ")
	if n.worker != nil {
		state += fmt.Sprintf(" load=%d", 4*min(n.worker.Active(), n.cfg.Worker.MaxConcurrent)/n.cfg.Worker.MaxConcurrent)
	}
	return state
}

// joinSettle is how long a node waits after a peer joins the offers topic
// before announcing. Gossipsub reports the join before its own stream to
// the peer is open: an offer published at once was lost 10 times in 15 on
// loopback, one published 20 ms later never (of 45). Joins also come in
// bursts, and one announcement covers a burst.
const joinSettle = 50 * time.Millisecond

// peerJoined is called by gossip when a peer joins the offers topic.
func (n *Node) peerJoined(peer.ID) {
	select {
	case n.joined <- struct{}{}:
	default:
	}
}

func (n *Node) publishOffer(ctx context.Context, key crypto.PrivKey, ttl time.Duration) error {
	now := time.Now()
	o := &offers.Offer{
		Network: n.cfg.Network, Peer: n.h.ID().String(),
		Seq:    uint64(now.UnixNano()), // increases across restarts too
		Expiry: now.Add(ttl).UnixMilli(),
	}
	switch n.cfg.Role {
	case RoleWorker:
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := n.worker.Catalog(cctx)
		cancel()
		if err != nil {
			return err
		}
		p := n.cfg.Worker.Price
		o.Role = offers.RoleWorker
		for _, m := range c.Models {
			o.Models = append(o.Models, offers.ModelOffer{ID: m.ID,
				Price: offers.Price{Prompt: p.Prompt, Cached: p.Cached, Completion: p.Completion}})
		}
		o.MaxConcurrent = c.MaxConcurrent
		o.Load = min(c.Active, c.MaxConcurrent)
		st := n.worker.Stats()
		o.TTFTMillis = min(st.TTFT.Milliseconds(), offers.MaxTTFT.Milliseconds())
		o.TokensPerSec = min(st.TokensPerSec, offers.MaxTokensPerSec)
		tier, err := n.ownTier(ctx)
		if err != nil {
			return err
		}
		o.Tier = tier.String()
		if o.Attestation, err = n.evidenceDigest(ctx); err != nil {
			return err
		}
		o.Addrs = n.Addrs()
	case RoleProxy:
		o.Role = offers.RoleProxy
		o.FeePPM = n.cfg.Proxy.FeePPM
		o.Addrs = n.Addrs()
	}
	signed, err := offers.Sign(o, key)
	if err != nil {
		return err
	}
	return n.gossip.Publish(ctx, signed)
}

// offerAccepted is called by gossip with each offer that enters the book.
func (n *Node) offerAccepted(_ peer.ID, o *offers.Offer) {
	if o.Role != offers.RoleWorker {
		return
	}
	select {
	case n.newOffer <- struct{}{}:
	default:
	}
}

// followOffers makes a proxy use the workers whose offers it holds: a
// worker that joins late gets traffic as soon as its offer arrives and it
// is attested, and one whose offer expires gets none.
func (n *Node) followOffers(ctx context.Context) {
	catalog := p2p.ProtocolID(n.cfg.Network, inference.CatalogProtocolName, inference.CatalogProtocolVersion)
	flagged := make(map[peer.ID]bool)
	if infos, err := discovery.ParseAddrs(n.cfg.Proxy.Workers); err == nil {
		for _, ai := range infos {
			flagged[ai.ID] = true // the keeper looks after these
		}
	}
	followed := make(map[peer.ID]bool)
	t := time.NewTicker(n.cfg.Gossip.AnnounceInterval.D() / 2)
	defer t.Stop()
	for {
		live := make(map[peer.ID]bool)
		for _, o := range n.book.Live(offers.RoleWorker) {
			id, err := peer.Decode(o.Peer)
			if err != nil || flagged[id] {
				continue
			}
			live[id] = true
			if n.router.Serving(id) {
				continue
			}
			if err := n.useWorker(ctx, id, o, catalog); err != nil {
				n.log.Info("worker from offer not usable yet", "peer", id, "err", err)
				continue
			}
			followed[id] = true
			n.log.Info("worker joined from its offer", "peer", id)
		}
		for id := range followed {
			if !live[id] {
				n.router.WorkerDown(id)
				delete(followed, id)
				n.log.Info("worker's offer expired", "peer", id)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.newOffer:
		}
	}
}

func (n *Node) useWorker(ctx context.Context, id peer.ID, o *offers.Offer, catalog protocol.ID) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n.h.Network().Connectedness(id) != network.Connected {
		infos, err := discovery.ParseAddrs(o.Addrs)
		if err != nil || len(infos) != 1 || infos[0].ID != id {
			return fmt.Errorf("offer carries no usable address")
		}
		if err := n.h.Connect(ctx, infos[0]); err != nil {
			return err
		}
	}
	if _, err := n.hs.Attest(ctx, id); err != nil {
		return err
	}
	c, err := inference.FetchCatalog(ctx, n.h, id, catalog)
	if err != nil {
		return err
	}
	n.router.SetWorker(id, c)
	return nil
}

// offerPrice is what a client pays for model through this proxy to a
// worker, per million prompt and million completion tokens: the worker's
// live offer plus the proxy's fee. The router compares it with the
// client's maximum.
func (n *Node) offerPrice(p peer.ID, model string) (int64, bool) {
	price, ok := n.offeredPrice(p, model)
	if !ok {
		return 0, false
	}
	b, err := payments.Cost(payments.Tokens{Prompt: payments.Million, Completion: payments.Million}, price, n.cfg.Proxy.FeePPM)
	return b.Total, err == nil
}

// bill prices one answer from the worker's live offer for model and the
// proxy's fee.
func (n *Node) bill(p peer.ID, model string, u inference.Usage, receipt *payments.Price) (inference.Cost, bool) {
	price, ok := n.offeredPrice(p, model)
	if receipt != nil {
		// The client pays by the receipt, which the worker signed; a
		// worker whose receipt asks more than its offer is named here.
		if ok && *receipt != price {
			n.log.Warn("worker's receipt names a price other than its offer's", "peer", p, "model", model,
				"receipt", *receipt, "offer", price)
		}
		price, ok = *receipt, true
	}
	if !ok {
		return inference.Cost{}, false
	}
	b, err := payments.Cost(payments.Tokens{Prompt: u.PromptTokens, Cached: min(u.CachedTokens, u.PromptTokens), Completion: u.CompletionTokens},
		price, n.cfg.Proxy.FeePPM)
	if err != nil {
		n.log.Warn("cannot price an answer", "peer", p, "model", model, "err", err)
		return inference.Cost{}, false
	}
	return inference.Cost{Worker: b.Worker, ProxyFee: b.Fee, Total: b.Total}, true
}

// offeredPrice is the price of model in p's live offer.
func (n *Node) offeredPrice(p peer.ID, model string) (payments.Price, bool) {
	if n.book == nil {
		return payments.Price{}, false
	}
	o, ok := n.book.Get(p)
	if !ok {
		return payments.Price{}, false
	}
	for _, m := range o.Models {
		if m.ID == model {
			return payments.Price{Prompt: m.Price.Prompt, Cached: m.Price.Cached, Completion: m.Price.Completion}, true
		}
	}
	return payments.Price{}, false
}

// Offers lists the live offers in the node's offer book (workers and
// proxies keep one).
func (n *Node) Offers() []*offers.Offer {
	if n.book == nil {
		return nil
	}
	return n.book.Live("")
}

// ID is the node's peer ID; empty before Start.
func (n *Node) ID() peer.ID {
	if n.h == nil {
		return ""
	}
	return n.h.ID()
}

// Addrs are the node's listen addresses with /p2p/<id>, for other nodes'
// configuration.
func (n *Node) Addrs() []string {
	if n.h == nil {
		return nil
	}
	addrs := n.h.Addrs()
	if n.slots != nil {
		addrs = append(slices.DeleteFunc(addrs, isCircuit), n.slots.Addrs()...)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.Encapsulate(ma.StringCast("/p2p/"+n.h.ID().String())).String())
	}
	return out
}

// isCircuit reports whether a is a relayed address.
func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// APIAddr is where a client serves the OpenAI API ("" for other roles).
func (n *Node) APIAddr() string {
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// Ready reports whether the node can do its job: a client has an attested
// proxy that knows at least one model, a proxy has a worker, a worker is
// always ready once started.
func (n *Node) Ready(ctx context.Context) bool {
	switch n.cfg.Role {
	case RoleClient:
		if !n.keeper.Settled() {
			return false
		}
		ids := n.attestedProxies()
		if len(ids) == 0 {
			return false
		}
		c, err := n.up.Catalog(ctx)
		return err == nil && len(c.Models) > 0
	case RoleProxy:
		if n.pay != nil && !slices.ContainsFunc(n.payees(), func(w peer.ID) bool { return n.pay.m.Payable(w) == nil }) {
			return false
		}
		return n.keeper.Settled() && len(n.router.Catalog().Models) > 0
	case RoleWorker:
		return n.h != nil
	}
	return false
}

// PeersUp lists the configured peers (a proxy's workers, a client's
// proxies) whose last check passed.
func (n *Node) PeersUp() []peer.ID {
	if n.keeper == nil {
		return nil
	}
	return n.keeper.Up()
}

// Poke makes the node re-check its peers now instead of at the next tick.
func (n *Node) Poke() {
	if n.keeper != nil {
		n.keeper.Poke()
	}
}

// Close stops everything Start started and waits for it.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if e := n.http.Shutdown(ctx); e != nil {
				n.http.Close()
			}
			cancel()
		}
		if n.admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if e := n.admin.Shutdown(ctx); e != nil {
				n.admin.Close()
			}
			cancel()
		}
		if n.cancel != nil {
			n.cancel()
		}
		if n.sv != nil {
			n.sv.Close()
		}
		n.wg.Wait() // the announcer stops before gossip closes
		if n.gossip != nil {
			n.gossip.Close()
		}
		if n.router != nil {
			n.router.Close()
		}
		if n.up != nil {
			n.up.Close()
		}
		n.wg.Wait()
		n.closePayments()
		if n.registry != nil {
			n.registry.Close()
		}
		if n.dht != nil {
			n.dht.Close()
		}
		if n.lite != nil {
			n.lite.Close()
		}
		if n.h != nil {
			err = n.h.Close()
		}
	})
	return err
}
