package offers

import (
	"context"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/cocoon-mesh/cocoon/p2p"
)

// Self is what a node announces about itself. Each role implements it.
type Self interface {
	// Fill completes o, whose network, peer, sequence number and expiry
	// are set, with what the node offers now: its role, models and
	// prices, load, addresses. An error skips this announcement.
	Fill(ctx context.Context, o *Offer) error
	// State sums up what in the offer, when it changes, is worth
	// announcing before the next interval (a worker's load quartile, the
	// node's addresses).
	State() string
}

// Announcer publishes a node's own offer at once, every interval, just
// after a peer joins the offers topic, and within a second of a change in
// its Self's State; each offer lives three intervals. Should a message be
// lost, the next announcement makes up for it. It never publishes twice
// within MinPublishGap, so peers never rate-limit it.
type Announcer struct {
	h        host.Host
	g        *Gossip
	key      crypto.PrivKey
	self     Self
	network  string
	interval time.Duration
	log      *slog.Logger
	soon     chan struct{}
}

// NewAnnouncer announces self on g, signed with key, the host's identity.
// It starts nothing; Run announces.
func NewAnnouncer(h host.Host, g *Gossip, key crypto.PrivKey, self Self, network string, interval time.Duration, log *slog.Logger) *Announcer {
	return &Announcer{h: h, g: g, key: key, self: self, network: network, interval: interval,
		log: log.With("component", "offers"), soon: make(chan struct{}, 1)}
}

// changeCheck is how often the announcer checks whether its offer changed.
const changeCheck = time.Second

// joinSettle is how long a node waits after a peer joins the offers topic
// before announcing. Gossipsub reports the join before its own stream to
// the peer is open: an offer published at once was lost 10 times in 15 on
// loopback, one published 20 ms later never (of 45). Joins also come in
// bursts, and one announcement covers a burst.
const joinSettle = 50 * time.Millisecond

// Soon makes the announcer publish shortly, as after a peer joins: for a
// change that others should learn of before the next interval (an engine
// that became ready, a new relay slot). It never blocks.
func (a *Announcer) Soon() {
	select {
	case a.soon <- struct{}{}:
	default:
	}
}

// Run announces until ctx ends.
func (a *Announcer) Run(ctx context.Context) {
	joined, stop, err := p2p.Wake(a.h, new(EvtPeerJoined), "offers-announcer", nil)
	if err != nil {
		a.log.Error("cannot watch the offers topic; announcing on the interval only", "err", err)
	} else {
		defer stop()
	}
	every := a.interval
	// The first announcement usually goes out before gossipsub's first
	// heartbeat has built a mesh, and is lost; the second follows a
	// heartbeat later rather than a whole interval.
	t := time.NewTimer(min(every, 1500*time.Millisecond))
	defer t.Stop()
	check := time.NewTicker(min(every, changeCheck))
	defer check.Stop()
	publish := true
	var last string
	var sent time.Time
	for {
		if publish {
			if !a.pace(ctx, sent) {
				return
			}
			last = a.self.State()
			if err := a.publish(ctx, 3*every); err != nil && ctx.Err() == nil {
				a.log.Warn("announcing offer", "err", err)
			}
			// Paced from when the offer went out, not from when it was
			// started: a slow Fill must not shorten the next gap.
			sent = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			publish = true
			t.Reset(every)
		case <-check.C:
			publish = a.self.State() != last
		case <-joined:
			publish = a.settle(t)
		case <-a.soon:
			publish = a.settle(t)
		}
	}
}

// pace waits until MinPublishGap has passed since the last announcement:
// peers take at most PublishRate offers a second from one publisher and
// score down one that sends more. It reports false if ctx ended first.
func (a *Announcer) pace(ctx context.Context, sent time.Time) bool {
	wait := time.Until(sent.Add(MinPublishGap))
	if wait <= 0 {
		return true
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(wait):
		return true
	}
}

// settle moves the next announcement to joinSettle from now: joins come in
// bursts, and one announcement shortly after covers them all. It returns
// false: nothing is published at once.
func (a *Announcer) settle(t *time.Timer) bool {
	if !t.Stop() {
		select { // drain a fire that raced with the join
		case <-t.C:
		default:
		}
	}
	t.Reset(joinSettle)
	return false
}

func (a *Announcer) publish(ctx context.Context, ttl time.Duration) error {
	now := time.Now()
	o := &Offer{
		Network: a.network, Peer: a.h.ID().String(),
		Seq:    uint64(now.UnixNano()), // increases across restarts too
		Expiry: now.Add(ttl).UnixMilli(),
	}
	if err := a.self.Fill(ctx, o); err != nil {
		return err
	}
	signed, err := Sign(o, a.key)
	if err != nil {
		return err
	}
	return a.g.Publish(ctx, signed)
}
