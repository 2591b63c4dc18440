package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/backend/openai"
	"github.com/cocoon-mesh/cocoon/inference/backend/sim"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
)

// workerRole serves models from an engine, keeps its proxies, and
// announces its offer.
type workerRole struct {
	n       *Node
	prices  *livePrices
	server  *worker.Server
	proxies *discovery.Keeper
	offers  *offerSide
	slots   *p2p.Reservations // a private worker's relay slots: its addresses
	lookup  *discovery.Lookup // nil without a DHT
	// engineWait is set when the engine did not answer at start;
	// awaitEngine reports its warm-up.
	engineWait bool
}

func newBackend(cfg config.Worker, log *slog.Logger) (inference.Backend, error) {
	switch cfg.Backend {
	case "sim":
		return sim.New(cfg.Sim.Sim())
	case "openai":
		return openai.New(openai.Config{BaseURL: cfg.OpenAI.URL, Socket: cfg.OpenAI.Socket, APIKey: cfg.OpenAI.APIKey, Models: cfg.OpenAI.Models, EmbeddingModels: cfg.OpenAI.EmbeddingModels}, log)
	}
	return nil, fmt.Errorf("worker.backend: %q: want sim or openai", cfg.Backend)
}

// modelPrices are a worker's prices: worker.prices for the models named
// there, worker.price for the others.
type modelPrices struct {
	price  payments.Price
	prices map[string]payments.Price
}

func (p modelPrices) Price(model string) payments.Price {
	if v, ok := p.prices[model]; ok {
		return v
	}
	return p.price
}

// livePrices are a worker's prices as a reload leaves them.
type livePrices struct{ p atomic.Pointer[modelPrices] }

func newLivePrices(w config.Worker) *livePrices {
	l := &livePrices{}
	l.set(w)
	return l
}

func (l *livePrices) set(w config.Worker) {
	l.p.Store(&modelPrices{price: w.Price, prices: w.Prices})
}

func (l *livePrices) Price(model string) payments.Price { return l.p.Load().Price(model) }

func (n *Node) newWorker(ctx context.Context, key crypto.PrivKey) (*workerRole, error) {
	w := &workerRole{n: n, prices: newLivePrices(n.cfg.Worker)}
	receipts := &worker.Receipts{Key: key, Prices: w.prices}
	var settler worker.Settler // a nil interface without payments
	if n.pay != nil {
		settler = n.pay.m
	}
	w.server = worker.New(worker.Config{Network: n.cfg.Network, MaxConcurrent: n.cfg.Worker.MaxConcurrent, Receipts: receipts, Keys: n.keys},
		n.h.ID(), metrics.ObserveBackend(n.opts.backend, n.requests), settler, n.log)
	w.server.Register(n.sv)
	if _, err := w.server.Catalog(ctx); err != nil {
		n.log.Warn("engine not answering yet; waiting for it (a model may still be loading)", "err", err)
		w.engineWait = true
	}
	proxies, err := discovery.ParseAddrs(n.cfg.Worker.Proxies)
	if err != nil {
		return nil, fmt.Errorf("worker.proxies: %w", err)
	}
	var checker discovery.Checker = proxyTrust{a: n.hs}
	if n.cfg.P2P.Private {
		w.slots = p2p.NewReservations(n.h, nil)
		checker = &relayedThrough{hs: n.hs, slots: w.slots, soon: w.announceSoon}
	}
	// The root contract's proxies and those found in the DHT join these.
	w.proxies = discovery.NewKeeper(n.h, append(proxies, n.bootstrapPeers()...), n.cfg.Worker.CheckInterval.D(), checker, n.log,
		discovery.WithMaxFound(n.cfg.Discovery.MaxFound))
	if w.offers, err = n.newOfferSide(key, w); err != nil {
		return nil, err
	}
	w.lookup = n.newLookup(discovery.NewProxies(n.h, w.proxies, n.log), discovery.ProvidingModels(servedModels{w.server}))
	return w, nil
}

// announceSoon announces the worker's offer shortly, once it has an
// announcer.
func (w *workerRole) announceSoon() {
	if w.offers != nil {
		w.offers.announcer.Soon()
	}
}

func (w *workerRole) runs() []func(context.Context) {
	out := []func(context.Context){func(ctx context.Context) { w.proxies.Run(ctx) }, w.offers.announcer.Run}
	if w.engineWait {
		out = append(out, w.awaitEngine)
	}
	if w.lookup != nil {
		out = append(out, w.lookup.Run)
	}
	return out
}

// addrs are a private worker's relay addresses instead of its host's
// relayed ones.
func (w *workerRole) addrs(host []ma.Multiaddr) []ma.Multiaddr {
	if w.slots == nil {
		return host
	}
	return append(slices.DeleteFunc(host, isCircuit), w.slots.Addrs()...)
}

// isCircuit reports whether a is a relayed address.
func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

func (w *workerRole) keeper() *discovery.Keeper { return w.proxies }

func (w *workerRole) ready(context.Context) bool { return true }

