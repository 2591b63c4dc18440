package p2p_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// limitedHost starts a loopback TCP host with cfg's limits, closed at
// cleanup.
func limitedHost(t *testing.T, limits func(*p2p.HostConfig)) host.Host {
	t.Helper()
	key, _ := p2ptest.NewKey(t)
	cfg := p2p.DefaultHostConfig()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	if limits != nil {
		limits(&cfg)
	}
	h, err := p2p.NewHost(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// dialer starts a host that only dials, closed at cleanup.
func dialer(t *testing.T) host.Host {
	t.Helper()
	return limitedHost(t, func(c *p2p.HostConfig) { c.Listen = nil })
}

const holdProto = "/cocoon/local/hold/1"

// holder serves holdProto on h: each stream is held, and counted per
// peer, until its opener ends it.
type holder struct {
	mu   sync.Mutex // guards held
	held map[peer.ID]int
}

func serveHolds(t *testing.T, h host.Host) *holder {
	hd := &holder{held: make(map[peer.ID]int)}
	sv := p2p.NewService(h, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	sv.Handle(holdProto, 0, func(_ context.Context, s network.Stream) error {
		p := s.Conn().RemotePeer()
		hd.mu.Lock()
		hd.held[p]++
		hd.mu.Unlock()
		defer func() {
			hd.mu.Lock()
			hd.held[p]--
			hd.mu.Unlock()
		}()
		s.Write([]byte{1}) // held: the opener reads this byte
		_, err := io.Copy(io.Discard, s)
		return err
	})
	return hd
}

func (hd *holder) count(p peer.ID) int {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	return hd.held[p]
}

// flood opens n streams from h to server and waits until each is either
// held (the server's byte arrived) or refused (reset); it returns the
// streams held, which the caller resets.
func flood(t *testing.T, h host.Host, server peer.ID, n int) (held []network.Stream, refused int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	type result struct {
		s  network.Stream
		ok bool
	}
	results := make(chan result, n)
	for range n {
		go func() {
			s, err := h.NewStream(ctx, server, holdProto)
			if err != nil {
				results <- result{}
				return
			}
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
				s.Reset()
				results <- result{}
				return
			}
			results <- result{s, true}
		}()
	}
	for range n {
		r := <-results
		if r.ok {
			held = append(held, r.s)
		} else {
			refused++
		}
	}
	return held, refused
}

func resetAll(ss []network.Stream) {
	for _, s := range ss {
		s.Reset()
	}
}

// TestStreamsPerPeerLimit: one peer opening far more streams than
// MaxStreamsPerPeer holds at most that many at once, the rest are reset;
// another peer still gets its own; MaxStreams bounds all peers together;
// and a peer's streams are available again once it ends some.
func TestStreamsPerPeerLimit(t *testing.T) {
	const perPeer, total, tries = 8, 20, 100
	server := limitedHost(t, func(c *p2p.HostConfig) { c.MaxStreamsPerPeer, c.MaxStreams = perPeer, total })
	hd := serveHolds(t, server)
	a, b, c := dialer(t), dialer(t), dialer(t)
	for _, h := range []host.Host{a, b, c} {
		p2ptest.Connect(t, h, server)
	}

	heldA, refusedA := flood(t, a, server.ID(), tries)
	defer func() { resetAll(heldA) }()
	heldB, refusedB := flood(t, b, server.ID(), tries)
	defer resetAll(heldB)
	heldC, refusedC := flood(t, c, server.ID(), tries)
	defer resetAll(heldC)
	t.Logf("%d streams each: a holds %d (%d reset), b %d (%d reset), c %d (%d reset); max_streams_per_peer %d, max_streams %d",
		tries, len(heldA), refusedA, len(heldB), refusedB, len(heldC), refusedC, perPeer, total)
	for name, held := range map[string]int{"a": len(heldA), "b": len(heldB)} {
		if held > perPeer || held < perPeer-2 {
			t.Errorf("%s holds %d streams, want %d (the per-peer limit)", name, held, perPeer)
		}
	}
	if all := len(heldA) + len(heldB) + len(heldC); all > total {
		t.Errorf("%d streams held in all, over max_streams %d", all, total)
	}
	if len(heldC) == 0 || len(heldC) > total-len(heldA)-len(heldB) {
		t.Errorf("c holds %d streams, want between 1 and what the host-wide limit leaves (%d)", len(heldC), total-len(heldA)-len(heldB))
	}

	// The limit is on streams at once: a's come back when it ends them.
	resetAll(heldA)
	p2ptest.Eventually(t, "the server to release a's streams", func() bool { return hd.count(a.ID()) == 0 })
	heldA, _ = flood(t, a, server.ID(), len(heldA))
	if n := hd.count(a.ID()); n != len(heldA) || n == 0 {
		t.Errorf("a holds %d streams again (server counts %d)", len(heldA), n)
	}
}

// TestConnectionLimit: peers connecting beyond MaxConns are refused
// before their security handshake, and a peer connected before them keeps
// its connection and is served.
func TestConnectionLimit(t *testing.T) {
	const maxConns, peers = 8, 30
	server := limitedHost(t, func(c *p2p.HostConfig) { c.MaxConns, c.ConnsHigh, c.ConnsLow = maxConns, maxConns, maxConns/2 })
	serveHolds(t, server)
	first := dialer(t)
	p2ptest.Connect(t, first, server)

	var accepted atomic.Int64
	var wg sync.WaitGroup
	info := peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}
	for range peers {
		d := dialer(t)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := d.Connect(ctx, info); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("%d peers dialled a host with max_conns %d that held 1 connection: %d accepted, %d refused",
		peers, maxConns, accepted.Load(), peers-int(accepted.Load()))
	if n := accepted.Load(); n+1 > maxConns {
		t.Errorf("%d connections accepted besides the first, over max_conns %d", n, maxConns)
	}
	if accepted.Load() == 0 {
		t.Error("no connection accepted under the limit")
	}
	if first.Network().Connectedness(server.ID()) != network.Connected {
		t.Fatal("the first peer lost its connection in the flood")
	}
	held, _ := flood(t, first, server.ID(), 1)
	defer resetAll(held)
	if len(held) != 1 {
		t.Fatal("the first peer is not served after the flood")
	}
}
