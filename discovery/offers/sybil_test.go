package offers_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// attestedSet is a fake offers.Attested.
type attestedSet map[peer.ID]bool

func (s attestedSet) Attested(p peer.ID) bool { return s[p] }

// TestBookBounded: a book holds at most its size, a neighbour at most its
// share of it; a full book makes room from expired offers first, then
// from the neighbour holding the most, and never evicts an attested
// peer's offer.
func TestBookBounded(t *testing.T) {
	at := now
	attested := attestedSet{}
	b := offers.NewBook(func() time.Time { return at }, offers.WithLimits(100, 40), offers.WithAttested(attested))
	id := func(prefix string, i int) peer.ID { return peer.ID(fmt.Sprintf("%s-%05d", prefix, i)) }

	// Honest neighbours deliver 60 offers, the first 10 of attested peers.
	for i := range 60 {
		p := id("honest", i)
		if i < 10 {
			attested[p] = true
		}
		if err := b.PutVia(p, peer.ID(fmt.Sprint("relay-", i%3)), workerOffer(p, 1, now)); err != nil {
			t.Fatal(err)
		}
	}
	// A flooder delivers 10,000 under fresh keys: it keeps its share.
	for i := range 10_000 {
		p := id("sybil", i)
		if err := b.PutVia(p, "flooder", workerOffer(p, 1, now)); err != nil {
			t.Fatalf("offer %d: %v", i, err)
		}
	}
	if b.Len() != 100 {
		t.Fatalf("%d offers in the book, want its size 100", b.Len())
	}
	for i := range 60 {
		if !b.Holds(id("honest", i)) {
			t.Fatalf("honest offer %d evicted by the flood", i)
		}
	}
	if !b.Holds(id("sybil", 9_999)) || b.Holds(id("sybil", 9_959)) {
		t.Fatal("the flooder's share does not hold its 40 newest offers")
	}

	// The honest ones expire, the flooder's are refreshed: a new offer
	// takes an expired one's place.
	at = now.Add(2 * time.Minute)
	for i := range 40 {
		p := id("sybil", 9_960+i)
		if err := b.PutVia(p, "flooder", workerOffer(p, 2, at)); err != nil {
			t.Fatal(err)
		}
	}
	late := peer.ID("late-worker")
	if err := b.PutVia(late, late, workerOffer(late, 1, at)); err != nil {
		t.Fatalf("a worker arriving at a full book of expired offers: %v", err)
	}
	if _, ok := b.Get(late); !ok {
		t.Fatal("the late worker's offer is not live")
	}

	// A book of attested offers only refuses the unattested newcomer.
	full := offers.NewBook(func() time.Time { return now }, offers.WithLimits(5, 5), offers.WithAttested(attested))
	for i := range 5 {
		p := id("honest", i)
		full.PutVia(p, p, workerOffer(p, 1, now))
	}
	if err := full.PutVia("stranger", "stranger", workerOffer("stranger", 1, now)); !errors.Is(err, offers.ErrBookFull) {
		t.Fatalf("a stranger into a book of attested offers: %v, want ErrBookFull", err)
	}
}

// TestGossipPrunes: the gossip prunes its book on a timer; nothing but the
// timer calls Prune here.
func TestGossipPrunes(t *testing.T) {
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	book := offers.NewBook(func() time.Time { return time.Unix(0, clock.Load()) })
	g, err := offers.StartGossip(p2ptest.NewHost(t), offers.GossipConfig{Network: "local", PruneInterval: 10 * time.Millisecond},
		book, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	for i := range 50 {
		p := peer.ID(fmt.Sprint("worker-", i))
		if err := book.Put(p, workerOffer(p, 1, now)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Store(now.Add(2 * time.Minute).UnixNano())
	p2ptest.Eventually(t, "the expired offers to be pruned", func() bool { return book.Len() == 0 })
}

// TestGossipSybilFlood: one peer publishes 10,000 valid offers, each
// under a fresh key. Its neighbour takes no more than its per-peer rate,
// scores it under the graylist threshold, and forwards little; both books
// stay bounded; the honest relay between them is not scored down; and a
// worker that joins during the flood reaches the far book as fast as
// without it.
func TestGossipSybilFlood(t *testing.T) {
	// The network of this test has four honest nodes: 20 offers a second
	// from one neighbour is more than they ever send.
	cfg := offers.GossipConfig{Network: "local", PeerRate: 20}
	w, a, b, r := startLineWith(t, cfg)
	ctx := context.Background()

	// The keys and offers are made before the flood, so that it goes as
	// fast as the rogue can send.
	const flood = 10_000
	type signed struct {
		key  crypto.PrivKey
		id   peer.ID
		data []byte
	}
	msgs := make([]signed, flood)
	for i := range msgs {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(key)
		// Expiring near MaxTTL, so that none expires during the flood.
		msgs[i] = signed{key, id, signAs(workerOffer(id, 1, time.Now().Add(offers.MaxTTL-time.Minute-5*time.Second)), key)}
	}

	start := time.Now()
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		for _, m := range msgs {
			r.topic.Publish(ctx, m.data, pubsub.WithSecretKeyAndPeerId(m.key, m.id))
		}
	}()

	// A real worker joins a during the flood.
	late := startNodeWith(t, cfg)
	joined := time.Now()
	p2ptest.Connect(t, a.h, late.h)
	seq := uint64(time.Now().UnixNano())
	announceUntil(t, "the late worker's offer at b", func() {
		seq++
		signed, err := offers.Sign(workerOffer(late.h.ID(), seq, time.Now()), late.key)
		if err != nil {
			t.Fatal(err)
		}
		late.g.Publish(ctx, signed)
	}, func() bool { _, ok := b.book.Get(late.h.ID()); return ok })
	lateIn := time.Since(joined)
	<-floodDone

	p2ptest.Eventually(t, "a to score the flooder under the graylist threshold", func() bool {
		s, ok := a.g.Score(r.h.ID())
		return ok && s < offers.GraylistThreshold
	})
	elapsed := time.Since(start)
	// a takes what the flooder's bucket holds, then its rate; b takes
	// what a forwarded of it.
	bound := int(2*cfg.PeerRate+cfg.PeerRate*elapsed.Seconds()) + 10
	for name, n := range map[string]*gossipNode{"a": a, "b": b} {
		if got := n.book.Len(); got > bound || got > offers.DefaultBookSize/4 {
			t.Errorf("%s's book holds %d offers after a flood of %d, want at most %d", name, got, flood, bound)
		}
	}
	if s, ok := b.g.Score(a.h.ID()); ok && s < 0 {
		t.Errorf("b scored a, an honest relay of the flood, down to %.0f (b rejected %v)", s, b.g.Rejected())
	}
	if s, ok := a.g.Score(w.h.ID()); !ok || s < 0 {
		t.Errorf("the honest worker's score at a is %v", s)
	}
	s, _ := a.g.Score(r.h.ID())
	t.Logf("flood of %d offers under fresh keys in %s: a's book %d, b's book %d (bound %d); a rejected %v; flooder's score at a %.0f; the late worker reached b in %s",
		flood, elapsed.Round(time.Millisecond), a.book.Len(), b.book.Len(), bound, a.g.Rejected(), s, lateIn.Round(time.Millisecond))
	if lateIn > 5*time.Second {
		t.Errorf("the late worker reached b in %s during the flood, want under 5s", lateIn)
	}
}
