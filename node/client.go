package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/net/netutil"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/discovery/directory"
	"github.com/cocoon-mesh/cocoon/inference/gateway"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
	"github.com/cocoon-mesh/cocoon/payments/channels"
)

// clientRole serves the OpenAI API on loopback and sends its requests
// through the proxies it keeps, paying for the answers.
type clientRole struct {
	n       *Node
	proxies *discovery.Keeper
	up      *gateway.Proxies
	dir     *directory.Client // the workers behind each proxy, as the client verified them
	http    *http.Server
	ln      net.Listener
	lookup  *discovery.Lookup // nil without a DHT
	opener  *channels.Opener  // nil without payments
}

func (n *Node) newClient() (*clientRole, error) {
	c := &clientRole{n: n}
	proxies, err := discovery.ParseAddrs(n.cfg.Client.Proxies)
	if err != nil {
		return nil, fmt.Errorf("client.proxies: %w", err)
	}
	c.proxies = discovery.NewKeeper(n.h, append(proxies, n.bootstrapPeers()...), n.cfg.Client.CheckInterval.D(),
		proxyTrust{a: n.hs, min: n.cfg.Client.MinProxyTier()}, n.log, discovery.WithMaxFound(n.cfg.Discovery.MaxFound))
	c.lookup = n.newLookup(discovery.NewProxies(n.h, c.proxies, n.log))
	c.dir = directory.NewClient(directory.ClientConfig{Network: n.cfg.Network}, n.h, n.kinds, n.log)
	var workers gateway.Workers = c.dir // a nil interface without sealing
	if n.opts.clear {
		workers = nil
	}
	c.up = gateway.NewProxies(n.h, n.cfg.Network, c, workers)
	gc := gateway.Config{APIKey: n.cfg.Client.APIKey, FirstByteTimeout: n.cfg.Client.RequestTimeout.D(),
		MaxPrice: n.cfg.Client.MaxPrice, MinTier: n.cfg.Client.MinTier(),
		// The listen address is a host apps may name too.
		AllowedHosts:   append(slices.Clone(n.cfg.Client.AllowedHosts), n.cfg.Client.APIAddr),
		AllowedOrigins: n.cfg.Client.AllowedOrigins}
	var payer gateway.Payer // nil interfaces without payments, without a root contract
	if c.opener = n.opener(c); c.opener != nil {
		payer = clientPayer{m: n.pay.m, opener: c.opener, log: n.log}
	}
	var fees gateway.FeeCap
	if n.disc.registry != nil {
		fees = n.disc.registry
	}
	gw := gateway.New(gc, metrics.ObserveUpstream(c.up, n.requests), payer, fees, n.log)
	ln, err := net.Listen("tcp", n.cfg.Client.APIAddr)
	if err != nil {
		c.up.Close()
		return nil, fmt.Errorf("client.api_addr: %w", err)
	}
	// Connections past the cap wait in the kernel's backlog until one
	// closes; each is bounded in time by the server's timeouts.
	c.ln = gateway.Listener(netutil.LimitListener(ln, n.cfg.Client.MaxConnections))
	c.http = gateway.NewHTTPServer(gw)
	return c, nil
}

func (c *clientRole) runs() []func(context.Context) {
	out := []func(context.Context){func(ctx context.Context) { c.proxies.Run(ctx) }, c.serve}
	if c.opener != nil {
		out = append(out, c.opener.Run)
	}
	if c.lookup != nil {
		out = append(out, c.lookup.Run)
	}
	return out
}

// serve serves the API until stopServing.
func (c *clientRole) serve(context.Context) {
	if err := c.http.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		c.n.log.Error("API server stopped", "err", err)
	}
}

func (c *clientRole) addrs(host []ma.Multiaddr) []ma.Multiaddr { return host }

func (c *clientRole) keeper() *discovery.Keeper { return c.proxies }

func (c *clientRole) apiAddr() string { return c.ln.Addr().String() }

// ready: a proxy that passed the client's checks, which it can pay, knows
// a model.
func (c *clientRole) ready(ctx context.Context) bool {
	if !c.proxies.Settled() || len(c.Proxies()) == 0 {
		return false
	}
	cat, err := c.up.Catalog(ctx)
	return err == nil && len(cat.Models) > 0
}

// Payees are the client's proxies that are up and, with a
// client.min_proxy_trust, hold a live verdict at or above it: it pays
// them.
func (c *clientRole) Payees() []peer.ID {
	up := c.proxies.Up()
	min := c.n.cfg.Client.MinProxyTier()
	if min == 0 {
		return up
	}
	var out []peer.ID
	for _, p := range up {
		if v, ok := c.n.hs.Verified(p); ok && v.Tier >= min && v.Tier <= attest.TierTEEGPU {
			out = append(out, p)
		}
	}
	return out
}

// Proxies are the proxies requests may go to (the gateway asks): up, and
// with payments, with a channel open to them.
func (c *clientRole) Proxies() []peer.ID {
	var out []peer.ID
	for _, p := range c.Payees() {
		if c.n.pay != nil && c.n.pay.m.Payable(p) != nil {
			continue
		}
		out = append(out, p)
	}
	return out
}

func (c *clientRole) admin() admin.Role {
	return &admin.Client{Proxies: c.proxies, Upstream: c.up, APIAddr: c.apiAddr()}
}

// stopServing shuts the API down, giving requests in flight 5 s.
func (c *clientRole) stopServing() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.http.Shutdown(ctx); err != nil {
		c.http.Close()
	}
}

// policyChanged drops the workers the client verified from its proxies'
// directories: each is fetched and verified again under the new policy
// before the next request is sealed.
func (c *clientRole) policyChanged([]peer.ID) { c.dir.Reset() }

func (c *clientRole) close() {
	c.ln.Close() // in case serve never ran
	c.up.Close()
}
