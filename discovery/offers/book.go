package offers

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments"
)

// Book holds the latest valid offer of each peer. Expired offers are
// never returned and are dropped by Prune.
type Book struct {
	now func() time.Time

	mu     sync.Mutex // guards offers and seqs
	offers map[peer.ID]*Offer
	seqs   map[peer.ID]uint64 // the highest sequence number seen per peer
}

// NewBook makes an empty book; now is its clock (time.Now if nil).
func NewBook(now func() time.Time) *Book {
	if now == nil {
		now = time.Now
	}
	return &Book{now: now, offers: make(map[peer.ID]*Offer), seqs: make(map[peer.ID]uint64)}
}

// Fresh reports whether seq is above every sequence number seen from id.
func (b *Book) Fresh(id peer.ID, seq uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	last, ok := b.seqs[id]
	return !ok || seq > last
}

// Put stores o as id's latest offer. An offer whose sequence number is not
// above the last one seen from id is refused with ErrStale.
func (b *Book) Put(id peer.ID, o *Offer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if last, ok := b.seqs[id]; ok && o.Seq <= last {
		return fmt.Errorf("%w: %d after %d", ErrStale, o.Seq, last)
	}
	b.seqs[id] = o.Seq
	b.offers[id] = o
	return nil
}

// Get returns id's live offer.
func (b *Book) Get(id peer.ID) (*Offer, bool) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.offers[id]
	if !ok || !now.Before(time.UnixMilli(o.Expiry)) {
		return nil, false
	}
	return o, true
}

// Live returns every live offer of role (any role if empty), ordered by
// peer ID.
func (b *Book) Live(role Role) []*Offer {
	now := b.now()
	b.mu.Lock()
	var out []*Offer
	for _, o := range b.offers {
		if now.Before(time.UnixMilli(o.Expiry)) && (role == "" || o.Role == role) {
			out = append(out, o)
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

// Prune drops expired offers. Sequence numbers are kept, so an expired
// offer replayed later is still refused as stale.
func (b *Book) Prune() {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, o := range b.offers {
		if !now.Before(time.UnixMilli(o.Expiry)) {
			delete(b.offers, id)
		}
	}
}
