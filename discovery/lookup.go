package discovery

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
)

// Registry is the root contract as last read (*registry.Reader).
type Registry interface {
	Current() *registry.Registry
}

// Models lists the models a worker serves now, which it provides in the
// DHT.
type Models interface {
	Models(ctx context.Context) ([]string, error)
}

// Proxies takes the proxies a node learns of, from the root contract or
// the DHT: a client or a worker keeps them (with its Keeper); a proxy only
// connects to them, so that the DHT and gossip span all proxies.
type Proxies struct {
	h      host.Host
	keeper *Keeper // nil for a proxy
	log    *slog.Logger
}

// NewProxies hands found proxies to keeper, or with a nil keeper (a
// proxy's) connects to them.
func NewProxies(h host.Host, keeper *Keeper, log *slog.Logger) *Proxies {
	return &Proxies{h: h, keeper: keeper, log: log.With("component", "discovery")}
}

// Found takes one proxy.
func (p *Proxies) Found(ai peer.AddrInfo) {
	if ai.ID == p.h.ID() {
		return
	}
	if p.keeper != nil {
		if p.keeper.Add(ai) {
			p.log.Info("proxy found", "peer", ai.ID)
		}
		return
	}
	if p.h.Network().Connectedness(ai.ID) == network.Connected {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.h.Connect(ctx, ai); err != nil {
		p.log.Debug("other proxy unreachable", "peer", ai.ID, "err", err)
		return
	}
	p.log.Info("connected to another proxy", "peer", ai.ID)
}

// Registered takes the proxies the root contract lists now: a keeper
// keeps them before any found in the DHT, and never drops them.
func (p *Proxies) Registered(reg *registry.Registry) {
	if p.keeper == nil {
		eachParallel(reg.Bootstrap, p.Found)
		return
	}
	for _, ai := range reg.Bootstrap {
		if ai.ID != p.h.ID() && p.keeper.AddListed(ai) {
			p.log.Info("proxy listed in the root contract", "peer", ai.ID)
		}
	}
}

// lookupParallel is how many peers found in one lookup round are dialed
// at once: a record at an address whose dial hangs costs a slot for 10 s,
// not the whole round.
const lookupParallel = 8

// eachParallel calls fn for every peer of ais, lookupParallel at a time,
// and returns when all calls have.
func eachParallel(ais []peer.AddrInfo, fn func(peer.AddrInfo)) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, lookupParallel)
	for _, ai := range ais {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			fn(ai)
		})
	}
	wg.Wait()
}

// Lookup searches the DHT every interval, the first time at once. Each
// round it takes the root contract's proxies again, re-provides the node's
// own records, and looks for what the node needs: a client or a worker
// proxies, a proxy workers of the models the network allows or that are
// offered.
type Lookup struct {
	h        host.Host
	d        *dht.DHT
	reg      Registry // nil without a root contract
	proxies  *Proxies
	interval time.Duration
	log      *slog.Logger

	models  Models       // a worker's own models; nil for other roles
	book    *offers.Book // a proxy's offer book; nil for other roles
	serving Serving      // a proxy's router; nil for other roles
}

// Serving says which workers a proxy routes to (its router).
type Serving interface {
	Serving(p peer.ID) bool
}

// LookupOption makes a Lookup do a role's part.
type LookupOption func(*Lookup)

// ProvidingModels makes a worker provide its models, and look for proxies.
func ProvidingModels(m Models) LookupOption { return func(l *Lookup) { l.models = m } }

// FindingWorkers makes a proxy provide its proxy record and look for
// workers of the models the root contract allows, or, when it lists none,
// of the models offered in book (see wantedModels), instead of looking
// for proxies. serving is the proxy's router.
func FindingWorkers(book *offers.Book, serving Serving) LookupOption {
	return func(l *Lookup) { l.book, l.serving = book, serving }
}

