// Package dht is the network's Kademlia DHT (go-libp2p-kad-dht) under the
// protocol prefix /cocoon/<network>: proxies run it in server mode and are
// the bootstrap peers, workers provide a record per model they serve, and
// proxies provide the proxy record, so clients find proxies and proxies
// find workers without a central list. Values are disabled: only provider
// records are kept.
package dht

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
)

// Config configures a node's DHT.
type Config struct {
	Network   string
	Server    bool            // answer queries and store records (proxies)
	Auto      bool            // server once AutoNAT finds the node reachable, client until then (workers)
	Bootstrap []peer.AddrInfo // peers to join through: proxies from the root contract or flags
	// Scope says which models' records a server keeps (the root
	// contract's); nil keeps any key, within Limits.
	Scope  Scope
	Limits Limits // zero fields take DefaultLimits
	// Trusted says whether a peer is one the network vouches for: listed
	// in the root contract, or holding a live attestation verdict from
	// this node. The routing table takes any number of those and at most
	// Limits.Unverified others; nil trusts every peer.
	Trusted func(peer.ID) bool
}

// DHT is a running DHT.
type DHT struct {
	network string
	d       *kaddht.IpfsDHT
	store   *store
	addrs   func([]ma.Multiaddr) []ma.Multiaddr
}

// Start joins the DHT: connects to the bootstrap peers it can reach and
// fills the routing table. A node with no reachable bootstrap peer gets an
// error; a proxy that is the first of its network may pass none.
//
// A server keeps provider records of the network's keys only, within
// cfg.Limits (see store), and every node keeps, and dials, only public
// addresses of the peers the DHT names, unless the network is local.
func Start(ctx context.Context, h host.Host, cfg Config) (*DHT, error) {
	lim := cfg.Limits.withDefaults()
	st := newStore(cfg.Network, cfg.Scope, lim)
	addrs := addrFilter(cfg.Network == "local", lim.Addrs)
	mode := kaddht.ModeClient
	switch {
	case cfg.Server:
		mode = kaddht.ModeServer
	case cfg.Auto:
		mode = kaddht.ModeAuto
	}
	d, err := kaddht.New(h,
		kaddht.ProtocolPrefix(protocol.ID("/cocoon/"+cfg.Network)),
		kaddht.Mode(mode),
		kaddht.DisableValues(),
		kaddht.BootstrapPeers(cfg.Bootstrap...),
		kaddht.ProviderDatastore(st),
		kaddht.AddressFilter(addrs),
		kaddht.RoutingTableFilter(tableFilter(cfg.Trusted, lim.Unverified)),
		kaddht.QueryFilter(queryFilter(addrs)),
	)
	if err != nil {
		return nil, fmt.Errorf("starting the DHT: %w", err)
	}
	var reached int
	var last error
	for _, ai := range cfg.Bootstrap {
		if err := h.Connect(ctx, ai); err != nil {
			last = err
			continue
		}
		reached++
	}
	if len(cfg.Bootstrap) > 0 && reached == 0 {
		d.Close()
		return nil, fmt.Errorf("no bootstrap peer reachable (%d tried): %w", len(cfg.Bootstrap), last)
	}
	if err := d.Bootstrap(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("bootstrapping the DHT: %w", err)
	}
	return &DHT{network: cfg.Network, d: d, store: st, addrs: addrs}, nil
}

// tableFilter admits to the routing table every peer trusted says the
// network vouches for, and others only while fewer than unverified of
// them are in it or were admitted in the last pendingFor (their add may
// still be on its way): a host that brings up many identities (each
// speaking the DHT protocol, none attested) fills at most that many of
// the table's slots, and lookups keep going through the network's own
// peers.
func tableFilter(trusted func(peer.ID) bool, unverified int) kaddht.RouteTableFilterFunc {
	if trusted == nil {
		return nil
	}
	var mu sync.Mutex
	admitted := make(map[peer.ID]time.Time) // unverified peers let in, and when
	return func(dht any, p peer.ID) bool {
		if trusted(p) {
			return true
		}
		d, ok := dht.(*kaddht.IpfsDHT)
		if !ok {
			return false
		}
		rt := d.RoutingTable()
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for q, at := range admitted {
			if q != p && (trusted(q) || now.Sub(at) > pendingFor && rt.Find(q) == "") {
				delete(admitted, q) // vouched for since, or evicted, gone, never added
			}
		}
		if _, in := admitted[p]; in || len(admitted) < unverified {
			admitted[p] = now
			return true
		}
		return false
	}
}

// pendingFor is how long an unverified peer let into the routing table
// counts against the bound before it shows up in it.
const pendingFor = 10 * time.Second

// queryFilter keeps out of a lookup the peers a response names that this
// node could not reach anyway, having no address in the network's scope
// for them (the address filter drops the others): a response naming
// loopback, LAN or made-up peers costs a lookup no dial and no slot.
func queryFilter(addrs func([]ma.Multiaddr) []ma.Multiaddr) kaddht.QueryFilterFunc {
	return func(_ any, ai peer.AddrInfo) bool { return len(addrs(ai.Addrs)) > 0 }
}

// key is the content ID a record is provided under.
func key(parts ...string) cid.Cid {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	m, err := mh.Encode(h.Sum(nil), mh.SHA2_256)
	if err != nil {
		panic(err) // a sha256 digest always encodes
	}
	return cid.NewCidV1(cid.Raw, m)
}

// ModelKey is the record a worker serving model provides.
func ModelKey(network, model string) cid.Cid { return key("cocoon", network, "model", model) }

// ProxyKey is the record every proxy provides.
func ProxyKey(network string) cid.Cid { return key("cocoon", network, "proxy") }

// ErrNoPeers means the routing table is empty: the node has not joined yet.
// Retrying after it connects to a DHT server can help.
var ErrNoPeers = errors.New("no DHT server in the routing table")

func (d *DHT) provide(ctx context.Context, c cid.Cid) error {
	if d.d.RoutingTable().Size() == 0 {
		return ErrNoPeers
	}
	return d.d.Provide(ctx, c, true)
}

// ProvideModel announces that this node serves model.
func (d *DHT) ProvideModel(ctx context.Context, model string) error {
	return d.provide(ctx, ModelKey(d.network, model))
}

// ProvideProxy announces that this node is a proxy.
func (d *DHT) ProvideProxy(ctx context.Context) error { return d.provide(ctx, ProxyKey(d.network)) }

// FindModel returns up to max workers that serve model.
func (d *DHT) FindModel(ctx context.Context, model string, max int) []peer.AddrInfo {
	return d.find(ctx, ModelKey(d.network, model), max)
}

// FindProxies returns up to max proxies.
func (d *DHT) FindProxies(ctx context.Context, max int) []peer.AddrInfo {
	return d.find(ctx, ProxyKey(d.network), max)
}

func (d *DHT) find(ctx context.Context, c cid.Cid, max int) []peer.AddrInfo {
	var out []peer.AddrInfo
	for ai := range d.d.FindProvidersAsync(ctx, c, max) {
		ai.Addrs = d.addrs(ai.Addrs)
		out = append(out, ai)
	}
	return out
}

// ProviderRecords is how many provider records this node holds for
// others (a server's; a client holds none).
func (d *DHT) ProviderRecords() int { return d.store.records() }

// RoutingTableSize is how many DHT servers this node knows.
func (d *DHT) RoutingTableSize() int { return d.d.RoutingTable().Size() }

// Close leaves the DHT.
func (d *DHT) Close() error { return d.d.Close() }
