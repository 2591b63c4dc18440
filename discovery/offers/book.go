package offers

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments"
)

// Bounds of a book. Fresh keys cost nothing, so a peer can sign valid
// offers under as many identities as it likes: the book holds at most
// DefaultBookSize offers, and at most a quarter of them delivered by any
// one neighbour (DefaultBookSize/4), unless told otherwise.
const DefaultBookSize = 10_000

// ErrBookFull means an offer found no room in the book: every entry it
// could take the place of is attested, or its deliverer already holds its
// share. The offer is dropped; its sender is not at fault.
var ErrBookFull = errors.New("offer book full")

// Attested says which peers hold a live attestation verdict
// (node adapts *attest.Handshaker). A book never evicts an attested
// peer's offer to make room for another's.
type Attested interface {
	Attested(p peer.ID) bool
}

// BookOption bounds a book or tells it who is attested.
type BookOption func(*Book)

// WithLimits caps the book at size offers, at most perPeer of them
// delivered by one neighbour; zero keeps a default (DefaultBookSize, and
// a quarter of size).
func WithLimits(size, perPeer int) BookOption {
	return func(b *Book) {
		if size > 0 {
			b.size = size
		}
		if perPeer > 0 {
			b.perPeer = perPeer
		}
	}
}

// WithAttested tells the book which peers are attested, so that it
// evicts unverified offers first and never an attested peer's.
func WithAttested(a Attested) BookOption { return func(b *Book) { b.attested = a } }

// entry is one offer in the book, with the neighbour that delivered it.
type entry struct {
	o   *Offer
	via peer.ID
	n   uint64 // when it entered the book, in the book's count of puts
}

// Book holds the latest valid offer of each peer, up to its size. Expired
// offers are never returned and are dropped by Prune; when the book is
// full, an offer from a new peer takes the place of an expired one, else
// of the oldest unattested offer delivered by the neighbour that holds
// the most.
type Book struct {
	now      func() time.Time
	size     int
	perPeer  int
	attested Attested // nil: nobody is known attested

	mu     sync.Mutex // guards offers, seqs, vias and puts
	puts   uint64     // offers put so far: the age of entries
	offers map[peer.ID]*entry
	seqs   map[peer.ID]uint64 // the highest sequence number seen per peer
	vias   map[peer.ID]int    // offers in the book per delivering neighbour
}

// NewBook makes an empty book; now is its clock (time.Now if nil).
func NewBook(now func() time.Time, opts ...BookOption) *Book {
	if now == nil {
		now = time.Now
	}
	b := &Book{now: now, size: DefaultBookSize, offers: make(map[peer.ID]*entry),
		seqs: make(map[peer.ID]uint64), vias: make(map[peer.ID]int)}
	for _, o := range opts {
		o(b)
	}
	if b.perPeer == 0 {
		b.perPeer = max(1, b.size/4)
	}
	b.perPeer = min(b.perPeer, b.size)
	return b
}

// Fresh reports whether seq is above every sequence number seen from id.
func (b *Book) Fresh(id peer.ID, seq uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	last, ok := b.seqs[id]
	return !ok || seq > last
}

// Holds reports whether the book holds an offer of id, live or not.
func (b *Book) Holds(id peer.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.offers[id]
	return ok
}

// Len is the number of offers in the book, expired ones not yet pruned
// included.
func (b *Book) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.offers)
}

// Put stores o as id's latest offer, as its publisher sent it itself.
func (b *Book) Put(id peer.ID, o *Offer) error { return b.PutVia(id, id, o) }

// PutVia stores o as id's latest offer, delivered by the neighbour via.
// An offer whose sequence number is not above the last one seen from id
// is refused with ErrStale; one that finds no room, with ErrBookFull.
func (b *Book) PutVia(id, via peer.ID, o *Offer) error {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if last, ok := b.seqs[id]; ok && o.Seq <= last {
		return fmt.Errorf("%w: %d after %d", ErrStale, o.Seq, last)
	}
	if e, ok := b.offers[id]; ok {
		// An update takes no more room; it counts for its new deliverer.
		b.vias[e.via]--
		if b.vias[e.via] == 0 {
			delete(b.vias, e.via)
		}
		b.vias[via]++
		b.puts++
		e.o, e.via, e.n = o, via, b.puts
		b.seqs[id] = o.Seq
		return nil
	}
	if err := b.makeRoomLocked(id, via, now); err != nil {
		return err
	}
	b.seqs[id] = o.Seq
	b.puts++
	b.offers[id] = &entry{o: o, via: via, n: b.puts}
	b.vias[via]++
	return nil
}