// NewLookup looks up d every interval; found proxies go to proxies. reg is
// nil without a root contract. A client needs no option. It starts
// nothing.
func NewLookup(h host.Host, d *dht.DHT, reg Registry, proxies *Proxies, interval time.Duration, log *slog.Logger, opts ...LookupOption) *Lookup {
	l := &Lookup{h: h, d: d, reg: reg, proxies: proxies, interval: interval, log: log.With("component", "discovery")}
	for _, o := range opts {
		o(l)
	}
	return l
}

// lookupMax is how many providers a lookup asks for.
const lookupMax = 20

// Run looks up until ctx ends.
func (l *Lookup) Run(ctx context.Context) {
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		l.once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *Lookup) once(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, l.interval+10*time.Second)
	defer cancel()
	if l.reg != nil {
		l.proxies.Registered(l.reg.Current())
	}
	if l.book != nil {
		l.findWorkers(ctx)
		return
	}
	if l.models != nil {
		l.provideModels(ctx)
	}
	eachParallel(l.d.FindProxies(ctx, lookupMax), l.proxies.Found)
}

func (l *Lookup) provideModels(ctx context.Context) {
	models, err := l.models.Models(ctx)
	if err != nil {
		return
	}
	for _, m := range models {
		if err := l.d.ProvideModel(ctx, m); err != nil && ctx.Err() == nil {
			l.log.Debug("providing model", "model", m, "err", err)
		}
	}
}

// findWorkers is a proxy's round: provide the proxy record, connect to
// workers of the wanted models. Gossip then brings each worker's offer,
// and Workers starts routing to it.
func (l *Lookup) findWorkers(ctx context.Context) {
	if err := l.d.ProvideProxy(ctx); err != nil && ctx.Err() == nil {
		l.log.Debug("providing the proxy record", "err", err)
	}
	var found []peer.AddrInfo
	seen := make(map[peer.ID]bool)
	for _, m := range l.wantedModels() {
		for _, ai := range l.d.FindModel(ctx, m, lookupMax) {
			if !seen[ai.ID] {
				seen[ai.ID] = true
				found = append(found, ai)
			}
		}
	}
	eachParallel(found, func(ai peer.AddrInfo) { l.connectWorker(ctx, ai) })
}

// MaxLookupModels is how many models a proxy looks up workers of each
// round when the root contract lists none.
const MaxLookupModels = 16

// wantedModels are the models a proxy looks for workers of: those the root
// contract allows, if it lists any; else at most MaxLookupModels of those
// offered, by score: each worker routed to that offers a model counts for
// more than any number of offers of workers not routed to (anyone can sign
// offers for made-up models under fresh keys), and the offers count next.
func (l *Lookup) wantedModels() []string {
	var out []string
	if l.reg != nil {
		for _, m := range l.reg.Current().Models {
			out = append(out, m.Name)
		}
	}
	if len(out) > 0 {
		slices.Sort(out)
		return slices.Compact(out)
	}
	type score struct{ routed, offers int }
	scores := make(map[string]*score)
	for _, o := range l.book.Live(offers.RoleWorker) {
		routed := false
		if id, err := peer.Decode(o.Peer); err == nil && l.serving != nil {
			routed = l.serving.Serving(id)
		}
		for _, m := range o.Models {
			s := scores[m.ID]
			if s == nil {
				s = &score{}
				scores[m.ID] = s
			}
			s.offers++
			if routed {
				s.routed++
			}
		}
	}
	for m := range scores {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b string) int {
		sa, sb := scores[a], scores[b]
		if sa.routed != sb.routed {
			return sb.routed - sa.routed
		}
		if sa.offers != sb.offers {
			return sb.offers - sa.offers
		}
		return strings.Compare(a, b)
	})
	return out[:min(len(out), MaxLookupModels)]
}

// connectWorker connects a proxy to a worker found in the DHT.
func (l *Lookup) connectWorker(ctx context.Context, ai peer.AddrInfo) {
	if ai.ID == l.h.ID() || l.h.Network().Connectedness(ai.ID) == network.Connected {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := l.h.Connect(ctx, ai); err != nil {
		l.log.Debug("worker from the DHT unreachable", "peer", ai.ID, "err", err)
		return
	}
	l.log.Info("worker found in the DHT", "peer", ai.ID)
}
