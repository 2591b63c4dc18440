package testnet_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestStrangerCannotUseRelay: a real proxy's relay refuses a stranger (a
// host that does not speak the attestation handshake) a slot, and a
// circuit to the private worker that holds one (issue 17, item 2).
func TestStrangerCannotUseRelay(t *testing.T) {
	h := testnet.New(t)
	p := h.AddProxyAlone()
	w := h.AddWorker(testnet.Joining(p), func(c *config.Config) { c.P2P.Private, c.P2P.Listen = true, nil })
	p2ptest.Eventually(t, "the worker's relay slot", func() bool { return len(w.Addrs()) > 0 })
	infos, err := discovery.ParseAddrs(p.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hc := p2p.DefaultHostConfig()
	hc.Listen, hc.Private = nil, true
	stranger, err := p2p.NewHost(hc, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := p2p.NewReservations(stranger, nil).Reserve(ctx, infos[0]); err == nil {
		t.Fatal("a stranger reserved a slot on the proxy's relay")
	}
	wInfos, err := discovery.ParseAddrs(w.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	if err := stranger.Connect(ctx, peer.AddrInfo{ID: w.ID(), Addrs: wInfos[0].Addrs}); err == nil {
		t.Fatal("a stranger opened a circuit to the private worker through the proxy")
	}
}
