package testnet_test

import (
	"testing"

	"github.com/cocoon-mesh/cocoon/inference/seal"
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