func (w *workerRole) offerBook() *offers.Book { return w.offers.book }

func (w *workerRole) admin() admin.Role {
	return &admin.Worker{Engine: w.server, Proxies: w.proxies, Offers: w.offers.book,
		Price: w.n.cfg.Worker.Price, GPU: w.n.cfg.Attest.GPU}
}

func (w *workerRole) stopServing() {}

func (w *workerRole) close() { w.offers.gossip.Close() }

// policyChanged needs nothing more: the keeper finds a proxy whose verdict
// was dropped at its next check, and attests it again.
func (w *workerRole) policyChanged([]peer.ID) {}

// Fill makes the worker's offer: its engine's models at its price, its
// capacity, load and speed, its trust tier and evidence, and its
// addresses.
func (w *workerRole) Fill(ctx context.Context, o *offers.Offer) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := w.server.Catalog(cctx)
	cancel()
	if err != nil {
		return err
	}
	o.Role = offers.RoleWorker
	for _, m := range c.Models {
		o.Models = append(o.Models, offers.ModelOffer{ID: m.ID, Price: w.prices.Price(m.ID)})
	}
	o.MaxConcurrent = c.MaxConcurrent
	o.Load = min(c.Active, c.MaxConcurrent)
	if w.server.Draining() {
		o.Load = o.MaxConcurrent // full: proxies route elsewhere
	}
	st := w.server.Stats()
	o.TTFTMillis = min(st.TTFT.Milliseconds(), offers.MaxTTFT.Milliseconds())
	o.TokensPerSec = min(st.TokensPerSec, offers.MaxTokensPerSec)
	tier, err := w.n.Tier(ctx)
	if err != nil {
		return err
	}
	o.Tier = tier.String()
	if o.Attestation, err = w.n.evidenceDigest(ctx); err != nil {
		return err
	}
	o.Addrs = w.n.Addrs()
	return nil
}

// State is the worker's addresses and its load in quarters of its
// capacity: a change of either is announced before the next interval.
func (w *workerRole) State() string {
	most := w.server.Capacity()
	return strings.Join(w.n.Addrs(), " ") + fmt.Sprintf(" load=%d draining=%t", 4*min(w.server.Active(), most)/most, w.server.Draining())
}

// awaitEngine reports the engine warming up: every 10 s while it does not
// answer, and once when it does, with how long it took. The offer goes
// out as soon as it answers.
func (w *workerRole) awaitEngine(ctx context.Context) {
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
		ids, err := servedModels{w.server}.Models(cctx)
		cancel()
		if err == nil {
			w.n.log.Info("engine ready", "models", strings.Join(ids, ","), "waited", time.Since(start).Round(time.Second))
			w.announceSoon()
			return
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			w.n.log.Info("still waiting for the engine", "waited", time.Since(start).Round(time.Second), "err", err)
		}
	}
}

// servedModels lists the models a worker's engine serves, for the DHT and
// the log.
type servedModels struct{ s *worker.Server }

func (m servedModels) Models(ctx context.Context) ([]string, error) {
	c, err := m.s.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(c.Models))
	for i, mod := range c.Models {
		ids[i] = mod.ID
	}
	return ids, nil
}

// proxyTrust checks a worker's or a client's proxies: each runs the
// attestation handshake, and must present evidence of at least min, or,
// with min 0, may present none (proxies need no TEE: what they relay is
// sealed). Evidence a proxy presents must verify, whatever min is.
type proxyTrust struct {
	a   discovery.Attester
	min attest.Tier
}

func (c proxyTrust) Up(ctx context.Context, p peer.ID) error {
	v, err := c.a.Attest(ctx, p)
	switch {
	case errors.Is(err, attest.ErrNoEvidence) && c.min == 0:
		return nil
	case errors.Is(err, attest.ErrNoEvidence):
		return fmt.Errorf("%w, and client.min_proxy_trust is %s", err, c.min)
	case err != nil:
		return err
	case v.Tier < c.min || v.Tier > attest.TierTEEGPU:
		return fmt.Errorf("proxy at trust tier %s, under client.min_proxy_trust %s", v.Tier, c.min)
	}
	return nil
}

func (proxyTrust) Down(peer.ID) {}

// relayedThrough checks the proxies of a private worker: it attests each
// and holds a slot on it, so that others reach the worker through it. A
// new slot is announced soon.
type relayedThrough struct {
	hs    discovery.Attester
	slots *p2p.Reservations
	soon  func()
}

func (r *relayedThrough) Up(ctx context.Context, p peer.ID) error {
	if err := (proxyTrust{a: r.hs}).Up(ctx, p); err != nil {
		return err
	}
	before := len(r.slots.Addrs())
	if err := r.slots.Reserve(ctx, peer.AddrInfo{ID: p}); err != nil {
		return err
	}
	if len(r.slots.Addrs()) != before {
		r.soon() // announce the new addresses
	}
	return nil
}

func (r *relayedThrough) Down(p peer.ID) { r.slots.Drop(p) }
