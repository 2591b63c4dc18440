package offers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// Topic is the offers topic of a network.
func Topic(network string) string { return "/cocoon/" + network + "/offers/1" }

// GossipConfig configures the offers topic.
type GossipConfig struct {
	Network string
	Now     func() time.Time // the clock; time.Now if nil

	// PeerRate is how many offers a second one neighbour may deliver,
	// whoever signed them (DefaultPeerRate if zero). Its bucket holds two
	// seconds' worth; see validate for what happens past it.
	PeerRate float64

	// PruneInterval is how often expired offers leave the book
	// (DefaultPruneInterval if zero).
	PruneInterval time.Duration

	// Options are gossipsub options applied after this package's own:
	// tracers, or tuning under measurement (the scale simulation of cmd/bench).
	Options []pubsub.Option
}

// DefaultPeerRate is the offers a second a neighbour may deliver. Gossipsub
// drops duplicates before validation, so an honest relay delivers each
// offer of the network once: a network of N nodes announcing every
// interval I sends N/I offers a second in all, and 100 covers 1,000 nodes
// at the default 10 s even if every offer came through one neighbour.
// Bigger networks raise gossip.peer_rate.
const DefaultPeerRate = 100

// hardPeerRate is how many times its rate a neighbour must deliver before
// a relayed offer over the rate costs it score: more than any honest
// relay of a network sized for the rate sends.
const hardPeerRate = 5

// DefaultPruneInterval is how often expired offers leave the book.
const DefaultPruneInterval = 10 * time.Second

// EvtOfferAccepted is emitted on the host's event bus for each offer as it
// enters the book. A proxy follows workers by it; the scale bench times
// delivery with it.
type EvtOfferAccepted struct {
	From  peer.ID // the offer's publisher
	Offer *Offer
	At    time.Time // when it entered the book, by the gossip's clock
}

// EvtPeerJoined is emitted on the host's event bus when a peer starts
// sharing the offers topic, so that a node can re-announce to a new
// neighbour without waiting for its next interval. Gossipsub reports the
// join before its own stream to the peer is open, so what is published at
// that instant may not reach the peer; a few tens of milliseconds later it
// does.
type EvtPeerJoined struct {
	Peer peer.ID
}

// Gossip runs the offers topic on a host: every offer it receives is
// validated before gossipsub forwards it, and valid ones go into the book
// and onto the host's event bus (EvtOfferAccepted).
type Gossip struct {
	cfg   GossipConfig
	book  *Book
	log   *slog.Logger
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	// events reports peers joining the topic.
	events   *pubsub.TopicEventHandler
	accepted event.Emitter // EvtOfferAccepted
	joined   event.Emitter // EvtPeerJoined

	self   peer.ID
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // guards rejected, scores and the rates
	rejected map[string]int
	scores   map[peer.ID]float64
	rates    publisherRates // per signer
	vias     publisherRates // per delivering neighbour, its rate
	hardVias publisherRates // per delivering neighbour, hardPeerRate times its rate
}

// StartGossip joins the offers topic of cfg.Network on h with message
// signing required and peer scoring on, and keeps book up to date until
// Close.
func StartGossip(h host.Host, cfg GossipConfig, book *Book, log *slog.Logger) (*Gossip, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PeerRate <= 0 {
		cfg.PeerRate = DefaultPeerRate
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	topic := Topic(cfg.Network)
	g := &Gossip{cfg: cfg, book: book, log: log.With("component", "offers"), self: h.ID(), cancel: cancel, rejected: make(map[string]int),
		rates: publisherRates{m: make(map[peer.ID]*rate.Limiter)},
		vias: publisherRates{m: make(map[peer.ID]*rate.Limiter), rate: rate.Limit(cfg.PeerRate),
			burst: max(1, int(2*cfg.PeerRate))},
		hardVias: publisherRates{m: make(map[peer.ID]*rate.Limiter), rate: rate.Limit(hardPeerRate * cfg.PeerRate),
			burst: max(1, int(2*hardPeerRate*cfg.PeerRate))}}
	opts := []pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		// Twice the offer cap, so that an oversized offer reaches the
		// validator and its sender is scored down for it.
		pubsub.WithMaxMessageSize(2*MaxOfferBytes + 1024),
		pubsub.WithPeerScore(scoreParams(topic), scoreThresholds()),
		// A node's own offer goes to every topic peer scored above the
		// publish threshold, not only to its mesh: until the first
		// heartbeat grafts one, the mesh is empty and the offer would be
		// lost (a new worker would wait for its next announcement), and
		// the first hop reaches every neighbour at once. Offers are small
		// and each node publishes one every few seconds.
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerScoreInspect(func(scores map[peer.ID]float64) {
			g.mu.Lock()
			g.scores = scores
			g.mu.Unlock()
		}, scoreInspectPeriod),
	}
	var err error
	if g.accepted, err = h.EventBus().Emitter(new(EvtOfferAccepted)); err != nil {
		cancel()
		return nil, fmt.Errorf("offers events: %w", err)
	}
	if g.joined, err = h.EventBus().Emitter(new(EvtPeerJoined)); err != nil {
		g.accepted.Close()
		cancel()
		return nil, fmt.Errorf("offers events: %w", err)
	}
	ps, err := pubsub.NewGossipSub(ctx, h, append(opts, cfg.Options...)...)
	if err != nil {
		g.closeEmitters()
		cancel()
		return nil, fmt.Errorf("starting gossipsub: %w", err)
	}
	g.ps = ps
	if err := ps.RegisterTopicValidator(topic, g.validate); err != nil {
		g.closeEmitters()
		cancel()
		return nil, fmt.Errorf("offers validator: %w", err)
	}
	if g.topic, err = ps.Join(topic); err != nil {
		g.closeEmitters()
		cancel()
		return nil, fmt.Errorf("joining %s: %w", topic, err)
	}
	if g.sub, err = g.topic.Subscribe(); err != nil {
		g.closeEmitters()
		cancel()
		return nil, fmt.Errorf("subscribing to %s: %w", topic, err)
	}
	if g.events, err = g.topic.EventHandler(); err != nil {
		g.sub.Cancel()
		g.closeEmitters()
		cancel()
		return nil, fmt.Errorf("watching %s: %w", topic, err)
	}
	g.wg.Go(func() { g.watch(ctx) })
	g.wg.Go(func() { g.receive(ctx) })
	g.wg.Go(func() { g.prune(ctx) })
	return g, nil
}

