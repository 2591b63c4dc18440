package discovery_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// fakeAttester is a discovery.Forgetter that finds every peer attested.
type fakeAttester struct{}

func (fakeAttester) Attest(context.Context, peer.ID) (attest.Verdict, error) {
	return attest.Verdict{}, nil
}
func (fakeAttester) Forget(peer.ID) {}

// fakeRoutes is a discovery.Routes that records the workers routed to.
type fakeRoutes struct {
	mu sync.Mutex // guards up
	up map[peer.ID]bool
}

func (r *fakeRoutes) SetWorker(p peer.ID, _ *inference.Catalog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up[p] = true
}

func (r *fakeRoutes) WorkerDown(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.up, p)
}

func (r *fakeRoutes) Serving(p peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up[p]
}

func offerOf(ai peer.AddrInfo, expiry time.Time) *offers.Offer {
	var addrs []string
	for _, a := range ai.Addrs {
		addrs = append(addrs, a.String()+"/p2p/"+ai.ID.String())
	}
	return &offers.Offer{Network: "local", Peer: ai.ID.String(), Role: offers.RoleWorker, Seq: 1, Expiry: expiry.UnixMilli(),
		Models: []offers.ModelOffer{{ID: "sim-small"}}, MaxConcurrent: 1, Addrs: addrs}
}

// TestWorkersFakeOffers: 50 offers of fake workers whose dials hang do not
// delay a real worker: it is routed to within a second, while the fakes
// wait out their dials a few at a time.
func TestWorkersFakeOffers(t *testing.T) {
	self, real := p2ptest.NewHost(t), p2ptest.NewHost(t)
	real.SetStreamHandler(p2p.ProtocolID("local", inference.CatalogProtocolName, inference.CatalogProtocolVersion), func(s network.Stream) {
		inference.ServeCatalog(s, &inference.Catalog{Models: []inference.Model{{ID: "sim-small"}}})
		s.Close()
	})
	book := offers.NewBook(nil)
	expiry := time.Now().Add(time.Minute)
	fakes := silentPeers(t, 50)
	before := 0
	for _, ai := range fakes {
		if err := book.Put(ai.ID, offerOf(ai, expiry)); err != nil {
			t.Fatal(err)
		}
		if ai.ID < real.ID() {
			before++
		}
	}
	routes := &fakeRoutes{up: make(map[peer.ID]bool)}
	w := discovery.NewWorkers(self, "local", nil, book, fakeAttester{}, routes, time.Hour, logtest.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The real worker joins: connected, as a gossip neighbour is.
	// Its offer arrives after the fakes', announced on the event bus as
	// the gossip does.
	emit, err := self.EventBus().Emitter(new(offers.EvtOfferAccepted))
	if err != nil {
		t.Fatal(err)
	}
	defer emit.Close()
	p2ptest.Connect(t, self, real)
	start := time.Now()
	o := offerOf(peer.AddrInfo{ID: real.ID(), Addrs: real.Addrs()}, expiry)
	if err := book.Put(real.ID(), o); err != nil {
		t.Fatal(err)
	}
	emit.Emit(offers.EvtOfferAccepted{From: real.ID(), Offer: o, At: time.Now()})
	p2ptest.Eventually(t, "the real worker to be routed to", func() bool { return routes.Serving(real.ID()) })
	took := time.Since(start)
	t.Logf("with 50 fake offers (%d sorting before it), the real worker was routed to in %s", before, took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Fatalf("the real worker was routed to after %s", took)
	}
}
