package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/chain/liteclient"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// discoveryParts are how a node finds the network: the chain and root
// contract (none when wired by hand), and the DHT (none for a client or
// worker with no one to bootstrap from).
type discoveryParts struct {
	chain    chain.Chain        // WithChain's, or the lite client's
	lite     *liteclient.Client // the lite client this node made, if any
	registry *registry.Reader   // nil without a root contract
	dht      *dht.DHT           // nil without a DHT
}

// vouched says which peers the DHT's routing table takes without bound:
// the bootstrap proxies (the root contract's, or the operator's flags) and
// every peer this node holds a live attestation verdict on.
func (n *Node) vouched(boot []peer.AddrInfo) func(peer.ID) bool {
	listed := make(map[peer.ID]bool, len(boot))
	for _, ai := range boot {
		listed[ai.ID] = true
	}
	return func(p peer.ID) bool {
		if listed[p] {
			return true
		}
		_, ok := n.hs.Verified(p)
		return ok
	}
}

// startDiscovery reads the root contract, when the node has one, and joins
// the DHT through the proxies it lists and the configured bootstrap peers.
// A proxy with no one to bootstrap from starts the DHT alone: it is the
// first of its network.
func (n *Node) startDiscovery(ctx context.Context) error {
	if n.cfg.Discovery.Root != "" {
		if err := n.readRoot(ctx); err != nil {
			return err
		}
	} else if n.cfg.Network != "local" && n.cfg.Attest.Issuer == dev.Kind {
		n.log.Warn("presenting dev evidence on a network other than local with no root contract (discovery.root): peers refuse it; use network local, or a root contract that allows dev attestation")
	}
	boot := n.bootstrapPeers()
	if n.cfg.Role != config.RoleProxy && len(boot) == 0 {
		return nil // static peers only, from flags
	}
	var scope dht.Scope // a nil interface without a root contract: any key, within the caps
	if n.disc.registry != nil {
		scope = contractModels{n.disc.registry}
	}
	d, err := dht.Start(ctx, n.h, dht.Config{
		Network:   n.cfg.Network,
		Server:    n.cfg.Role == config.RoleProxy,
		Auto:      n.cfg.Role == config.RoleWorker,
		Bootstrap: boot,
		Scope:     scope,
		Trusted:   n.vouched(boot),
	})
	if err != nil {
		return err
	}
	n.disc.dht = d
	n.log.Info("joined the DHT", "bootstrap", len(boot), "routing_table", d.RoutingTableSize())
	return nil
}

// contractModels are the models the root contract allows, as it changes:
// the DHT keeps provider records of those only.
type contractModels struct{ r *registry.Reader }

func (m contractModels) AllowedModels() []string {
	reg := m.r.Current()
	if reg == nil {
		return nil
	}
	out := make([]string, len(reg.Models))
	for i, mod := range reg.Models {
		out[i] = mod.Name
	}
	return out
}

// readRoot starts reading the root contract and applies its policy.
func (n *Node) readRoot(ctx context.Context) error {
	dc := n.cfg.Discovery
	root, err := config.ParseRoot(dc.Root)
	if err != nil {
		return fmt.Errorf("discovery.root: %w", err)
	}
	if n.disc.chain == nil {
		if err := n.liteClient(ctx); err != nil {
			return err
		}
	}
	r := registry.NewReader(registry.ReaderConfig{Address: root, Network: n.cfg.Network,
		Interval: dc.RefreshInterval.D()}, n.disc.chain, n.log)
	if err := r.Start(ctx); err != nil {
		return fmt.Errorf("reading the root contract %s: %w", dc.Root, err)
	}
	n.disc.registry = r
	reg := r.Current()
	if !reg.DevAttestation && n.cfg.Attest.Issuer == dev.Kind {
		return fmt.Errorf("the root contract of %s does not accept dev attestation, and this node presents dev evidence (attest.issuer)", n.cfg.Network)
	}
	if n.cfg.Role == config.RoleProxy && n.cfg.Proxy.FeePPM > int64(reg.Fees.ProxyFeePPM) {
		return fmt.Errorf("proxy.fee_ppm: %d is over the network's maximum of %d set in its root contract", n.cfg.Proxy.FeePPM, reg.Fees.ProxyFeePPM)
	}
	n.applyPolicy(reg)
	r.OnChange(n.applyPolicy)
	return nil
}

