package testnet_test

import (
	"bytes"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/discovery/directory"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestWorkerBindsSealingKey: a worker's evidence binds a sealing key that
// its proxy verified with it (a v2 binding); the key parses as the hybrid
// ML-KEM-768 + X25519 key the seal package makes. Proxies and clients
// present evidence with no sealing key: they open nothing sealed.
func TestWorkerBindsSealingKey(t *testing.T) {
	h := testnet.New(t)
	w := h.AddWorker()
	p := h.AddProxy()
	c := h.AddClient()

	v, ok := p.Verified(w.ID())
	if !ok {
		t.Fatal("the proxy holds no verdict on its worker")
	}
	key, err := seal.ParsePublicKey(v.SealKey)
	if err != nil {
		t.Fatalf("the worker's verified sealing key (%d bytes): %v", len(v.SealKey), err)
	}
	if key.KEM() != seal.MLKEM768X25519 {
		t.Errorf("sealing key of KEM %v, want %v", key.KEM(), seal.MLKEM768X25519)
	}
	if v, ok := c.Verified(p.ID()); !ok || len(v.SealKey) != 0 {
		t.Errorf("the client's verdict on its proxy: live %v, sealing key of %d bytes; want live, none", ok, len(v.SealKey))
	}
	if v, ok := p.Verified(c.ID()); ok && len(v.SealKey) != 0 {
		t.Errorf("the proxy's verdict on its client carries a sealing key of %d bytes", len(v.SealKey))
	}
}

// TestProxyDirectory: a bare host with no evidence at all (a developer's
// laptop) reads a proxy's directory and, checking each entry itself,
// finds the proxy's worker at the tier its own check gives, with the
// sealing key the worker's evidence binds, the same key the proxy
// verified.
func TestProxyDirectory(t *testing.T) {
	h := testnet.New(t)
	w := h.AddWorker()
	p := h.AddProxy()

	laptop := p2ptest.NewHost(t)
	ai, err := peer.AddrInfoFromString(p.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := laptop.Connect(t.Context(), *ai); err != nil {
		t.Fatal(err)
	}
	dc := directory.NewClient(directory.ClientConfig{Network: "local"}, laptop, dev.Validator{}, logtest.New(t))
	workers, err := dc.Fetch(t.Context(), p.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(workers) != 1 || workers[0].Peer != w.ID() {
		t.Fatalf("directory lists %+v, want the one worker %s", workers, w.ID())
	}
	got := workers[0]
	if got.Verdict.Tier != attest.TierDev || len(got.Models) == 0 {
		t.Errorf("worker at tier %v with models %v; want dev, with its models", got.Verdict.Tier, got.Models)
	}
	proxys, _ := p.Verified(w.ID())
	if len(got.Verdict.SealKey) == 0 || !bytes.Equal(got.Verdict.SealKey, proxys.SealKey) {
		t.Errorf("the laptop verified sealing key %x, the proxy %x; want the same, not empty", got.Verdict.SealKey, proxys.SealKey)
	}
}
