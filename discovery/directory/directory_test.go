package directory_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/attesttest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/discovery/directory"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const net = "local"

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeSource is a proxy's state, set by the test: it can say anything,
// which is how a lying proxy is made.
type fakeSource struct {
	mu       sync.Mutex // guards everything
	routes   []directory.Route
	verdicts map[peer.ID]attest.Verdict
	evidence map[peer.ID]*attest.Evidence
	prices   map[string]payments.Price // by peer + "/" + model
}

func newFakeSource() *fakeSource {
	return &fakeSource{verdicts: map[peer.ID]attest.Verdict{}, evidence: map[peer.ID]*attest.Evidence{}, prices: map[string]payments.Price{}}
}

// add lists worker p with ev, the proxy's claimed tier and models.
func (f *fakeSource) add(p peer.ID, ev *attest.Evidence, claim attest.Tier, models ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = append(f.routes, directory.Route{Peer: p, Models: models})
	f.verdicts[p] = attest.Verdict{Tier: claim, Kind: ev.Kind, Expiry: t0.Add(100 * time.Hour)}
	f.evidence[p] = ev
}

func (f *fakeSource) Routable() []directory.Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]directory.Route(nil), f.routes...)
}

func (f *fakeSource) Verified(p peer.ID) (attest.Verdict, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.verdicts[p]
	return v, ok
}

func (f *fakeSource) PeerEvidence(p peer.ID) (*attest.Evidence, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev, ok := f.evidence[p]
	return ev, ok
}

func (f *fakeSource) Price(p peer.ID, model string) (payments.Price, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pr, ok := f.prices[string(p)+"/"+model]
	return pr, ok
}

// countingValidator counts the evidence it validates.
type countingValidator struct {
	calls atomic.Int32
	v     attest.Validator
}

func (c *countingValidator) Validate(ctx context.Context, ev *attest.Evidence, pub crypto.PubKey, now time.Time) (attest.Verdict, error) {
	c.calls.Add(1)
	return c.v.Validate(ctx, ev, pub, now)
}

// devKinds accepts dev evidence, as a local network's client does.
func devKinds() *attest.Kinds {
	return attest.NewKinds(map[string]attest.Validator{dev.Kind: dev.Validator{}})
}

// newProxy serves src's directory from a loopback host to peers policy
// allows.
func newProxy(t *testing.T, src directory.Source, policy directory.Policy) (host.Host, *directory.Server) {
	t.Helper()
	h := p2ptest.NewHost(t)
	srv := directory.NewServer(net, src, policy, logtest.Discard)
	sv := p2p.NewService(h, logtest.Discard)
	srv.Register(sv)
	t.Cleanup(sv.Close)
	return h, srv
}

// newClient is a client connected to proxy, verifying with v at clock.
func newClient(t *testing.T, proxy host.Host, v attest.Validator, clock *clocktest.Clock, log *slog.Logger) *directory.Client {
	t.Helper()
	h := p2ptest.NewHost(t)
	p2ptest.Connect(t, h, proxy)
	return directory.NewClient(directory.ClientConfig{Network: net, Now: clock.Now}, h, v, log)
}

// devWorker is a worker's key and its dev evidence binding sealKey until
// expiry.
func devWorker(t *testing.T, expiry time.Time, sealKey []byte) (peer.ID, *attest.Evidence) {
	t.Helper()
	k, id := p2ptest.NewKey(t)
	ev, err := dev.Issuer{}.Issue(context.Background(), k.GetPublic(), expiry, sealKey)
	if err != nil {
		t.Fatal(err)
	}
	return id, ev
}

