package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	idA = "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"
	idB = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
)

func TestParseAddrs(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    map[string]int // peer ID -> number of addresses
		wantErr string
	}{
		{"none", nil, map[string]int{}, ""},
		{"one", []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + idA}, map[string]int{idA: 1}, ""},
		{"two addresses of one peer merge", []string{
			"/ip4/127.0.0.1/tcp/4001/p2p/" + idA,
			"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + idA,
		}, map[string]int{idA: 2}, ""},
		{"two peers", []string{
			"/ip4/127.0.0.1/tcp/4001/p2p/" + idA,
			"/ip6/::1/tcp/4002/p2p/" + idB,
		}, map[string]int{idA: 1, idB: 1}, ""},
		{"bare peer ID", []string{"/p2p/" + idA}, map[string]int{idA: 0}, ""},
		{"missing /p2p", []string{"/ip4/127.0.0.1/tcp/4001"}, nil, "/p2p/"},
		{"one good, one missing /p2p", []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + idA, "/ip4/127.0.0.1/tcp/4002"}, nil, "/p2p/"},
		{"garbage", []string{"not a multiaddr"}, nil, "not a multiaddr"},
		{"host:port", []string{"127.0.0.1:4001"}, nil, "127.0.0.1:4001"},
		{"bad peer ID", []string{"/ip4/127.0.0.1/tcp/4001/p2p/QmNotAPeer"}, nil, "QmNotAPeer"},
		{"empty string", []string{""}, nil, `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			infos, err := discovery.ParseAddrs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error mentioning %q", infos, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, ai := range infos {
				got[ai.ID.String()] = len(ai.Addrs)
			}
			if len(got) != len(tt.want) || len(infos) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for id, n := range tt.want {
				if got[id] != n {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// recorder is a Checker that counts its calls and lets tests wait for them.
type recorder struct {
	upErr atomic.Pointer[error]
	mu    sync.Mutex // guards ups and downs
	ups   map[peer.ID]int
	downs map[peer.ID]int
}

func newRecorder() *recorder {
	return &recorder{ups: map[peer.ID]int{}, downs: map[peer.ID]int{}}
}

func (r *recorder) Up(_ context.Context, p peer.ID) error {
	r.mu.Lock()
	r.ups[p]++
	r.mu.Unlock()
	if e := r.upErr.Load(); e != nil {
		return *e
	}
	return nil
}

func (r *recorder) Down(p peer.ID) {
	r.mu.Lock()
	r.downs[p]++
	r.mu.Unlock()
}

func (r *recorder) counts(p peer.ID) (ups, downs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ups[p], r.downs[p]
}

func listed(k *discovery.Keeper, p peer.ID) bool {
	for _, q := range k.Up() {
		if q == p {
			return true
		}
	}
	return false
}

// run runs k until the test ends, and checks Run returns nil then.
func run(t *testing.T, k *discovery.Keeper) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func info(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

func TestKeeperUpAndDown(t *testing.T) {
	self, other := p2ptest.NewHost(t), p2ptest.NewHost(t)
	rec := newRecorder()
	k := discovery.NewKeeper(self, []peer.AddrInfo{info(other)}, time.Hour, rec, logtest.Discard)
	if k.Settled() {
		t.Fatal("settled before Run")
	}
	run(t, k)
	p2ptest.Eventually(t, "the first pass", k.Settled)

	p2ptest.Eventually(t, "the peer to be up", func() bool { return listed(k, other.ID()) })
	if ups, downs := rec.counts(other.ID()); ups != 1 || downs != 0 {
		t.Fatalf("after the first pass: %d ups, %d downs", ups, downs)
	}

	// The peer goes away: the dropped connection is noticed at once,
	// without waiting for the hour-long interval.
	other.Close()
	p2ptest.Eventually(t, "Down to be called", func() bool { _, downs := rec.counts(other.ID()); return downs > 0 })
	p2ptest.Eventually(t, "the peer to leave Up()", func() bool { return !listed(k, other.ID()) })
}

func TestKeeperUpHookFails(t *testing.T) {
	self, other := p2ptest.NewHost(t), p2ptest.NewHost(t)
	rec := newRecorder()
	failure := errors.New("attestation failed")
	rec.upErr.Store(&failure)
	k := discovery.NewKeeper(self, []peer.AddrInfo{info(other)}, time.Hour, rec, logtest.Discard)
	run(t, k)
	p2ptest.Eventually(t, "Down for a failing peer", func() bool { _, downs := rec.counts(other.ID()); return downs > 0 })
	if listed(k, other.ID()) {
		t.Fatal("a peer whose Up hook failed is listed")
	}

	// Once the hook passes, a poke brings the peer up.
	rec.upErr.Store(nil)
	k.Poke()
	p2ptest.Eventually(t, "the peer to be up", func() bool { return listed(k, other.ID()) })
}

func TestKeeperUnreachable(t *testing.T) {
	self, gone := p2ptest.NewHost(t), p2ptest.NewHost(t)
	ai := info(gone)
	gone.Close()
	rec := newRecorder()
	k := discovery.NewKeeper(self, []peer.AddrInfo{ai}, time.Hour, rec, logtest.Discard)
	run(t, k)
	p2ptest.Eventually(t, "Down for an unreachable peer", func() bool { _, downs := rec.counts(ai.ID); return downs > 0 })
	if ups, _ := rec.counts(ai.ID); ups != 0 {
		t.Fatalf("Up called %d times for an unreachable peer", ups)
	}
	if len(k.Up()) != 0 {
		t.Fatalf("Up() = %v", k.Up())
	}
}

func TestKeeperPoke(t *testing.T) {
	self, a, b := p2ptest.NewHost(t), p2ptest.NewHost(t), p2ptest.NewHost(t)
	rec := newRecorder()
	k := discovery.NewKeeper(self, []peer.AddrInfo{info(a), info(b)}, time.Hour, rec, logtest.Discard)
	run(t, k)
	p2ptest.Eventually(t, "both peers up", func() bool { return len(k.Up()) == 2 })
	if got := k.Up(); got[0] != a.ID() || got[1] != b.ID() {
		t.Fatalf("Up() = %v, want the configured order", got)
	}
	for i := 2; i <= 3; i++ {
		k.Poke()
		p2ptest.Eventually(t, "a poked check", func() bool {
			ua, _ := rec.counts(a.ID())
			ub, _ := rec.counts(b.ID())
			return ua == i && ub == i
		})
	}
}

func TestKeeperInterval(t *testing.T) {
	self, other := p2ptest.NewHost(t), p2ptest.NewHost(t)
	rec := newRecorder()
	k := discovery.NewKeeper(self, []peer.AddrInfo{info(other)}, 10*time.Millisecond, rec, logtest.Discard)
	run(t, k)
	p2ptest.Eventually(t, "periodic checks", func() bool { ups, _ := rec.counts(other.ID()); return ups >= 3 })
}

func TestParseAddrsKeepsOrder(t *testing.T) {
	ids := []string{
		"12D3KooWNFpLXoNSakESamyTHGDZ2Ehj6m2SAwiMHyyNnrsHsZwf",
		"12D3KooWPYEnSpGx4S8P9dfLuMkh3gAXjbW24Up1FKvcMQAa66Ai",
		"12D3KooWHiuZHBM633paBQPvMX95ysheSfLKfHtgVf4U3mrjZKnF",
		"12D3KooWREwSRR2TKJyGL6un3etta8ZgKwQGLgPWUuoDbQZs6ygN",
	}
	for range 20 {
		var addrs []string
		for i, id := range ids {
			addrs = append(addrs, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", 4000+i, id))
		}
		addrs = append(addrs, "/ip4/127.0.0.1/udp/4000/quic-v1/p2p/"+ids[0])
		infos, err := discovery.ParseAddrs(addrs)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != len(ids) {
			t.Fatalf("%d peers, want %d", len(infos), len(ids))
		}
		for i, ai := range infos {
			if ai.ID.String() != ids[i] {
				t.Fatalf("peer %d is %s, want %s: order of the addresses lost", i, ai.ID, ids[i])
			}
		}
		if len(infos[0].Addrs) != 2 {
			t.Fatalf("first peer has %d addresses, want its TCP and QUIC ones merged", len(infos[0].Addrs))
		}
	}
}

func TestKeeperAdd(t *testing.T) {
	self, a, b := p2ptest.NewHost(t), p2ptest.NewHost(t), p2ptest.NewHost(t)
	rec := newRecorder()
	k := discovery.NewKeeper(self, []peer.AddrInfo{info(a)}, time.Hour, rec, logtest.Discard)
	run(t, k)
	p2ptest.Eventually(t, "the first peer up", func() bool { return listed(k, a.ID()) })

	// A peer found later is checked at once, not at the next hourly tick.
	if !k.Add(info(b)) {
		t.Fatal("Add of a new peer reported it known")
	}
	p2ptest.Eventually(t, "the added peer up", func() bool { return listed(k, b.ID()) })
	if k.Add(info(b)) || k.Add(info(self)) {
		t.Fatal("Add of a known peer, or of self, reported it new")
	}
	if got := k.Up(); len(got) != 2 || got[0] != a.ID() || got[1] != b.ID() {
		t.Fatalf("Up() = %v, want [a b]", got)
	}
	if got := k.Peers(); len(got) != 2 || got[0] != a.ID() || got[1] != b.ID() {
		t.Fatalf("Peers() = %v, want [a b]", got)
	}

	// An added peer that drops is noticed like a configured one.
	b.Close()
	p2ptest.Eventually(t, "the added peer down", func() bool { return !listed(k, b.ID()) })
}

// silentPeers listens on n loopback ports that accept connections and never
// answer, and returns an address for each under a fresh peer ID: fake
// records whose dial hangs until the check times out.
func silentPeers(t *testing.T, n int) []peer.AddrInfo {
	t.Helper()
	var out []peer.AddrInfo
	for range n {
		_, id := p2ptest.NewKey(t)
		out = append(out, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{p2ptest.SilentAddr(t)}})
	}
	return out
}

// TestKeeperFakePeers: 50 fake records whose dials hang do not delay the
// checks of the real, listed peer, which stays up and is checked every
// interval; the keeper keeps at most its bound of found peers.
func TestKeeperFakePeers(t *testing.T) {
	self, real := p2ptest.NewHost(t), p2ptest.NewHost(t)
	rec := newRecorder()
	k := discovery.NewKeeper(self, []peer.AddrInfo{info(real)}, 50*time.Millisecond, rec, logtest.Discard)
	run(t, k)
	p2ptest.Eventually(t, "the real peer up", func() bool { return listed(k, real.ID()) })

	fakes := silentPeers(t, 50)
	added := 0
	for _, ai := range fakes {
		if k.Add(ai) {
			added++
		}
	}
	if added != discovery.DefaultMaxFound || len(k.Peers()) != 1+discovery.DefaultMaxFound {
		t.Fatalf("%d of 50 fake records taken, %d peers kept; want %d found peers at most", added, len(k.Peers()), discovery.DefaultMaxFound)
	}
	if k.Peers()[0] != real.ID() {
		t.Fatal("the listed peer is not first")
	}
	before, _ := rec.counts(real.ID())
	start := time.Now()
	p2ptest.Eventually(t, "20 more checks of the real peer", func() bool { ups, _ := rec.counts(real.ID()); return ups >= before+20 })
	took := time.Since(start)
	if !listed(k, real.ID()) {
		t.Fatal("the real peer is not up")
	}
	t.Logf("with %d fake records hanging their dials, 20 checks of the real peer took %s (interval 50ms)", added, took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Fatalf("20 checks of the real peer took %s with fake records in the keeper", took)
	}
}

// TestKeeperEvictsUnreachable: found peers that fail their checks are
// forgotten, which frees room for others; listed ones never are.
func TestKeeperEvictsUnreachable(t *testing.T) {
	self, real, gone := p2ptest.NewHost(t), p2ptest.NewHost(t), p2ptest.NewHost(t)
	goneInfo := info(gone)
	gone.Close()
	rec := newRecorder()
	k := discovery.NewKeeper(self, []peer.AddrInfo{info(real), goneInfo}, 20*time.Millisecond, rec, logtest.Discard,
		discovery.WithMaxFound(10))
	run(t, k)
	var dead []peer.AddrInfo
	for range 10 {
		h := p2ptest.NewHost(t)
		dead = append(dead, info(h))
		h.Close()
	}
	for _, ai := range dead {
		if !k.Add(ai) {
			t.Fatal("a found peer refused under the bound")
		}
	}
	p2ptest.Eventually(t, "the unreachable found peers to be dropped", func() bool { return len(k.Peers()) == 2 })
	if got := k.Peers(); got[0] != real.ID() || got[1] != goneInfo.ID {
		t.Fatalf("Peers() = %v, want the two listed ones", got)
	}
	if k.Add(dead[0]) {
		t.Fatal("a dropped peer, found again at once, was taken back")
	}
	late := p2ptest.NewHost(t)
	if !k.Add(info(late)) {
		t.Fatal("no room for a found peer after the unreachable ones were dropped")
	}
	p2ptest.Eventually(t, "the late found peer up", func() bool { return listed(k, late.ID()) })
}
