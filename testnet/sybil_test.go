package testnet_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// silentAddr listens on a loopback port that accepts connections and never
// answers: a dial to it hangs until its caller gives up.
func silentAddr(t *testing.T) ma.Multiaddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	a, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// provideFakeProxies makes n hosts, each under a fresh key, provide the
// proxy record in the DHT through proxy while advertising only silent, an
// address whose dials hang.
func provideFakeProxies(t *testing.T, proxy *node.Node, silent ma.Multiaddr, n int) {
	t.Helper()
	boot, err := peer.AddrInfoFromString(proxy.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for range n {
		key, _ := p2ptest.NewKey(t)
		h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return []ma.Multiaddr{silent} }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		d, err := dht.Start(ctx, h, dht.Config{Network: "local", Bootstrap: []peer.AddrInfo{*boot}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		// The routing table takes the proxy once identify has run.
		p2ptest.Eventually(t, "a fake host to provide the proxy record", func() bool { return d.ProvideProxy(ctx) == nil })
	}
}

// TestFakeProxyRecords: 50 fake proxy records in the DHT, at addresses
// whose dials hang, reach the client; they do not delay its real proxies.
// When its proxy leaves and the root contract lists another, the client
// answers through the new one within seconds, instead of after checking
// every fake record in turn, 10 s each.
func TestFakeProxyRecords(t *testing.T) {
	h := testnet.New(t, testnet.WithChain("sim-small"))
	first := h.AddProxy()
	h.AddWorker()
	client := h.AddClient()
	c := sdk(client)
	if _, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "before", 2)); err != nil {
		t.Fatal(err)
	}

	provideFakeProxies(t, first, silentAddr(t), 50)
	p2ptest.Eventually(t, "the client to take fake proxy records", func() bool {
		return len(client.Status(t.Context()).Kept) > 5
	})
	kept := len(client.Status(t.Context()).Kept)

	second := h.AddProxy()
	first.Close()
	start := time.Now()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	retry := time.NewTicker(100 * time.Millisecond) // as an app retries
	defer retry.Stop()
	for {
		resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "after", 2))
		if err == nil && servedBy(t, resp.RawJSON()) != "" {
			break
		}
		select {
		case <-retry.C:
		case <-deadline.C:
			t.Fatalf("the client did not answer through the new proxy %s within 20s of the first leaving: %v", second.ID(), err)
		}
	}
	took := time.Since(start)
	t.Logf("with %d peers kept (fake proxy records among them), the client answered through the new proxy %s after the first left", kept, took.Round(time.Millisecond))
}
