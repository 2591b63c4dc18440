package discovery

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// fakeRegistry is a Registry that lists the given models.
type fakeRegistry struct{ models []string }

func (r fakeRegistry) Current() *registry.Registry {
	reg := &registry.Registry{}
	for _, m := range r.models {
		reg.Models = append(reg.Models, registry.Model{Name: m})
	}
	return reg
}

// servingSet is a fake Serving.
type servingSet map[peer.ID]bool

func (s servingSet) Serving(p peer.ID) bool { return s[p] }

// TestWantedModels: 1,000 offers of made-up models, under fresh keys, do
// not feed DHT lookups: a proxy looks up the models its root contract
// lists, or, when it lists none, at most MaxLookupModels, the models of
// workers it routes to first.
func TestWantedModels(t *testing.T) {
	book := offers.NewBook(nil)
	expiry := time.Now().Add(time.Minute).UnixMilli()
	put := func(id peer.ID, model string) {
		o := &offers.Offer{Network: "local", Peer: id.String(), Role: offers.RoleWorker, Seq: 1, Expiry: expiry,
			Models: []offers.ModelOffer{{ID: model}}, MaxConcurrent: 1}
		if err := book.Put(id, o); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		put(peer.ID(fmt.Sprint("sybil-", i)), fmt.Sprintf("fake-%03d", i%100))
	}
	_, real := p2ptest.NewKey(t)
	put(real, "sim-small")

	tests := []struct {
		name   string
		listed []string
		want   func([]string) bool
	}{
		{"the contract's models only", []string{"sim-small", "sim-large"}, func(got []string) bool {
			return slices.Equal(got, []string{"sim-large", "sim-small"})
		}},
		{"none listed: bounded, routed first", nil, func(got []string) bool {
			return len(got) == MaxLookupModels && got[0] == "sim-small"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &Lookup{reg: fakeRegistry{tt.listed}, book: book, serving: servingSet{real: true}}
			got := l.wantedModels()
			if !tt.want(got) {
				t.Fatalf("%d models looked up: %v", len(got), got[:min(len(got), 20)])
			}
		})
	}
}

// TestEachParallel: peers found in a lookup are dialed lookupParallel at a
// time, so records whose dials hang hold a slot each, not the round.
func TestEachParallel(t *testing.T) {
	var ais []peer.AddrInfo
	for i := range 40 {
		ais = append(ais, peer.AddrInfo{ID: peer.ID(fmt.Sprint("found-", i))})
	}
	var mu sync.Mutex
	running, most, calls := 0, 0, 0
	full := make(chan struct{}, 1)
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		eachParallel(ais, func(peer.AddrInfo) {
			mu.Lock()
			running++
			calls++
			most = max(most, running)
			if running == lookupParallel {
				select {
				case full <- struct{}{}:
				default:
				}
			}
			mu.Unlock()
			<-release // a dial that hangs until the test lets it go
			mu.Lock()
			running--
			mu.Unlock()
		})
	}()
	select {
	case <-full:
	case <-time.After(10 * time.Second):
		t.Fatal("never lookupParallel dials at once")
	}
	close(release)
	<-done
	if most != lookupParallel || calls != len(ais) {
		t.Fatalf("%d dials at most at once, %d in all; want %d and %d", most, calls, lookupParallel, len(ais))
	}
}
