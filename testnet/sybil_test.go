package testnet_test

import (
	"context"
	"testing"
	"time"

	"crypto/rand"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

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

	provideFakeProxies(t, first, p2ptest.SilentAddr(t), 50)
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

// TestSybilOfferFlood: a peer connected to a proxy publishes 10,000 valid
// offers, each under a fresh key. The proxy's book holds no more than its
// per-neighbour share of them (gossip.book_per_peer, 500 here) and takes no
// more than gossip.peer_rate a second (20 here), and a worker that joins
// during the flood serves the client's requests within seconds.
func TestSybilOfferFlood(t *testing.T) {
	const peerRate, perPeer = 20, 500
	h := testnet.New(t)
	h.AddWorker()
	p := h.AddProxy(func(c *config.Config) { c.Gossip.PeerRate, c.Gossip.BookPerPeer = peerRate, perPeer })
	client := h.AddClient()

	rogue, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rogue.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, rogue, pubsub.WithPeerOutboundQueueSize(20_000))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(offers.Topic("local"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topic.Close() })
	boot, err := peer.AddrInfoFromString(p.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := rogue.Connect(ctx, *boot); err != nil {
		t.Fatal(err)
	}
	p2ptest.Eventually(t, "the rogue to share the offers topic with the proxy", func() bool { return len(topic.ListPeers()) > 0 })

	const flood = 10_000
	start := time.Now()
	var most atomic.Int64 // the most offers the proxy's book held during the flood
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range flood {
			if ctx.Err() != nil {
				return
			}
			key, _, err := crypto.GenerateEd25519Key(rand.Reader)
			if err != nil {
				return
			}
			id, _ := peer.IDFromPrivateKey(key)
			// Each offer lives as long as an offer may, from when it is sent.
			o := &offers.Offer{Network: "local", Peer: id.String(), Role: offers.RoleWorker, Seq: 1,
				Expiry: time.Now().Add(offers.MaxTTL - 5*time.Second).UnixMilli(),
				Models: []offers.ModelOffer{{ID: "sim-small"}}, MaxConcurrent: 8, Tier: "dev"}
			b, err := offers.Sign(o, key)
			if err != nil {
				return
			}
			topic.Publish(ctx, b, pubsub.WithSecretKeyAndPeerId(key, id))
			if i%100 == 0 {
				if n := int64(len(p.Offers())); n > most.Load() {
					most.Store(n)
				}
			}
		}
	}()

	late := h.AddWorker(testnet.Joining(p))
	joined := time.Now()
	c := sdk(client)
	p2ptest.Eventually(t, "the worker that joined during the flood to serve", func() bool {
		resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "flood", 2))
		return err == nil && servedBy(t, resp.RawJSON()) == late.ID().String()
	})
	served := time.Since(joined)
	<-done
	elapsed := time.Since(start)
	booked := int64(len(p.Offers()))
	if booked > most.Load() {
		most.Store(booked)
	}
	bound := min(perPeer, int(2*peerRate+peerRate*elapsed.Seconds())) + 3 // and the three honest offers
	t.Logf("flood of %d offers under fresh keys in %s: the proxy's book held at most %d live offers (bound %d); the worker that joined during it served after %s",
		flood, elapsed.Round(time.Millisecond), most.Load(), bound, served.Round(time.Millisecond))
	if most.Load() > int64(bound) {
		t.Fatalf("the proxy's book held %d offers during a flood of %d, want at most %d", most.Load(), flood, bound)
	}
}
