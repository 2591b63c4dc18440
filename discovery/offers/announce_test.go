package offers_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

// fakeSelf is a node's own offer whose load the test sets.
type fakeSelf struct {
	load  atomic.Int64
	fills atomic.Int64

	mu sync.Mutex // guards at
	at []time.Time
}

func (s *fakeSelf) Fill(_ context.Context, o *offers.Offer) error {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	s.fills.Add(1)
	o.Role = offers.RoleWorker
	o.Models = []offers.ModelOffer{{ID: "m", Price: payments.Price{Prompt: 1, Completion: 2}}}
	o.MaxConcurrent = 4
	o.Load = int(s.load.Load())
	o.Tier = "dev"
	return nil
}

func (s *fakeSelf) State() string { return fmt.Sprint("load=", s.load.Load()) }

// runAnnouncer announces self from n every interval until the test ends.
func runAnnouncer(t *testing.T, n *gossipNode, self offers.Self, interval time.Duration) *offers.Announcer {
	t.Helper()
	a := offers.NewAnnouncer(n.h, n.g, n.key, self, "local", interval, logtest.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return a
}

func loadIn(b *offers.Book, id peer.ID) (int, bool) {
	o, ok := b.Get(id)
	if !ok {
		return 0, false
	}
	return o.Load, true
}

// TestAnnouncer: a node's offer reaches its neighbour without waiting for
// the (long) interval, and so does a change of its state and an
// explicit Soon.
func TestAnnouncer(t *testing.T) {
	w, b := startNode(t), startNode(t)
	p2ptest.Connect(t, w.h, b.h)
	self := &fakeSelf{}
	a := runAnnouncer(t, w, self, offers.MaxTTL/3)
	p2ptest.Eventually(t, "the first offer", func() bool { _, ok := loadIn(b.book, w.h.ID()); return ok })

	self.load.Store(3) // a change of state is announced within a second or so
	p2ptest.Eventually(t, "the changed load", func() bool { l, _ := loadIn(b.book, w.h.ID()); return l == 3 })

	before := self.fills.Load()
	a.Soon()
	p2ptest.Eventually(t, "an announcement after Soon", func() bool { return self.fills.Load() > before })
}

// TestAnnouncerPaced: however soon a node asks for the next announcement,
// announcements are at least MinPublishGap apart, so that peers never
// rate-limit it. (Soon alone would publish after joinSettle, half the gap.)
func TestAnnouncerPaced(t *testing.T) {
	w := startNode(t)
	self := &fakeSelf{}
	a := runAnnouncer(t, w, self, offers.MaxTTL/3)
	p2ptest.Eventually(t, "the first announcement", func() bool { return self.fills.Load() >= 1 })
	for range 3 {
		before := self.fills.Load()
		a.Soon()
		p2ptest.Eventually(t, "an announcement after Soon", func() bool { return self.fills.Load() > before })
	}
	self.mu.Lock()
	defer self.mu.Unlock()
	for i := 1; i < len(self.at); i++ {
		if gap := self.at[i].Sub(self.at[i-1]); gap < offers.MinPublishGap {
			t.Errorf("announcements %d and %d %v apart, want at least %v", i-1, i, gap, offers.MinPublishGap)
		}
	}
}