// Publish gossips a signed offer (see Sign).
func (g *Gossip) Publish(ctx context.Context, signed []byte) error {
	return g.topic.Publish(ctx, signed)
}

// Peers lists the peers this node shares the topic with.
func (g *Gossip) Peers() []peer.ID { return g.topic.ListPeers() }

// Rejected counts the offers refused so far, by reason.
func (g *Gossip) Rejected() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int, len(g.rejected))
	for k, v := range g.rejected {
		out[k] = v
	}
	return out
}

// Score is gossipsub's score of p, as of the last inspection (every
// scoreInspectPeriod). A peer under GraylistThreshold is ignored.
func (g *Gossip) Score(p peer.ID) (float64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.scores[p]
	return s, ok
}

// GraylistThreshold is the score under which a peer's messages are
// ignored.
const GraylistThreshold = -1000

const scoreInspectPeriod = 200 * time.Millisecond

// reasons are the rejections counted by name.
var reasons = []error{ErrTooLarge, ErrMalformed, ErrSignature, ErrSigner, ErrNetwork, ErrStale, ErrExpired, ErrFarExpiry, ErrAbsurd,
	ErrFlood, ErrPeerFlood, ErrBookFull}

// The rate at which one publisher's offers are taken and forwarded: on
// average PublishRate a second, in bursts of up to PublishBurst. A node
// announces at most once every MinPublishGap (the shortest announce
// interval), so an honest one never reaches it.
const (
	PublishRate   = 10
	PublishBurst  = 20
	MinPublishGap = time.Second / PublishRate
)

// publisherRates keeps a token bucket per publisher, or per delivering
// neighbour.
type publisherRates struct {
	m     map[peer.ID]*rate.Limiter
	prune int        // prune buckets back to full once m grows past this
	rate  rate.Limit // PublishRate if zero
	burst int        // PublishBurst if zero
}

// allow takes one token from id's bucket at now.
func (r *publisherRates) allow(id peer.ID, now time.Time) bool {
	l, ok := r.m[id]
	if !ok {
		if len(r.m) >= r.prune {
			// A full bucket is the same as none: forget those. Every entry
			// is a publisher whose signed offer passed the checks, so the
			// map grows only as the book does.
			for p, b := range r.m {
				if b.TokensAt(now) >= float64(b.Burst()) {
					delete(r.m, p)
				}
			}
			r.prune = max(1024, 2*len(r.m))
		}
		every, burst := r.rate, r.burst
		if every == 0 {
			every, burst = PublishRate, PublishBurst
		}
		l = rate.NewLimiter(every, burst)
		r.m[id] = l
	}
	return l.AllowN(now, 1)
}

// reject refuses an offer from its publisher from, which gossipsub
// received from via.
func (g *Gossip) reject(from, via peer.ID, err error) pubsub.ValidationResult {
	g.count(from, err)
	switch {
	case errors.Is(err, ErrStale):
		// gossipsub does not keep order: an honest peer's older offer can
		// arrive after its newer one. Stale offers are dropped and not
		// forwarded, but cost their sender no score.
		return pubsub.ValidationIgnore
	case errors.Is(err, ErrFlood) && via != from:
		// A relay forwarded offers its own bucket let through; with
		// different timing here they may overflow this one. That is not
		// the relay's fault: drop them, score nobody. The publisher's
		// direct neighbours score it.
		return pubsub.ValidationIgnore
	case errors.Is(err, ErrPeerFlood) && via != from && !errors.Is(err, errFarOverRate):
		// A relay over its rate may forward a network bigger than the
		// rate was sized for: drop, score nobody. Far over it (hardPeerRate
		// times), it is no honest relay, and is scored down like a
		// publisher over its own rate.
		return pubsub.ValidationIgnore
	}
	return pubsub.ValidationReject
}