// TestHonestProxy: a proxy relays what its handshaker verified; the
// client verifies each worker itself and follows workers coming and going.
func TestHonestProxy(t *testing.T) {
	clock := clocktest.New(t0)
	keys := attesttest.NewSealKeys() // one source: distinct keys for every worker
	proxyRoutes := newFakeSource()   // only the routes and prices are the test's
	type worker struct {
		h  host.Host
		hs *attest.Handshaker
	}
	var workers []worker
	for range 3 {
		h := p2ptest.NewHost(t)
		hs := attest.NewHandshaker(h, dev.Issuer{}, keys, dev.Validator{}, attest.Config{Network: net, Now: clock.Now}, logtest.Discard)
		sv := p2p.NewService(h, logtest.Discard)
		hs.Register(sv)
		t.Cleanup(sv.Close)
		workers = append(workers, worker{h, hs})
	}
	proxyHost := p2ptest.NewHost(t)
	proxyHS := attest.NewHandshaker(proxyHost, dev.Issuer{}, nil, dev.Validator{}, attest.Config{Network: net, Now: clock.Now}, logtest.Discard)
	psv := p2p.NewService(proxyHost, logtest.Discard)
	proxyHS.Register(psv)
	srv := directory.NewServer(net, directory.Join(proxyRoutes, proxyHS, proxyRoutes), directory.AnyPeer{}, logtest.Discard)
	srv.Register(psv)
	t.Cleanup(psv.Close)

	price := payments.Price{Prompt: 100, Cached: 10, Completion: 300}
	for i, w := range workers {
		p2ptest.Connect(t, proxyHost, w.h)
		if _, err := proxyHS.Attest(ctxT(t), w.h.ID()); err != nil {
			t.Fatal(err)
		}
		proxyRoutes.mu.Lock()
		proxyRoutes.routes = append(proxyRoutes.routes, directory.Route{Peer: w.h.ID(), Models: []string{"m", "m", "a"}})
		if i == 0 {
			proxyRoutes.prices[string(w.h.ID())+"/m"] = price
		}
		proxyRoutes.mu.Unlock()
	}
	// Routed but never verified: the proxy has nothing to show for it.
	stranger, _ := p2ptest.NewKey(t)
	strangerID, _ := peer.IDFromPrivateKey(stranger)
	proxyRoutes.mu.Lock()
	proxyRoutes.routes = append(proxyRoutes.routes, directory.Route{Peer: strangerID, Models: []string{"m"}})
	proxyRoutes.mu.Unlock()

	validator := &countingValidator{v: devKinds()}
	client := newClient(t, proxyHost, validator, clock, logtest.New(t))
	got, err := client.Fetch(ctxT(t), proxyHost.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d workers, want the 3 the proxy verified", len(got))
	}
	byPeer := map[peer.ID]directory.Worker{}
	for _, w := range got {
		byPeer[w.Peer] = w
	}
	for i, w := range workers {
		g, ok := byPeer[w.h.ID()]
		if !ok {
			t.Fatalf("worker %d missing", i)
		}
		own, err := w.hs.Evidence(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if g.Verdict.Tier != attest.TierDev || !bytes.Equal(g.Verdict.SealKey, own.SealKey) || len(own.SealKey) == 0 {
			t.Errorf("worker %d: verdict %+v, want dev sealing to %x", i, g.Verdict, own.SealKey)
		}
		if len(g.Models) != 2 || g.Models[0].ID != "a" || g.Models[1].ID != "m" {
			t.Errorf("worker %d: models %+v, want a and m once each", i, g.Models)
		}
		wantPrice := i == 0
		if (g.Models[1].Price != nil) != wantPrice || (wantPrice && *g.Models[1].Price != price) || g.Models[0].Price != nil {
			t.Errorf("worker %d: prices %+v", i, g.Models)
		}
	}

	// Workers come and go: the next fetch follows the proxy's state.
	proxyRoutes.mu.Lock()
	proxyRoutes.routes = proxyRoutes.routes[1:] // worker 0 no longer routed
	proxyRoutes.mu.Unlock()
	proxyHS.Forget(workers[1].h.ID()) // worker 1's verdict dropped
	got, err = client.Fetch(ctxT(t), proxyHost.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Peer != workers[2].h.ID() {
		t.Fatalf("after two workers left: %+v, want worker 2 only", got)
	}
	if n := validator.calls.Load(); n != 3 {
		t.Fatalf("validated %d times, want 3: worker 2's verdict is cached", n)
	}
}

// TestLyingProxy: whatever the proxy claims, the client keeps only the
// workers whose evidence it verified, at the tier it computed, with the
// sealing key the evidence binds.
func TestLyingProxy(t *testing.T) {
	clock := clocktest.New(t0)
	exp := t0.Add(time.Hour)
	src := newFakeSource()

	honest, honestEv := devWorker(t, exp, []byte("honest worker's sealing key"))
	src.add(honest, honestEv, attest.TierTEE, "m") // dev evidence claimed as tee

	swapped, swappedEv := devWorker(t, exp, []byte("swapped worker's sealing key"))
	swappedEv.SealKey = []byte("the proxy's own sealing key")
	src.add(swapped, swappedEv, attest.TierDev, "m")

	replayer, _ := devWorker(t, exp, nil)
	src.add(replayer, honestEv, attest.TierDev, "m") // the honest worker's evidence, another peer ID

	expired, expiredEv := devWorker(t, t0.Add(-time.Second), []byte("expired worker's key"))
	src.add(expired, expiredEv, attest.TierDev, "m")

	gpu, gpuEv := devWorker(t, exp, []byte("second honest worker's key"))
	src.add(gpu, gpuEv, attest.TierTEEGPU, "m") // dev evidence claimed as tee-gpu

	stripped, strippedEv := devWorker(t, exp, []byte("stripped worker's key"))
	strippedEv.SealKey = nil // v2 evidence shown without its key
	src.add(stripped, strippedEv, attest.TierDev, "m")

	// A peer ID that only hashes its key: nothing to verify against.
	hashed, err := mh.Sum([]byte("some RSA key"), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	keyless := peer.ID(hashed)
	src.add(keyless, gpuEv, attest.TierDev, "m")

	proxy, _ := newProxy(t, src, directory.AnyPeer{})
	var logs logtest.Buffer
	client := newClient(t, proxy, devKinds(), clock, slog.New(slog.NewTextHandler(&logs, nil)))
	got, err := client.Fetch(ctxT(t), proxy.ID())
	if err != nil {
		t.Fatal(err)
	}
	want := map[peer.ID][]byte{honest: honestEv.SealKey, gpu: gpuEv.SealKey}
	if len(got) != len(want) {
		t.Fatalf("kept %d workers %+v, want the 2 honest ones", len(got), got)
	}
	for _, w := range got {
		key, ok := want[w.Peer]
		if !ok {
			t.Fatalf("kept dishonest entry %s", w.Peer)
		}
		if w.Verdict.Tier != attest.TierDev {
			t.Errorf("%s at tier %v, want dev whatever the proxy claimed", w.Peer, w.Verdict.Tier)
		}
		if !bytes.Equal(w.Verdict.SealKey, key) {
			t.Errorf("%s seals to %q, want %q", w.Peer, w.Verdict.SealKey, key)
		}
		if !w.Verdict.Expiry.Equal(exp) {
			t.Errorf("%s verdict expires %v, want %v", w.Peer, w.Verdict.Expiry, exp)
		}
	}
	text := logs.String()
	for _, p := range []peer.ID{swapped, replayer, expired, stripped, keyless} {
		if !strings.Contains(text, "peer="+p.String()) {
			t.Errorf("no logged reason for dropping %s:\n%s", p, text)
		}
	}
	for _, reason := range []string{attest.ErrBinding.Error(), attest.ErrExpired.Error(), "claimed=tee-gpu", "peer ID carries no public key"} {
		if !strings.Contains(text, reason) {
			t.Errorf("log lacks %q:\n%s", reason, text)
		}
	}

	t.Run("dev evidence where the network refuses it", func(t *testing.T) {
		client := newClient(t, proxy, attest.NewKinds(nil), clock, logtest.Discard)
		got, err := client.Fetch(ctxT(t), proxy.ID())
		if err != nil || len(got) != 0 {
			t.Fatalf("Fetch = %+v, %v; want no workers", got, err)
		}
	})
}

// TestVerdictCache: each evidence is verified once until its verdict
// expires; new evidence from the same worker is verified again.
func TestVerdictCache(t *testing.T) {
	clock := clocktest.New(t0)
	src := newFakeSource()
	a, aEv := devWorker(t, t0.Add(time.Hour), []byte("a1"))
	src.add(a, aEv, attest.TierDev, "m")
	proxy, _ := newProxy(t, src, directory.AnyPeer{})
	validator := &countingValidator{v: devKinds()}
	client := newClient(t, proxy, validator, clock, logtest.Discard)

	fetch := func(wantWorkers int, wantCalls int32) {
		t.Helper()
		got, err := client.Fetch(ctxT(t), proxy.ID())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != wantWorkers {
			t.Fatalf("%d workers, want %d", len(got), wantWorkers)
		}
		if n := validator.calls.Load(); n != wantCalls {
			t.Fatalf("validated %d times in all, want %d", n, wantCalls)
		}
	}
	fetch(1, 1)
	fetch(1, 1) // cached
	clock.Advance(59 * time.Minute)
	fetch(1, 1) // still live

	// The worker renewed its evidence (a new sealing key): verified anew.
	k2, err := attest.Binding(mustPub(t, a), t0.Add(2*time.Hour), []byte("a2"))
	if err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	src.evidence[a] = &attest.Evidence{Kind: dev.Kind, Expiry: t0.Add(2 * time.Hour).Unix(), ReportData: k2[:], SealKey: []byte("a2")}
	src.mu.Unlock()
	fetch(1, 2)

	// The old evidence again, after its expiry: the cached verdict is dead.
	src.mu.Lock()
	src.evidence[a] = aEv
	src.mu.Unlock()
	clock.Advance(time.Minute)
	fetch(0, 3)
}

func mustPub(t *testing.T, p peer.ID) crypto.PubKey {
	t.Helper()
	pub, err := p.ExtractPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

type denyAll struct{}

func (denyAll) Allow(peer.ID) error { return errors.New("not today") }

// TestRefusedAndMalformed: a proxy that refuses, or answers anything but
// a well-formed directory within the limits, is an error.
func TestRefusedAndMalformed(t *testing.T) {
	clock := clocktest.New(t0)
	proxy, _ := newProxy(t, newFakeSource(), denyAll{})
	client := newClient(t, proxy, devKinds(), clock, logtest.Discard)
	if _, err := client.Fetch(ctxT(t), proxy.ID()); !errors.Is(err, directory.ErrRefused) {
		t.Fatalf("Fetch from a refusing proxy: %v, want ErrRefused", err)
	}

	raw := func(write func(s network.Stream) error) host.Host {
		h := p2ptest.NewHost(t)
		sv := p2p.NewService(h, logtest.Discard)
		sv.Handle(directory.ProtocolID(net), 10*time.Second, func(_ context.Context, s network.Stream) error { return write(s) })
		t.Cleanup(sv.Close)
		return h
	}
	for _, tc := range []struct {
		name  string
		write func(s network.Stream) error
	}{
		{"oversized frame", func(s network.Stream) error {
			// The header announces one byte too many; nothing follows.
			var hdr []byte
			hdr = appendUvarint(hdr, uint64(directory.MaxSize+3))
			_, err := s.Write(append(hdr, p2p.FrameVersion, 1))
			return err
		}},
		{"not JSON", func(s network.Stream) error { return p2p.WriteFrame(s, 1, []byte("{workers")) }},
		{"unknown frame type", func(s network.Stream) error { return p2p.WriteFrame(s, 9, []byte("{}")) }},
		{"another version", func(s network.Stream) error {
			return p2p.WriteFrame(s, 1, []byte(`{"version":2,"network":"local","workers":[]}`))
		}},
		{"another network", func(s network.Stream) error {
			return p2p.WriteFrame(s, 1, []byte(`{"version":1,"network":"mainnet","workers":[]}`))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := raw(tc.write)
			client := newClient(t, proxy, devKinds(), clock, logtest.Discard)
			if _, err := client.Fetch(ctxT(t), proxy.ID()); !errors.Is(err, directory.ErrMalformed) {
				t.Fatalf("Fetch = %v, want ErrMalformed", err)
			}
		})
	}
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// Workers keeps a proxy's directory for MaxAge: a worker that joins shows
// once the copy is older, or at once when the caller asks afresh; a
// verdict that expires in the copy makes it be read again.
func TestWorkersKept(t *testing.T) {
	clock := clocktest.New(t0)
	src := newFakeSource()
	a, aEv := devWorker(t, t0.Add(time.Hour), []byte("a"))
	src.add(a, aEv, attest.TierDev, "m")
	proxy, _ := newProxy(t, src, directory.AnyPeer{})
	client := newClient(t, proxy, devKinds(), clock, logtest.Discard)
	workers := func(refresh bool, want ...peer.ID) {
		t.Helper()
		got, err := client.Workers(ctxT(t), proxy.ID(), refresh)
		if err != nil {
			t.Fatal(err)
		}
		var ids []peer.ID
		for _, w := range got {
			ids = append(ids, w.Peer)
		}
		slices.Sort(ids)
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("workers %v, want %v", ids, want)
		}
	}
	workers(false, a)
	b, bEv := devWorker(t, t0.Add(2*time.Hour), []byte("b"))
	src.add(b, bEv, attest.TierDev, "m")
	workers(false, a) // the copy is fresh
	workers(true, a, b)
	c, cEv := devWorker(t, t0.Add(2*time.Hour), []byte("c"))
	src.add(c, cEv, attest.TierDev, "m")
	clock.Advance(4 * time.Second)
	workers(false, a, b)
	clock.Advance(2 * time.Second) // past the default MaxAge of 5 s
	workers(false, a, b, c)
	// a's evidence expires: the copy holds a dead verdict and is read
	// again, and a, whose evidence the proxy still lists, fails.
	clock.Advance(time.Hour)
	workers(false, b, c)
	client.Forget(proxy.ID())
	workers(false, b, c)
}
