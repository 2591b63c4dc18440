package offers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func workerOffer(id peer.ID, seq uint64, at time.Time) *offers.Offer {
	return &offers.Offer{
		Network: "local", Peer: id.String(), Role: offers.RoleWorker, Seq: seq,
		Expiry:        at.Add(time.Minute).UnixMilli(),
		Models:        []offers.ModelOffer{{ID: "sim-small", Price: payments.Price{Prompt: 100, Cached: 10, Completion: 400}}},
		MaxConcurrent: 8, Load: 1, TTFTMillis: 120, TokensPerSec: 40, Tier: "dev",
	}
}

func TestSignOpen(t *testing.T) {
	key, id := p2ptest.NewKey(t)
	other, otherID := p2ptest.NewKey(t)
	good, err := offers.Sign(workerOffer(id, 1, now), key)
	if err != nil {
		t.Fatal(err)
	}
	o, err := offers.Open(good, id)
	if err != nil || o.Peer != id.String() || o.Models[0].Price.Completion != 400 {
		t.Fatalf("open: %+v, %v", o, err)
	}
	if _, err := offers.Sign(workerOffer(id, 1, now), other); !errors.Is(err, offers.ErrSigner) {
		t.Fatalf("signing another peer's offer: %v, want ErrSigner", err)
	}

	// Tampered payload.
	var s offers.Signed
	json.Unmarshal(good, &s)
	s.Payload = []byte(strings.Replace(string(s.Payload), `"completion":400`, `"completion":4`, 1))
	tampered, _ := json.Marshal(s)
	// Forged: an offer naming id, signed by another key.
	forgedOffer := workerOffer(id, 2, now)
	payload, _ := json.Marshal(forgedOffer)
	sig, _ := other.Sign(append([]byte("cocoon-offer-v1"), payload...))
	forged, _ := json.Marshal(offers.Signed{Payload: payload, Signature: sig})

	tests := []struct {
		name string
		b    []byte
		from peer.ID
		want error
	}{
		{"tampered", tampered, id, offers.ErrSignature},
		{"forged", forged, id, offers.ErrSignature},
		{"relayed as someone else's", good, otherID, offers.ErrSigner},
		{"oversized", []byte(`{"payload":"` + strings.Repeat("A", offers.MaxOfferBytes) + `"}`), id, offers.ErrTooLarge},
		{"garbage", []byte("{{"), id, offers.ErrMalformed},
		{"payload not an offer", []byte(`{"payload":"bm90IGpzb24=","signature":""}`), id, offers.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := offers.Open(tt.b, tt.from); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	_, id := p2ptest.NewKey(t)
	tests := []struct {
		name   string
		modify func(*offers.Offer)
		want   error
	}{
		{"good worker", func(*offers.Offer) {}, nil},
		{"good proxy", func(o *offers.Offer) {
			*o = offers.Offer{Network: "local", Peer: o.Peer, Role: offers.RoleProxy, Seq: 1, Expiry: o.Expiry, FeePPM: 20_000, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}
		}, nil},
		{"other network", func(o *offers.Offer) { o.Network = "mainnet" }, offers.ErrNetwork},
		{"expired", func(o *offers.Offer) { o.Expiry = now.UnixMilli() }, offers.ErrExpired},
		{"expiry too far", func(o *offers.Offer) { o.Expiry = now.Add(time.Hour).UnixMilli() }, offers.ErrFarExpiry},
		{"no models", func(o *offers.Offer) { o.Models = nil }, offers.ErrAbsurd},
		{"negative price", func(o *offers.Offer) { o.Models[0].Price.Prompt = -1 }, offers.ErrAbsurd},
		{"price over the cap", func(o *offers.Offer) { o.Models[0].Price.Completion = offers.MaxPrice + 1 }, offers.ErrAbsurd},
		{"repeated model", func(o *offers.Offer) { o.Models = append(o.Models, o.Models[0]) }, offers.ErrAbsurd},
		{"model ID too long", func(o *offers.Offer) { o.Models[0].ID = strings.Repeat("m", 257) }, offers.ErrAbsurd},
		{"zero concurrency", func(o *offers.Offer) { o.MaxConcurrent = 0 }, offers.ErrAbsurd},
		{"load over capacity", func(o *offers.Offer) { o.Load = 9 }, offers.ErrAbsurd},
		{"absurd ttft", func(o *offers.Offer) { o.TTFTMillis = int64(time.Hour / time.Millisecond) }, offers.ErrAbsurd},
		{"absurd speed", func(o *offers.Offer) { o.TokensPerSec = 1e9 }, offers.ErrAbsurd},
		{"unknown tier", func(o *offers.Offer) { o.Tier = "trust-me" }, offers.ErrAbsurd},
		{"unknown role", func(o *offers.Offer) { o.Role = "king" }, offers.ErrAbsurd},
		{"proxy fee over half", func(o *offers.Offer) {
			*o = offers.Offer{Network: "local", Peer: o.Peer, Role: offers.RoleProxy, Seq: 1, Expiry: o.Expiry, FeePPM: 600_000, Addrs: []string{"x"}}
		}, offers.ErrAbsurd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := workerOffer(id, 1, now)
			tt.modify(o)
			err := o.Check("local", now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBook(t *testing.T) {
	at := now
	b := offers.NewBook(func() time.Time { return at })
	_, a := p2ptest.NewKey(t)
	_, c := p2ptest.NewKey(t)
	if err := b.Put(a, workerOffer(a, 5, now)); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(a, workerOffer(a, 5, now)); !errors.Is(err, offers.ErrStale) {
		t.Fatalf("replayed sequence number: %v, want ErrStale", err)
	}
	if err := b.Put(a, workerOffer(a, 4, now)); !errors.Is(err, offers.ErrStale) {
		t.Fatalf("older sequence number: %v, want ErrStale", err)
	}
	other := workerOffer(c, 1, now)
	other.Models = []offers.ModelOffer{{ID: "big"}}
	b.Put(c, other)
	if got := b.ForModel("sim-small"); len(got) != 1 || got[0].Peer != a.String() {
		t.Fatalf("ForModel(sim-small) = %v", got)
	}
	if got := b.Live(offers.RoleWorker); len(got) != 2 {
		t.Fatalf("%d live offers, want 2", len(got))
	}
	at = now.Add(2 * time.Minute) // both expired
	if _, ok := b.Get(a); ok || len(b.Live("")) != 0 {
		t.Fatal("expired offers still returned")
	}
	b.Prune()
	if b.Fresh(a, 5) {
		t.Fatal("pruning forgot the sequence number: an old offer could be replayed")
	}
	if !b.Fresh(a, 6) {
		t.Fatal("a newer offer must be fresh")
	}
}

// gossipNode is a host running the offers topic.
type gossipNode struct {
	h    host.Host
	key  crypto.PrivKey
	book *offers.Book
	g    *offers.Gossip

	mu       sync.Mutex
	accepted map[peer.ID]int // offers that entered the book, by publisher
}

func (n *gossipNode) acceptedFrom(id peer.ID) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.accepted[id]
}

func startNode(t *testing.T) *gossipNode {
	t.Helper()
	return startNodeWith(t, offers.GossipConfig{Network: "local"})
}

func startNodeWith(t *testing.T, cfg offers.GossipConfig) *gossipNode {
	t.Helper()
	h := p2ptest.NewHost(t)
	key := h.Peerstore().PrivKey(h.ID())
	n := &gossipNode{h: h, key: key, book: offers.NewBook(nil), accepted: make(map[peer.ID]int)}
	sub, err := h.EventBus().Subscribe(new(offers.EvtOfferAccepted))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range sub.Out() {
			n.mu.Lock()
			n.accepted[e.(offers.EvtOfferAccepted).From]++
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { sub.Close(); <-done })
	g, err := offers.StartGossip(h, cfg, n.book, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	n.g = g
	return n
}

// rogue joins the offers topic without any validation and publishes
// whatever it is given, as an attacker would.
type rogue struct {
	h     host.Host
	key   crypto.PrivKey
	topic *pubsub.Topic
}

func startRogue(t *testing.T) *rogue {
	t.Helper()
	h := p2ptest.NewHost(t)
	key := h.Peerstore().PrivKey(h.ID())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(offers.Topic("local"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topic.Close() })
	return &rogue{h: h, key: key, topic: topic}
}

// signAs signs o's payload with key, whoever o names.
func signAs(o *offers.Offer, key crypto.PrivKey) []byte {
	payload, _ := json.Marshal(o)
	sig, _ := key.Sign(append([]byte("cocoon-offer-v1"), payload...))
	b, _ := json.Marshal(offers.Signed{Payload: payload, Signature: sig})
	return b
}

// startLine starts a worker w, a rogue r and two nodes a and b: w and r
// connect to a, and b hears the others only through a. It returns once
// every one shares the topic with its neighbours.
func startLine(t *testing.T) (w, a, b *gossipNode, r *rogue) {
	t.Helper()
	return startLineWith(t, offers.GossipConfig{Network: "local"})
}

func startLineWith(t *testing.T, cfg offers.GossipConfig) (w, a, b *gossipNode, r *rogue) {
	t.Helper()
	w, a, b = startNodeWith(t, cfg), startNodeWith(t, cfg), startNodeWith(t, cfg)
	r = startRogue(t)
	p2ptest.Connect(t, a.h, w.h)
	p2ptest.Connect(t, b.h, a.h)
	p2ptest.Connect(t, r.h, a.h)
	p2ptest.Eventually(t, "the topic mesh", func() bool {
		return len(w.g.Peers()) >= 1 && len(a.g.Peers()) >= 2 && len(b.g.Peers()) >= 1 && len(r.topic.ListPeers()) >= 1
	})
	return w, a, b, r
}

// announceUntil calls publish once every offers.MinPublishGap, as often as
// a node may announce, until done holds. A message sent before gossipsub's
// first heartbeat can be lost; nodes re-announce, and so do the tests.
func announceUntil(t *testing.T, what string, publish func(), done func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var next time.Time
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		if now := time.Now(); !now.Before(next) {
			if now.After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			publish()
			next = now.Add(offers.MinPublishGap)
		}
		<-tick.C
	}
}

// TestGossip: a worker's offer reaches every book over real hosts, and a
// forged, relayed, replayed or oversized offer from a rogue peer enters
// none and is not forwarded.
func TestGossip(t *testing.T) {
	w, a, b, r := startLine(t)

	ctx := context.Background()
	seq := uint64(time.Now().UnixNano())
	var genuine []byte
	announceUntil(t, "the offer to reach both books", func() {
		seq++
		var err error
		if genuine, err = offers.Sign(workerOffer(w.h.ID(), seq, time.Now()), w.key); err != nil {
			t.Fatal(err)
		}
		if err := w.g.Publish(ctx, genuine); err != nil {
			t.Fatal(err)
		}
	}, func() bool {
		_, okA := a.book.Get(w.h.ID())
		_, okB := b.book.Get(w.h.ID())
		return okA && okB
	})

	// The rogue's own valid offer goes in, so its later stale one is a
	// replay by sequence number.
	rogueSeq := uint64(time.Now().UnixNano())
	announceUntil(t, "the rogue's first offer at a", func() {
		rogueSeq++
		r.topic.Publish(ctx, signAs(workerOffer(r.h.ID(), rogueSeq, time.Now()), r.key))
	}, func() bool {
		_, ok := a.book.Get(r.h.ID())
		return ok
	})

	other, _ := p2ptest.NewKey(t)
	huge := workerOffer(r.h.ID(), rogueSeq+10, time.Now())
	for i := range 120 {
		huge.Models = append(huge.Models, offers.ModelOffer{ID: fmt.Sprintf("model-%03d-%s", i, strings.Repeat("x", 40))})
	}
	// Over the offer cap, under gossipsub's message cap: the validator
	// must be what refuses it.
	if n := len(signAs(huge, r.key)); n <= offers.MaxOfferBytes || n > 2*offers.MaxOfferBytes {
		t.Fatalf("the oversized test offer is %d bytes", n)
	}
	// Each rejection but the stale one costs the rogue score (squared);
	// after the fourth it is graylisted, so the stale one goes first.
	attacks := []struct {
		name string
		data []byte
		want error
	}{
		{"a replayed sequence number", signAs(workerOffer(r.h.ID(), rogueSeq, time.Now()), r.key), offers.ErrStale},
		{"an oversized offer", signAs(huge, r.key), offers.ErrTooLarge},
		{"an absurd price", signAs(func() *offers.Offer {
			o := workerOffer(r.h.ID(), rogueSeq+2, time.Now())
			o.Models[0].Price.Completion = -5
			return o
		}(), r.key), offers.ErrAbsurd},
		{"w's offer relayed as the rogue's", genuine, offers.ErrSigner},
		{"an offer signed with a key not the rogue's", signAs(workerOffer(r.h.ID(), rogueSeq+1, time.Now()), other), offers.ErrSignature},
	}
	for _, at := range attacks {
		if err := r.topic.Publish(ctx, at.data); err != nil {
			t.Fatalf("%s: rogue publish: %v", at.name, err)
		}
		p2ptest.Eventually(t, "a to reject "+at.name, func() bool { return a.g.Rejected()[at.want.Error()] > 0 })
	}

	// Four invalid offers put the rogue under the graylist threshold: a
	// ignores it from now on, whatever it sends.
	p2ptest.Eventually(t, "a to score the rogue under the graylist threshold", func() bool {
		s, ok := a.g.Score(r.h.ID())
		return ok && s < offers.GraylistThreshold
	})
	if s, ok := a.g.Score(w.h.ID()); !ok || s < 0 {
		t.Errorf("the honest worker's score is %v", s)
	}

	for name, n := range map[string]*gossipNode{"a": a, "b": b} {
		if got, ok := n.book.Get(w.h.ID()); !ok || got.Seq > seq || len(got.Models) != 1 {
			t.Errorf("%s's book holds %+v for the worker, want one of its genuine offers", name, got)
		}
		if got, ok := n.book.Get(r.h.ID()); ok && (got.Seq > rogueSeq || got.Models[0].Price.Completion != 400) {
			t.Errorf("%s's book took a rogue offer %d", name, got.Seq)
		}
	}
	// b never sees what a rejected: invalid offers are not forwarded. (b
	// may drop an honest offer that arrived after a newer one: stale.)
	rej := b.g.Rejected()
	delete(rej, offers.ErrStale.Error())
	if len(rej) != 0 {
		t.Errorf("b saw rejected offers %v: a forwarded what it refused", rej)
	}
}

// TestGossipFlood: a peer publishing valid offers as fast as it can gets
// no more than its rate into any book or past its neighbour, is scored
// under the graylist threshold by the neighbour it floods, and an honest
// worker's offers still go through.
func TestGossipFlood(t *testing.T) {
	w, a, b, r := startLine(t)
	ctx := context.Background()
	seq := uint64(time.Now().UnixNano())
	announceUntil(t, "the rogue's first offer at b", func() {
		seq++
		r.topic.Publish(ctx, signAs(workerOffer(r.h.ID(), seq, time.Now()), r.key))
	}, func() bool { return b.acceptedFrom(r.h.ID()) > 0 })

	pre := map[string]int{"a": a.acceptedFrom(r.h.ID()), "b": b.acceptedFrom(r.h.ID())}
	start := time.Now()
	const flood = 400
	for range flood {
		seq++
		if err := r.topic.Publish(ctx, signAs(workerOffer(r.h.ID(), seq, time.Now()), r.key)); err != nil {
			t.Fatal(err)
		}
	}
	p2ptest.Eventually(t, "a to score the flooder under the graylist threshold", func() bool {
		s, ok := a.g.Score(r.h.ID())
		return ok && s < offers.GraylistThreshold
	})
	if a.g.Rejected()[offers.ErrFlood.Error()] == 0 {
		t.Fatal("a rejected none of the flood for its rate")
	}
	// Whatever a took of the flood it took within the rate: the rest was
	// neither booked nor forwarded.
	bound := offers.PublishBurst + int(offers.PublishRate*time.Since(start).Seconds()) + 1
	for name, n := range map[string]*gossipNode{"a": a, "b": b} {
		if got := n.acceptedFrom(r.h.ID()) - pre[name]; got > bound || got > flood/4 {
			t.Errorf("%s took %d of the flooder's %d offers, want at most %d", name, got, flood, bound)
		}
	}
	s, _ := a.g.Score(r.h.ID())
	t.Logf("flood of %d offers: a took %d, b took %d (bound %d), a rejected %d for the rate; the flooder's score at a: %.0f",
		flood, a.acceptedFrom(r.h.ID())-pre["a"], b.acceptedFrom(r.h.ID())-pre["b"], bound, a.g.Rejected()[offers.ErrFlood.Error()], s)
	if got := b.g.Rejected()[offers.ErrFlood.Error()]; got > bound {
		t.Errorf("b saw %d offers over the flooder's rate: a forwarded them", got)
	}

	// The honest worker is untouched: its score is not negative and its
	// next offer reaches b.
	before := b.acceptedFrom(w.h.ID())
	wseq := uint64(time.Now().UnixNano())
	announceUntil(t, "the worker's offer at b", func() {
		wseq++
		signed, err := offers.Sign(workerOffer(w.h.ID(), wseq, time.Now()), w.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.g.Publish(ctx, signed); err != nil {
			t.Fatal(err)
		}
	}, func() bool { return b.acceptedFrom(w.h.ID()) > before })
	if s, ok := a.g.Score(w.h.ID()); !ok || s < 0 {
		t.Errorf("the honest worker's score at a is %v", s)
	}
}

func TestPeerJoined(t *testing.T) {
	h := p2ptest.NewHost(t)
	joined, err := h.EventBus().Subscribe(new(offers.EvtPeerJoined))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { joined.Close() })
	g, err := offers.StartGossip(h, offers.GossipConfig{Network: "local"}, offers.NewBook(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	b := startNode(t)
	p2ptest.Connect(t, b.h, h)
	select {
	case e := <-joined.Out():
		if p := e.(offers.EvtPeerJoined).Peer; p != b.h.ID() {
			t.Fatalf("joined %s, want %s", p, b.h.ID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no EvtPeerJoined")
	}
}