func (g *Gossip) count(from peer.ID, err error) {
	reason := "other"
	for _, r := range reasons {
		if errors.Is(err, r) {
			reason = r.Error()
			break
		}
	}
	g.mu.Lock()
	g.rejected[reason]++
	g.mu.Unlock()
	g.log.Debug("offer rejected", "peer", from, "err", err)
}

// validate runs before gossipsub forwards a message: only a valid, fresh
// offer signed by its publisher, within the rate of its publisher and of
// the neighbour that delivered it, goes on, and a rejection counts against
// the sender's score. A neighbour's rate counts every offer it delivers,
// under whatever key: over it, a neighbour that published the offer itself
// is scored down, a relay only past hardPeerRate times the rate (see
// DefaultPeerRate for the sizing).
func (g *Gossip) validate(_ context.Context, via peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	from := msg.GetFrom()
	now := g.cfg.Now()
	o, err := Open(msg.Data, from)
	if err == nil {
		err = o.Check(g.cfg.Network, now)
	}
	if err == nil && !g.book.Fresh(from, o.Seq) {
		err = fmt.Errorf("%w: %d", ErrStale, o.Seq)
	}
	if err == nil && via != g.self {
		// Per delivering neighbour, whoever signed: fresh keys cost
		// nothing, a connection does.
		// The clock is read under the lock: validators run concurrently,
		// and a bucket given an earlier time after a later one refills
		// twice.
		g.mu.Lock()
		at := g.cfg.Now()
		hard := g.hardVias.allow(via, at)
		soft := g.vias.allow(via, at)
		g.mu.Unlock()
		switch {
		case !hard:
			err = fmt.Errorf("%w: %s delivers more than %g a second: %w", ErrPeerFlood, via, hardPeerRate*g.cfg.PeerRate, errFarOverRate)
		case !soft:
			err = fmt.Errorf("%w: %s delivers more than %g a second", ErrPeerFlood, via, g.cfg.PeerRate)
		}
	}
	if err == nil {
		g.mu.Lock()
		ok := g.rates.allow(from, g.cfg.Now())
		g.mu.Unlock()
		if !ok {
			err = fmt.Errorf("%w: more than %d a second", ErrFlood, PublishRate)
		}
	}
	if err != nil {
		return g.reject(from, via, err)
	}
	msg.ValidatorData = o
	return pubsub.ValidationAccept
}

func (g *Gossip) receive(ctx context.Context) {
	for {
		msg, err := g.sub.Next(ctx)
		if err != nil {
			return
		}
		o, ok := msg.ValidatorData.(*Offer)
		if !ok {
			continue
		}
		if err := g.book.PutVia(msg.GetFrom(), msg.ReceivedFrom, o); err != nil {
			g.count(msg.GetFrom(), err) // a newer offer got in first, or no room
			continue
		}
		g.accepted.Emit(EvtOfferAccepted{From: msg.GetFrom(), Offer: o, At: g.cfg.Now()})
	}
}

// prune drops expired offers from the book every PruneInterval.
func (g *Gossip) prune(ctx context.Context) {
	t := time.NewTicker(g.cfg.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.book.Prune()
		}
	}
}

func (g *Gossip) watch(ctx context.Context) {
	for {
		ev, err := g.events.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin {
			g.joined.Emit(EvtPeerJoined{Peer: ev.Peer})
		}
	}
}

// Close leaves the topic and stops gossipsub.
func (g *Gossip) Close() {
	g.events.Cancel()
	g.sub.Cancel()
	g.topic.Close()
	g.cancel()
	g.wg.Wait()
	g.closeEmitters()
}

func (g *Gossip) closeEmitters() {
	if g.accepted != nil {
		g.accepted.Close()
	}
	if g.joined != nil {
		g.joined.Close()
	}
}

func scoreParams(topic string) *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		AppSpecificScore:         func(peer.ID) float64 { return 0 },
		DecayInterval:            time.Second,
		DecayToZero:              0.01,
		RetainScore:              10 * time.Minute,
		IPColocationFactorWeight: 0, // a local network has every peer on one address
		BehaviourPenaltyWeight:   -1,
		BehaviourPenaltyDecay:    pubsub.ScoreParameterDecay(10 * time.Minute),
		Topics: map[string]*pubsub.TopicScoreParams{topic: {
			TopicWeight:                    1,
			TimeInMeshQuantum:              time.Second,
			FirstMessageDeliveriesWeight:   1,
			FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(10 * time.Minute),
			FirstMessageDeliveriesCap:      100,
			InvalidMessageDeliveriesWeight: -100,
			InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
		}},
	}
}

func scoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             -100,
		PublishThreshold:            -500,
		GraylistThreshold:           GraylistThreshold,
		AcceptPXThreshold:           10,
		OpportunisticGraftThreshold: 5,
	}
}
