package node

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/discovery/directory"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/channels"
)

// proxyRole routes clients' requests to workers, follows the workers it
// finds, announces its fee and pays its workers.
type proxyRole struct {
	n       *Node
	router  *router.Router
	workers *discovery.Workers
	flagged *discovery.Keeper // the workers of proxy.workers
	offers  *offerSide
	lookup  *discovery.Lookup // nil without a DHT
	opener  *channels.Opener  // nil without payments
}

func (n *Node) newProxy(key crypto.PrivKey) (*proxyRole, error) {
	p := &proxyRole{n: n}
	flagged, err := discovery.ParseAddrs(n.cfg.Proxy.Workers)
	if err != nil {
		return nil, fmt.Errorf("proxy.workers: %w", err)
	}
	if p.offers, err = n.newOfferSide(key, p); err != nil {
		return nil, err
	}
	rc := router.DefaultConfig(n.cfg.Network)
	rc.Attempts = n.cfg.Proxy.Attempts
	rc.FirstChunkTimeout = n.cfg.Proxy.FirstChunkTimeout.D()
	rc.ChunkTimeout = n.cfg.Proxy.ChunkTimeout.D()
	rc.MaxPerClient = n.cfg.Proxy.MaxRequestsPerClient
	rc.ClientShare = n.cfg.Proxy.ClientShare
	rc.WriteTimeout = n.cfg.Proxy.ClientWriteTimeout.D()
	var settler router.Settler // a nil interface without payments
	if n.pay != nil {
		settler = n.pay.m
	}
	tariff := payments.NewTariff(p.offers.book, n.cfg.Proxy.FeePPM, n.log)
	p.router = router.New(rc, n.h, n.hs, tariff, settler, n.log)
	p.router.Register(n.sv)
	// Clients read the workers it routes to, with their evidence and
	// sealing keys, and check each themselves.
	directory.NewServer(n.cfg.Network, directory.Join(routable{p.router}, n.hs, p.offers.book), directory.AnyPeer{}, n.log).Register(n.sv)
	p.workers = discovery.NewWorkers(n.h, n.cfg.Network, flagged, p.offers.book, n.hs, p.router,
		n.cfg.Gossip.AnnounceInterval.D()/2, n.log)
	p.flagged = discovery.NewKeeper(n.h, flagged, n.cfg.Proxy.CheckInterval.D(), p.workers, n.log)
	p.lookup = n.newLookup(discovery.NewProxies(n.h, nil, n.log), discovery.FindingWorkers(p.offers.book, p.router))
	p.opener = n.opener(p)
	return p, nil
}

func (p *proxyRole) runs() []func(context.Context) {
	out := []func(context.Context){p.offers.announcer.Run, p.workers.Run, func(ctx context.Context) { p.flagged.Run(ctx) }}
	if p.opener != nil {
		out = append(out, p.opener.Run)
	}
	if p.lookup != nil {
		out = append(out, p.lookup.Run)
	}
	return out
}

func (p *proxyRole) addrs(host []ma.Multiaddr) []ma.Multiaddr { return host }

func (p *proxyRole) keeper() *discovery.Keeper { return p.flagged }

// ready: the proxy routes to a worker, and with payments can pay one.
func (p *proxyRole) ready(context.Context) bool {
	if p.opener != nil && !slices.ContainsFunc(p.Payees(), func(w peer.ID) bool { return p.n.pay.m.Payable(w) == nil }) {
		return false
	}
	return p.flagged.Settled() && len(p.router.Catalog().Models) > 0
}

// Payees are the workers the proxy routes to that are up: it pays them.
func (p *proxyRole) Payees() []peer.ID {
	var out []peer.ID
	for _, w := range p.router.Workers() {
		if w.Up {
			out = append(out, w.Peer)
		}
	}
	return out
}

func (p *proxyRole) offerBook() *offers.Book { return p.offers.book }

func (p *proxyRole) admin() admin.Role {
	return &admin.Proxy{Router: p.router, Workers: p.flagged, Offers: p.offers.book, Bootstrap: len(p.n.cfg.Discovery.Bootstrap)}
}

func (p *proxyRole) stopServing() {}

// policyChanged stops routing to the workers whose verdicts were dropped;
// they are followed again, and attested under the new policy, from their
// next offer or check.
func (p *proxyRole) policyChanged(dropped []peer.ID) {
	for _, id := range dropped {
		p.router.WorkerDown(id)
	}
}

func (p *proxyRole) close() {
	p.offers.gossip.Close()
	p.router.Close()
}

// Fill makes the proxy's offer: its fee and addresses.
func (p *proxyRole) Fill(_ context.Context, o *offers.Offer) error {
	o.Role = offers.RoleProxy
	o.FeePPM = p.n.cfg.Proxy.FeePPM
	o.Addrs = p.n.Addrs()
	return nil
}

// State is the proxy's addresses.
func (p *proxyRole) State() string { return strings.Join(p.n.Addrs(), " ") }

// routable is the proxy's router as its directory reads it: the workers it
// routes to now.
type routable struct{ r *router.Router }

func (r routable) Routable() []directory.Route {
	var out []directory.Route
	for _, w := range r.r.Workers() {
		if w.Up {
			out = append(out, directory.Route{Peer: w.Peer, Models: w.Models, Endpoints: w.Endpoints})
		}
	}
	return out
}
