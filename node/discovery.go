package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/chain/liteclient"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
)

// WithChain makes the node read its root contract through c instead of a
// lite client built from discovery.global_config. `cocoon testnet` and the
// tests pass the sandbox chain.
func WithChain(c chain.Chain) Option { return func(n *Node) { n.chain = c } }

// startDiscovery reads the root contract, when the node has one, and joins
// the DHT through the proxies it lists and the configured bootstrap peers.
// A proxy with no one to bootstrap from starts the DHT alone: it is the
// first of its network.
func (n *Node) startDiscovery(ctx context.Context) error {
	dc := n.cfg.Discovery
	if dc.Root != "" {
		root, err := ParseRoot(dc.Root)
		if err != nil {
			return fmt.Errorf("discovery.root: %w", err)
		}
		if n.chain == nil {
			c, err := n.liteClient(ctx)
			if err != nil {
				return err
			}
			n.chain = c
		}
		n.registry = registry.NewReader(registry.ReaderConfig{Address: root, Network: n.cfg.Network,
			Interval: dc.RefreshInterval.D()}, n.chain, n.log)
		if err := n.registry.Start(ctx); err != nil {
			return fmt.Errorf("reading the root contract %s: %w", dc.Root, err)
		}
		reg := n.registry.Current()
		if !reg.DevAttestation && n.cfg.Attest.Issuer == dev.Kind {
			return fmt.Errorf("the root contract of %s does not accept dev attestation, and this node presents dev evidence (attest.issuer)", n.cfg.Network)
		}
		if n.cfg.Role == RoleProxy && n.cfg.Proxy.FeePPM > int64(reg.Fees.ProxyFeePPM) {
			return fmt.Errorf("proxy.fee_ppm: %d is over the network's maximum of %d set in its root contract", n.cfg.Proxy.FeePPM, reg.Fees.ProxyFeePPM)
		}
		n.applyPolicy(reg)
		n.registry.OnChange(n.registryChanged)
	}
	boot := n.bootstrapPeers()
	if n.cfg.Role != RoleProxy && len(boot) == 0 {
		return nil // static peers only, from flags
	}
	d, err := dht.Start(ctx, n.h, dht.Config{
		Network:   n.cfg.Network,
		Server:    n.cfg.Role == RoleProxy,
		Auto:      n.cfg.Role == RoleWorker,
		Bootstrap: boot,
	})
	if err != nil {
		return err
	}
	n.dht = d
	n.log.Info("joined the DHT", "bootstrap", len(boot), "routing_table", d.RoutingTableSize())
	return nil
}

// bootstrapPeers are the root contract's proxies, then the configured
// bootstrap peers, without this node.
func (n *Node) bootstrapPeers() []peer.AddrInfo {
	var out []peer.AddrInfo
	if n.registry != nil {
		out = append(out, n.registry.Current().Bootstrap...)
	}
	extra, _ := discovery.ParseAddrs(n.cfg.Discovery.Bootstrap) // checked by Validate
	out = append(out, extra...)
	return slices.DeleteFunc(out, func(ai peer.AddrInfo) bool { return ai.ID == n.h.ID() })
}

// registryChanged connects to proxies the root contract lists now; clients
// and workers also start keeping them.
func (n *Node) registryChanged(reg *registry.Registry) {
	n.applyPolicy(reg)
	for _, ai := range reg.Bootstrap {
		n.found(ai)
	}
}

// applyPolicy makes the node accept what the root contract accepts: dev
// evidence only while it allows dev attestation (and the node's own
// configuration does). Peers verified on evidence no longer accepted must
// attest again.
func (n *Node) applyPolicy(reg *registry.Registry) {
	if n.cfg.Attest.AllowDev && reg.DevAttestation {
		n.kinds.Set(dev.Kind, dev.Validator{})
		return
	}
	if n.kinds.Accepts(dev.Kind) {
		n.log.Warn("the root contract no longer accepts dev attestation; dropping dev-attested peers")
	}
	n.kinds.Set(dev.Kind, nil)
	n.hs.ForgetKind(dev.Kind)
}

