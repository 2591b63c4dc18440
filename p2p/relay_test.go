package p2p_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func newHostWith(t *testing.T, cfg p2p.HostConfig) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.NewHost(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// fakeGate admits the peers in it, or everyone when it is nil.
type fakeGate struct {
	mu       sync.Mutex
	admitted map[peer.ID]bool
}

func (g *fakeGate) Admit(_ context.Context, p peer.ID) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.admitted[p]
}

func (g *fakeGate) add(p peer.ID) {
	g.mu.Lock()
	g.admitted[p] = true
	g.mu.Unlock()
}

// newRelay starts a host running the relay service behind gate (nil
// admits everyone).
func newRelay(t *testing.T, cfg p2p.HostConfig, gate *fakeGate) (host.Host, *p2p.Relay) {
	t.Helper()
	cfg.RelayService = true
	h := newHostWith(t, cfg)
	var g p2p.RelayGate = gate
	if gate == nil {
		g = (*fakeGate)(nil)
	}
	r, err := p2p.NewRelay(h, cfg, g, logtest.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return h, r
}

// A private host with no listener at all is reached through a relay it
// holds a slot on, and the relayed connection carries more than relay v2's
// default limit (128 KiB) on an ordinary stream.
func TestPrivateHostReachedThroughRelay(t *testing.T) {
	relay, _ := newRelay(t, p2p.DefaultHostConfig(), nil)

	wc := p2p.DefaultHostConfig()
	wc.Listen, wc.Private = nil, true
	worker := newHostWith(t, wc)
	const proto = "/cocoon/test/echo/1"
	worker.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		io.Copy(s, s)
	})
	now := time.Now()
	res := p2p.NewReservations(worker, func() time.Time { return now })
	if len(res.Addrs()) != 0 {
		t.Fatalf("addresses before any reservation: %v", res.Addrs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := res.Reserve(ctx, peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}); err != nil {
		t.Fatal(err)
	}
	addrs := res.Addrs()
	if len(addrs) != len(relay.Addrs()) || !strings.Contains(addrs[0].String(), "/p2p/"+relay.ID().String()+"/p2p-circuit") {
		t.Fatalf("relayed addresses %v", addrs)
	}

	other := p2ptest.NewHost(t)
	if err := other.Connect(ctx, peer.AddrInfo{ID: worker.ID(), Addrs: addrs}); err != nil {
		t.Fatalf("connecting through the relay: %v", err)
	}
	s, err := other.NewStream(ctx, worker.ID(), proto)
	if err != nil {
		t.Fatalf("stream over the relayed connection: %v", err)
	}
	if !strings.Contains(s.Conn().RemoteMultiaddr().String(), "/p2p-circuit") {
		t.Fatalf("connected over %s, want the relay", s.Conn().RemoteMultiaddr())
	}
	msg := bytes.Repeat([]byte("cocoon"), 50_000) // 300 KB
	go func() {
		s.Write(msg)
		s.CloseWrite()
	}()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the relay: %d of %d bytes, %v", len(got), len(msg), err)
	}

	// An expired slot is not advertised; Drop forgets a live one.
	now = now.Add(2 * time.Hour)
	if a := res.Addrs(); len(a) != 0 {
		t.Fatalf("expired slot still advertised: %v", a)
	}
	now = now.Add(-2 * time.Hour)
	res.Drop(relay.ID())
	if a := res.Addrs(); len(a) != 0 {
		t.Fatalf("dropped slot still advertised: %v", a)
	}
}

// A relay that does not run the relay service refuses reservations.
func TestReserveOnNonRelay(t *testing.T) {
	plain := p2ptest.NewHost(t)
	wc := p2p.DefaultHostConfig()
	wc.Listen, wc.Private = nil, true
	worker := newHostWith(t, wc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p2p.NewReservations(worker, nil).Reserve(ctx, peer.AddrInfo{ID: plain.ID(), Addrs: plain.Addrs()}); err == nil {
		t.Fatal("reserved a slot on a host that relays nothing")
	}
}
