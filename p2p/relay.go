package p2p

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
)

// Reservations holds a private host's slots on relays (circuit relay v2)
// and the addresses others reach it at through them. The node reserves on
// the proxies it keeps, and advertises Addrs in its offers.
//
// go-libp2p's autorelay does the same by itself, but it advertises only
// relays with public addresses, so it never works on loopback or a LAN.
type Reservations struct {
	h   host.Host
	now func() time.Time

	mu    sync.Mutex // guards slots
	slots map[peer.ID]slot
}

type slot struct {
	relay   peer.AddrInfo
	expires time.Time
}

// NewReservations holds reservations for h; now is the clock (time.Now if
// nil).
func NewReservations(h host.Host, now func() time.Time) *Reservations {
	if now == nil {
		now = time.Now
	}
	return &Reservations{h: h, now: now, slots: make(map[peer.ID]slot)}
}

// Reserve reserves a slot on relay, or renews one that has used half its
// life; a fresh one is kept as it is.
func (r *Reservations) Reserve(ctx context.Context, relay peer.AddrInfo) error {
	r.mu.Lock()
	s, ok := r.slots[relay.ID]
	r.mu.Unlock()
	if ok && r.now().Before(s.expires.Add(-reservationRenew)) {
		return nil
	}
	if len(relay.Addrs) == 0 {
		relay.Addrs = r.h.Peerstore().Addrs(relay.ID)
	}
	res, err := client.Reserve(ctx, r.h, relay)
	if err != nil {
		return fmt.Errorf("reserving a slot on relay %s: %w", relay.ID, err)
	}
	if res.LimitDuration > 0 || res.LimitData > 0 {
		return fmt.Errorf("relay %s limits relayed connections (%s, %d bytes): too little for inference", relay.ID, res.LimitDuration, res.LimitData)
	}
	r.mu.Lock()
	r.slots[relay.ID] = slot{relay: relay, expires: res.Expiration}
	r.mu.Unlock()
	return nil
}

// reservationRenew is how long before expiry a reservation is renewed;
// relays grant an hour by default.
const reservationRenew = 30 * time.Minute

// Drop forgets the slot on relay (the relay went away).
func (r *Reservations) Drop(relay peer.ID) {
	r.mu.Lock()
	delete(r.slots, relay)
	r.mu.Unlock()
}

// Addrs are the host's addresses through its live slots:
// <relay address>/p2p/<relay>/p2p-circuit, in relay order.
func (r *Reservations) Addrs() []ma.Multiaddr {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ma.Multiaddr
	for _, s := range r.slots {
		if !now.Before(s.expires) {
			continue
		}
		via := ma.StringCast("/p2p/" + s.relay.ID.String() + "/p2p-circuit")
		for _, a := range s.relay.Addrs {
			out = append(out, a.Encapsulate(via))
		}
	}
	slices.SortFunc(out, func(a, b ma.Multiaddr) int { return a.Compare(b) })
	return out
}
