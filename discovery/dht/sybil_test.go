package dht_test

import (
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// TestSybilRoutingTable: twelve identities nobody vouches for join a
// proxy's DHT as servers, as one host bringing up fresh keys would. The
// proxy's routing table takes at most Limits.Unverified of them, and
// still holds the peer the root contract lists.
func TestSybilRoutingTable(t *testing.T) {
	const strangers, bound = 12, 3
	ph, lh := p2ptest.NewHost(t), p2ptest.NewHost(t)
	var mu sync.Mutex
	asked := map[peer.ID]bool{} // the peers the routing table considered
	trusted := func(p peer.ID) bool {
		mu.Lock()
		defer mu.Unlock()
		asked[p] = true
		return p == lh.ID()
	}
	proxy := start(t, ph, dht.Config{Network: "local", Server: true, Trusted: trusted, Limits: dht.Limits{Unverified: bound}})
	start(t, lh, dht.Config{Network: "local", Server: true, Bootstrap: []peer.AddrInfo{info(ph)}})
	var sybils []peer.ID
	for range strangers {
		sh := p2ptest.NewHost(t)
		sybils = append(sybils, sh.ID())
		start(t, sh, dht.Config{Network: "local", Server: true, Bootstrap: []peer.AddrInfo{info(ph)}})
	}
	p2ptest.Eventually(t, "the routing table to consider every stranger", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sybils {
			if !asked[s] {
				return false
			}
		}
		return true
	})
	p2ptest.Eventually(t, "the listed peer in the routing table", func() bool { return proxy.InRoutingTable(lh.ID()) })
	in := 0
	for _, s := range sybils {
		if proxy.InRoutingTable(s) {
			in++
		}
	}
	if in > bound {
		t.Errorf("%d of %d unverified peers in the routing table, want at most %d", in, strangers, bound)
	}
	t.Logf("%d of %d unverified peers in the routing table (bound %d); the listed peer is in it", in, strangers, bound)
}