// bootstrapPeers are the root contract's proxies, then the configured
// bootstrap peers, without this node.
func (n *Node) bootstrapPeers() []peer.AddrInfo {
	var out []peer.AddrInfo
	if n.disc.registry != nil {
		out = append(out, n.disc.registry.Current().Bootstrap...)
	}
	extra, _ := discovery.ParseAddrs(n.cfg.Discovery.Bootstrap) // checked by Validate
	out = append(out, extra...)
	return slices.DeleteFunc(out, func(ai peer.AddrInfo) bool { return ai.ID == n.h.ID() })
}

// applyPolicy makes the node accept what the root contract accepts, at
// its first read and at each refresh that changed it: TDX evidence with
// the measurements it lists and a TCB at or above its minimum (tdxPolicy
// reads both at each validation),
// dev evidence only while it allows dev attestation (and the node's own
// configuration does). Every cached verdict is checked again under the
// new policy: peers whose evidence it no longer allows are dropped at
// once, not at the expiry they chose, and the role stops using them.
func (n *Node) applyPolicy(reg *registry.Registry) {
	if n.cfg.Attest.AllowDev && reg.DevAttestation {
		n.kinds.Set(dev.Kind, dev.Validator{})
	} else {
		if n.kinds.Accepts(dev.Kind) {
			n.log.Warn("the root contract does not accept dev attestation; dropping dev-attested peers")
		}
		n.kinds.Set(dev.Kind, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), revalidateTimeout)
	defer cancel()
	dropped := n.hs.Revalidate(ctx)
	if len(dropped) > 0 {
		n.log.Warn("the root contract's policy changed: peers no longer allowed dropped", "dropped", len(dropped))
	}
	if n.role != nil {
		n.role.policyChanged(dropped)
	}
}

// revalidateTimeout bounds the re-check of every cached verdict after a
// policy change (each one is a quote check, about a millisecond, with
// collateral from the cache).
const revalidateTimeout = time.Minute

// newLookup makes the DHT lookup of the node's role, or nil without a
// DHT. Found proxies go to proxies; the root contract's, as it changes,
// too.
func (n *Node) newLookup(proxies *discovery.Proxies, opts ...discovery.LookupOption) *discovery.Lookup {
	var reg discovery.Registry
	if n.disc.registry != nil {
		reg = n.disc.registry
		n.disc.registry.OnChange(proxies.Registered)
	}
	if n.disc.dht == nil {
		return nil
	}
	return discovery.NewLookup(n.h, n.disc.dht, reg, proxies, n.cfg.Discovery.LookupInterval.D(), n.log, opts...)
}

// RefreshRegistry reads the root contract again now, rather than at the
// next refresh interval. Nothing happens for a node without one.
func (n *Node) RefreshRegistry(ctx context.Context) error {
	if n.disc.registry == nil {
		return nil
	}
	return n.disc.registry.Refresh(ctx)
}

// liteClient connects to TON's lite servers to read the root contract.
func (n *Node) liteClient(ctx context.Context) error {
	network := liteclient.Testnet
	if n.cfg.Network == "mainnet" {
		network = liteclient.Mainnet
	}
	if n.cfg.Discovery.GlobalConfig == "" && n.cfg.Network != "mainnet" && n.cfg.Network != "testnet" {
		return fmt.Errorf("discovery.global_config: needed to read the root contract of network %q", n.cfg.Network)
	}
	c, err := liteclient.New(liteclient.Config{GlobalConfig: n.cfg.Discovery.GlobalConfig, Network: network}, n.log)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return fmt.Errorf("connecting to TON: %w", err)
	}
	n.disc.lite, n.disc.chain = c, c
	return nil
}

// closeDiscovery stops reading the root contract and leaves the DHT.
func (n *Node) closeDiscovery() {
	if n.disc.registry != nil {
		n.disc.registry.Close()
	}
	if n.disc.dht != nil {
		n.disc.dht.Close()
	}
	if n.disc.lite != nil {
		n.disc.lite.Close()
	}
}
