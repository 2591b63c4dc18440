package dht_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func info(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

func start(t *testing.T, h host.Host, cfg dht.Config) *dht.DHT {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	d, err := dht.Start(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestFindThroughProxies: two proxies (servers), a worker joining one of
// them, a client joining the other: the client finds the proxies and the
// worker that serves its model, and nothing for a model nobody serves.
func TestFindThroughProxies(t *testing.T) {
	p1h, p2h, wh, ch := p2ptest.NewHost(t), p2ptest.NewHost(t), p2ptest.NewHost(t), p2ptest.NewHost(t)
	p1 := start(t, p1h, dht.Config{Network: "local", Server: true})
	p2 := start(t, p2h, dht.Config{Network: "local", Server: true, Bootstrap: []peer.AddrInfo{info(p1h)}})
	w := start(t, wh, dht.Config{Network: "local", Server: true, Bootstrap: []peer.AddrInfo{info(p1h)}})
	c := start(t, ch, dht.Config{Network: "local", Bootstrap: []peer.AddrInfo{info(p2h)}})

	p2ptest.Eventually(t, "routing tables", func() bool {
		return p1.RoutingTableSize() >= 2 && p2.RoutingTableSize() >= 1 && w.RoutingTableSize() >= 1 && c.RoutingTableSize() >= 1
	})
	ctx := t.Context()
	for _, p := range []*dht.DHT{p1, p2} {
		if err := p.ProvideProxy(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.ProvideModel(ctx, "sim-small"); err != nil {
		t.Fatal(err)
	}

	found := c.FindModel(ctx, "sim-small", 5)
	if len(found) != 1 || found[0].ID != wh.ID() {
		t.Fatalf("FindModel(sim-small) = %v, want the worker %s", found, wh.ID())
	}
	proxies := c.FindProxies(ctx, 5)
	ids := map[peer.ID]bool{}
	for _, ai := range proxies {
		ids[ai.ID] = true
	}
	if len(ids) != 2 || !ids[p1h.ID()] || !ids[p2h.ID()] {
		t.Fatalf("FindProxies = %v, want both proxies", proxies)
	}
	if none := c.FindModel(ctx, "nobody-serves-this", 5); len(none) != 0 {
		t.Fatalf("found %v for a model nobody serves", none)
	}
}

// TestNetworksApart: a node of another network shares no DHT with ours.
func TestNetworksApart(t *testing.T) {
	ph, oh, sh := p2ptest.NewHost(t), p2ptest.NewHost(t), p2ptest.NewHost(t)
	start(t, ph, dht.Config{Network: "local", Server: true})
	o := start(t, oh, dht.Config{Network: "testnet", Server: true, Bootstrap: []peer.AddrInfo{info(ph)}})
	// A node of the same network, joining the same way, as the control.
	same := start(t, sh, dht.Config{Network: "local", Server: true, Bootstrap: []peer.AddrInfo{info(ph)}})
	p2ptest.Eventually(t, "the same-network node to see the proxy", func() bool { return same.RoutingTableSize() >= 1 })
	if n := o.RoutingTableSize(); n != 0 {
		t.Fatalf("a testnet node has %d local peers in its routing table", n)
	}
	if err := o.ProvideModel(t.Context(), "m"); err != dht.ErrNoPeers {
		t.Fatalf("providing with no peers: %v, want ErrNoPeers", err)
	}
}

func TestStartNeedsABootstrapPeer(t *testing.T) {
	h := p2ptest.NewHost(t)
	gone := p2ptest.NewHost(t)
	ai := info(gone)
	gone.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if d, err := dht.Start(ctx, h, dht.Config{Network: "local", Bootstrap: []peer.AddrInfo{ai}}); err == nil {
		d.Close()
		t.Fatal("joined through a bootstrap peer that is gone")
	}
}
