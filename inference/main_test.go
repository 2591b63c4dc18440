package inference_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/p2p"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var discard = slog.New(slog.DiscardHandler)

// hostPair starts two loopback hosts, the client connected to the server,
// and a Service on the server; all closed at cleanup.
func hostPair(t *testing.T) (server, client host.Host, sv *p2p.Service) {
	t.Helper()
	mk := func() host.Host {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cfg := p2p.DefaultHostConfig()
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		h, err := p2p.NewHost(cfg, key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	server, client = mk(), mk()
	sv = p2p.NewService(server, discard)
	t.Cleanup(sv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return server, client, sv
}

// waitFor fails the test unless ch delivers within 10 s.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
