package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
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

// RelayGate decides who may use a host's relay service: reserve a slot on
// it, or open a circuit through it. A node admits the peers it holds a
// live verdict on (attesting one it has none on first), so that the
// relay serves its network and nobody else. Admit may block; ctx bounds it.
type RelayGate interface {
	Admit(ctx context.Context, p peer.ID) bool
}

// admitTimeout bounds one admission (a handshake, at most).
const admitTimeout = 10 * time.Second

// Relay is a host's relay service (circuit relay v2), open only to the
// peers its gate admits.
type Relay struct {
	r      *relay.Relay
	cancel context.CancelFunc
}

// NewRelay starts the relay service on h (a host made with
// cfg.RelayService): reservations and circuits only for peers gate
// admits; at most cfg.RelayMaxReservations slots (an eighth from one IP
// address), cfg.RelayMaxCircuits relayed connections per peer and
// cfg.RelayCircuitsPerPeer opened by one source. Relayed connections carry
// whole inference streams, so they are not limited in time or bytes.
func NewRelay(h host.Host, cfg HostConfig, gate RelayGate, log *slog.Logger) (*Relay, error) {
	if !cfg.RelayService {
		return nil, errors.New("relay_service is off")
	}
	res := relay.DefaultResources()
	res.Limit = nil
	res.MaxReservations = cfg.RelayMaxReservations
	res.MaxReservationsPerIP = max(1, cfg.RelayMaxReservations/8)
	res.MaxReservationsPerASN = max(1, cfg.RelayMaxReservations/4)
	res.MaxCircuits = cfg.RelayMaxCircuits
	ctx, cancel := context.WithCancel(context.Background())
	acl := &relayACL{ctx: ctx, h: h, gate: gate, perSource: cfg.RelayCircuitsPerPeer, log: log.With("component", "relay")}
	r, err := relay.New(h, relay.WithResources(res), relay.WithACL(acl))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("starting the relay service: %w", err)
	}
	return &Relay{r: r, cancel: cancel}, nil
}

// Close stops the relay service and ends the admissions under way.
func (r *Relay) Close() error {
	r.cancel()
	return r.r.Close()
}

// relayACL is the relay's access control: the gate, then a cap on the
// circuits one source holds.
type relayACL struct {
	ctx       context.Context // ends when the relay closes
	h         host.Host
	gate      RelayGate
	perSource int
	log       *slog.Logger
}

func (a *relayACL) admit(p peer.ID) bool {
	ctx, cancel := context.WithTimeout(a.ctx, admitTimeout)
	defer cancel()
	return a.gate.Admit(ctx, p)
}

func (a *relayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	if !a.admit(p) {
		a.log.Info("refusing a relay reservation to a peer not admitted", "peer", p)
		return false
	}
	return true
}

func (a *relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	if !a.admit(src) {
		a.log.Info("refusing a relayed connection from a peer not admitted", "peer", src, "dest", dest)
		return false
	}
	// The circuits src holds are its open hop streams, this one included.
	n := 0
	for _, c := range a.h.Network().ConnsToPeer(src) {
		for _, s := range c.GetStreams() {
			if s.Protocol() == circuit.ProtoIDv2Hop && s.Stat().Direction == network.DirInbound {
				n++
			}
		}
	}
	if n > a.perSource {
		a.log.Info("refusing a relayed connection: the peer holds its share of circuits", "peer", src, "dest", dest, "circuits", n-1)
		return false
	}
	return true
}