// found takes a proxy learnt from the root contract or the DHT: clients and
// workers keep it; a proxy only connects, so that the DHT and gossip span
// all proxies.
func (n *Node) found(ai peer.AddrInfo) {
	if ai.ID == n.h.ID() {
		return
	}
	if n.keeper != nil && n.cfg.Role != RoleProxy {
		if n.keeper.Add(ai) {
			n.log.Info("proxy found", "peer", ai.ID)
		}
		return
	}
	if n.h.Network().Connectedness(ai.ID) == network.Connected {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.h.Connect(ctx, ai); err != nil {
		n.log.Debug("other proxy unreachable", "peer", ai.ID, "err", err)
		return
	}
	n.log.Info("connected to another proxy", "peer", ai.ID)
}

// RefreshRegistry reads the root contract again now, rather than at the
// next refresh interval. Nothing happens for a node without one.
func (n *Node) RefreshRegistry(ctx context.Context) error {
	if n.registry == nil {
		return nil
	}
	return n.registry.Refresh(ctx)
}

// lookup searches the DHT every lookup interval, the first time at once:
// clients and workers for proxies, proxies for workers of the models the
// network allows or that are offered. Each node also re-provides its own
// records then.
func (n *Node) lookup(ctx context.Context) {
	t := time.NewTicker(n.cfg.Discovery.LookupInterval.D())
	defer t.Stop()
	for {
		n.lookupOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

const lookupMax = 20 // providers wanted per lookup

func (n *Node) lookupOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Discovery.LookupInterval.D()+10*time.Second)
	defer cancel()
	if n.registry != nil {
		for _, ai := range n.registry.Current().Bootstrap {
			n.found(ai)
		}
	}
	switch n.cfg.Role {
	case RoleWorker:
		if c, err := n.worker.Catalog(ctx); err == nil {
			for _, m := range c.Models {
				if err := n.dht.ProvideModel(ctx, m.ID); err != nil && ctx.Err() == nil {
					n.log.Debug("providing model", "model", m.ID, "err", err)
				}
			}
		}
		for _, ai := range n.dht.FindProxies(ctx, lookupMax) {
			n.found(ai)
		}
	case RoleClient:
		for _, ai := range n.dht.FindProxies(ctx, lookupMax) {
			n.found(ai)
		}
	case RoleProxy:
		if err := n.dht.ProvideProxy(ctx); err != nil && ctx.Err() == nil {
			n.log.Debug("providing the proxy record", "err", err)
		}
		for _, m := range n.wantedModels() {
			for _, ai := range n.dht.FindModel(ctx, m, lookupMax) {
				n.connectWorker(ctx, ai)
			}
		}
	}
}

// wantedModels are the models a proxy looks for workers of: those the root
// contract allows and those it has seen offered.
func (n *Node) wantedModels() []string {
	var out []string
	if n.registry != nil {
		for _, m := range n.registry.Current().Models {
			out = append(out, m.Name)
		}
	}
	for _, o := range n.book.Live(offers.RoleWorker) {
		for _, m := range o.Models {
			out = append(out, m.ID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// connectWorker connects a proxy to a worker found in the DHT. Gossip then
// brings the worker's offer, and followOffers starts routing to it.
func (n *Node) connectWorker(ctx context.Context, ai peer.AddrInfo) {
	if ai.ID == n.h.ID() || n.h.Network().Connectedness(ai.ID) == network.Connected {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.h.Connect(ctx, ai); err != nil {
		n.log.Debug("worker from the DHT unreachable", "peer", ai.ID, "err", err)
		return
	}
	n.log.Info("worker found in the DHT", "peer", ai.ID)
}

// liteClient connects to TON's lite servers to read the root contract.
func (n *Node) liteClient(ctx context.Context) (chain.Chain, error) {
	network := liteclient.Testnet
	if n.cfg.Network == "mainnet" {
		network = liteclient.Mainnet
	}
	if n.cfg.Discovery.GlobalConfig == "" && n.cfg.Network != "mainnet" && n.cfg.Network != "testnet" {
		return nil, fmt.Errorf("discovery.global_config: needed to read the root contract of network %q", n.cfg.Network)
	}
	c, err := liteclient.New(liteclient.Config{GlobalConfig: n.cfg.Discovery.GlobalConfig, Network: network}, n.log)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("connecting to TON: %w", err)
	}
	n.lite = c
	return c, nil
}
