package scale

import (
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// entry is one offer (its peer and sequence number) at one node.
type entry struct {
	node int
	from peer.ID
	seq  uint64
}

// recorder keeps when each offer entered each node's book, from the
// books' EvtOfferAccepted events.
type recorder struct {
	mu      sync.Mutex // guards the fields below
	first   map[entry]time.Time
	times   map[entry]int // how often it entered: more than once is a bug
	per     map[offerKey]int
	waiters map[entry]chan time.Time
}

// offerKey names an offer regardless of the node.
type offerKey struct {
	from peer.ID
	seq  uint64
}

func newRecorder() *recorder {
	return &recorder{
		first: make(map[entry]time.Time), times: make(map[entry]int),
		per: make(map[offerKey]int), waiters: make(map[entry]chan time.Time),
	}
}

// accepted records that node's book took from's offer seq at t.
func (r *recorder) accepted(node int, from peer.ID, seq uint64, t time.Time) {
	e := entry{node, from, seq}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times[e]++
	if r.times[e] > 1 {
		return
	}
	r.first[e] = t
	r.per[offerKey{from, seq}]++
	if ch, ok := r.waiters[e]; ok {
		ch <- t
		delete(r.waiters, e)
	}
}

// at is when the offer entered node's book, if it did.
func (r *recorder) at(node int, from peer.ID, seq uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.first[entry{node, from, seq}]
	return t, ok
}

// entered counts how many times the offer entered node's book.
func (r *recorder) entered(node int, from peer.ID, seq uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.times[entry{node, from, seq}]
}

// nodes counts the books the offer entered.
func (r *recorder) nodes(from peer.ID, seq uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.per[offerKey{from, seq}]
}

// await returns a channel that gets the time the offer enters node's
// book; call it before the offer can arrive.
func (r *recorder) await(node int, from peer.ID, seq uint64) <-chan time.Time {
	ch := make(chan time.Time, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	e := entry{node, from, seq}
	if t, ok := r.first[e]; ok {
		ch <- t
	} else {
		r.waiters[e] = ch
	}
	return ch
}

// meshTracer counts a node's peers in its gossip meshes (the offers topic
// is the only one).
type meshTracer struct{ n *atomic.Int32 }

func (t meshTracer) Graft(peer.ID, string) { t.n.Add(1) }
func (t meshTracer) Prune(peer.ID, string) { t.n.Add(-1) }

func (meshTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (meshTracer) OnClosedOutboundStream(peer.ID)                       {}
func (meshTracer) Join(string)                                          {}
func (meshTracer) Leave(string)                                         {}
func (meshTracer) ValidateMessage(*pubsub.Message)                      {}
func (meshTracer) DeliverMessage(*pubsub.Message)                       {}
func (meshTracer) RejectMessage(*pubsub.Message, string)                {}
func (meshTracer) DuplicateMessage(*pubsub.Message)                     {}
func (meshTracer) ThrottlePeer(peer.ID)                                 {}
func (meshTracer) RecvRPC(*pubsub.RPC)                                  {}
func (meshTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (meshTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (meshTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (meshTracer) UndeliverableMessage(*pubsub.Message)                 {}