// makeRoomLocked frees a place for a new offer of id delivered by via, or
// says why there is none.
func (b *Book) makeRoomLocked(id, via peer.ID, now time.Time) error {
	if b.vias[via] >= b.perPeer {
		// via holds its share: its own oldest unattested offer goes.
		if victim, ok := b.oldestLocked(via); ok {
			b.dropLocked(victim)
			return nil
		}
		return fmt.Errorf("%w: %s delivered %d offers, its share", ErrBookFull, via, b.vias[via])
	}
	if len(b.offers) < b.size {
		return nil
	}
	b.pruneLocked(now)
	if len(b.offers) < b.size {
		return nil
	}
	// The neighbour holding the most gives up its oldest unattested offer.
	top, most := peer.ID(""), 0
	for v, n := range b.vias {
		if n > most || (n == most && v < top) {
			top, most = v, n
		}
	}
	if victim, ok := b.oldestLocked(top); ok {
		b.dropLocked(victim)
		return nil
	}
	if victim, ok := b.oldestLocked(""); ok {
		b.dropLocked(victim)
		return nil
	}
	return fmt.Errorf("%w: %d offers, all attested", ErrBookFull, len(b.offers))
}

// oldestLocked is the peer of the oldest unattested offer delivered by
// via (by anyone if via is empty).
func (b *Book) oldestLocked(via peer.ID) (peer.ID, bool) {
	var victim peer.ID
	var n uint64
	found := false
	for id, e := range b.offers {
		if via != "" && e.via != via {
			continue
		}
		if found && e.n >= n {
			continue
		}
		if b.attested != nil && b.attested.Attested(id) {
			continue
		}
		victim, n, found = id, e.n, true
	}
	return victim, found
}

// dropLocked removes id's offer, and its sequence number: an evicted
// offer replayed later competes for room again under the same bounds.
func (b *Book) dropLocked(id peer.ID) {
	e, ok := b.offers[id]
	if !ok {
		return
	}
	delete(b.offers, id)
	delete(b.seqs, id)
	b.vias[e.via]--
	if b.vias[e.via] <= 0 {
		delete(b.vias, e.via)
	}
}

// Get returns id's live offer.
func (b *Book) Get(id peer.ID) (*Offer, bool) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.offers[id]
	if !ok || !now.Before(time.UnixMilli(e.o.Expiry)) {
		return nil, false
	}
	return e.o, true
}

// Live returns every live offer of role (any role if empty), ordered by
// peer ID.
func (b *Book) Live(role Role) []*Offer {
	now := b.now()
	b.mu.Lock()
	var out []*Offer
	for _, e := range b.offers {
		if now.Before(time.UnixMilli(e.o.Expiry)) && (role == "" || e.o.Role == role) {
			out = append(out, e.o)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(a, c *Offer) int {
		switch {
		case a.Peer < c.Peer:
			return -1
		case a.Peer > c.Peer:
			return 1
		}
		return 0
	})
	return out
}

// Price is the price of model in id's live offer.
func (b *Book) Price(id peer.ID, model string) (payments.Price, bool) {
	o, ok := b.Get(id)
	if !ok {
		return payments.Price{}, false
	}
	for _, m := range o.Models {
		if m.ID == model {
			return m.Price, true
		}
	}
	return payments.Price{}, false
}

// ForModel returns the live worker offers that sell model.
func (b *Book) ForModel(model string) []*Offer {
	var out []*Offer
	for _, o := range b.Live(RoleWorker) {
		if slices.ContainsFunc(o.Models, func(m ModelOffer) bool { return m.ID == model }) {
			out = append(out, o)
		}
	}
	return out
}

// Prune drops expired offers. Sequence numbers are kept for MaxTTL more,
// so an expired offer replayed meanwhile is still refused as stale; after
// that, every offer its peer signed before is expired too (expiry grows
// with the sequence number), and Check refuses it.
func (b *Book) Prune() {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked(now)
}

func (b *Book) pruneLocked(now time.Time) {
	for id, e := range b.offers {
		expiry := time.UnixMilli(e.o.Expiry)
		if now.Before(expiry) {
			continue
		}
		seq := b.seqs[id]
		b.dropLocked(id)
		if now.Before(expiry.Add(MaxTTL)) {
			b.seqs[id] = seq
		}
	}
	for id := range b.seqs {
		if _, ok := b.offers[id]; !ok && len(b.seqs) > 2*b.size {
			delete(b.seqs, id) // tombstones past twice the book's size
		}
	}
}
