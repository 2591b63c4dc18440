package scale

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/internal/procstat"
	"github.com/cocoon-mesh/cocoon/payments"
)

// GossipResult is what the gossip phase measured.
type GossipResult struct {
	Offers     int     `json:"offers"`      // published, one per publisher
	OfferBytes int     `json:"offer_bytes"` // signed size of each
	Pairs      int     `json:"pairs"`       // (offer, node) pairs, the publisher not counted
	Delivered  int     `json:"delivered"`   // pairs whose offer entered the book within the deadline
	Ratio      float64 `json:"delivery_ratio"`
	Latency    Dist    `json:"publish_to_book"` // of the delivered pairs
	// The phase's CPU time (this process: every node, mocknet included)
	// and wall time, from the first Publish until every offer arrived or
	// the deadline passed.
	CPU        time.Duration `json:"cpu_ns"`
	MachineCPU time.Duration `json:"machine_cpu_ns"` // every process's, ours included
	Wall       time.Duration `json:"wall_ns"`
}

// Gossip has cfg.Publishers random nodes publish a worker offer each,
// spread over cfg.Spread, and waits until every other node's book holds
// every offer or cfg.Deadline after the last publication.
func (s *Sim) Gossip(ctx context.Context) error {
	cfg := s.cfg
	pubs := s.sample(cfg.Nodes, cfg.Publishers)
	signed := make([][]byte, len(pubs))
	for k, i := range pubs {
		n := s.nodes[i]
		b, err := offers.Sign(workerOffer(cfg.Network, n.h, 1, time.Now()), n.key)
		if err != nil {
			return err
		}
		signed[k] = b
	}
	want := len(pubs) * (cfg.Nodes - 1)
	sent := make([]time.Time, len(pubs))
	start, cpu0, all0 := time.Now(), procstat.SelfCPU(), procstat.MachineCPU()
	for k, i := range pubs {
		if err := sleepUntil(ctx, start.Add(cfg.Spread*time.Duration(k)/time.Duration(len(pubs)))); err != nil {
			return err
		}
		sent[k] = time.Now()
		if err := s.nodes[i].gossip.Publish(ctx, signed[k]); err != nil {
			return fmt.Errorf("node %d publishing: %w", i, err)
		}
	}
	delivered := func() int {
		var got int
		for _, i := range pubs {
			got += s.rec.nodes(s.nodes[i].h.ID(), 1) - 1 // its own book too
		}
		return got
	}
	err := poll(ctx, cfg.Deadline, "every offer in every book", func() bool { return delivered() == want })
	if err != nil && ctx.Err() != nil {
		return err
	}

	r := GossipResult{Offers: len(pubs), OfferBytes: len(signed[0]), Pairs: want,
		CPU: procstat.SelfCPU() - cpu0, MachineCPU: procstat.MachineCPU() - all0, Wall: time.Since(start)}
	var lat []time.Duration
	for k, i := range pubs {
		id := s.nodes[i].h.ID()
		for j := range cfg.Nodes {
			if j == i {
				continue
			}
			if t, ok := s.rec.at(j, id, 1); ok && t.Sub(sent[k]) <= cfg.Deadline {
				lat = append(lat, t.Sub(sent[k]))
			}
		}
	}
	r.Delivered = len(lat)
	r.Ratio = float64(r.Delivered) / float64(r.Pairs)
	r.Latency = summarize(lat)
	s.result.Gossip = r
	return nil
}

// sleepUntil waits for t: publications are paced, not synchronised.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// models is the catalogue workers sell from.
var models = []string{
	"llama-3.1-8b-instruct", "llama-3.3-70b-instruct", "qwen2.5-32b-instruct", "qwen2.5-coder-7b",
	"deepseek-r1-distill-llama-70b", "mistral-small-24b-instruct", "gemma-2-27b-it", "phi-4",
	"mixtral-8x7b-instruct", "command-r-35b",
}

// workerOffer is a realistic worker offer: two models with prices,
// capacity, measured speed, tier, attestation digest and address; about
// 550 bytes of payload, 800 signed (the envelope carries the payload in
// base64).
func workerOffer(network string, h host.Host, seq uint64, now time.Time) *offers.Offer {
	id := h.ID()
	digest := sha256.Sum256([]byte(id))
	o := &offers.Offer{
		Network: network, Peer: id.String(), Role: offers.RoleWorker, Seq: seq,
		Expiry:        now.Add(time.Minute).UnixMilli(),
		MaxConcurrent: 16, Load: 3, TTFTMillis: 180, TokensPerSec: 52.5, Tier: "tee-gpu",
		Attestation: digest[:],
	}
	for k := range 2 {
		m := models[(int(digest[0])+k)%len(models)]
		o.Models = append(o.Models, offers.ModelOffer{ID: m, Price: payments.Price{
			Prompt: 150_000_000 + int64(k)*10_000_000, Cached: 40_000_000, Completion: 600_000_000 + int64(digest[1])*1_000_000,
		}})
	}
	for _, a := range h.Addrs() {
		o.Addrs = append(o.Addrs, a.String())
	}
	return o
}

// attacker is a node with its own gossipsub on the offers topic and no
// validator, so it can publish what the real Gossip would refuse to send.
// Its messages are signed by gossipsub as any node's are.
type attacker struct {
	h          host.Host
	key        crypto.PrivKey
	ps         *pubsub.PubSub
	topic      *pubsub.Topic
	cancel     context.CancelFunc
	neighbours []int
}

func (s *Sim) newAttacker(ctx context.Context) (*attacker, error) {
	h, key, err := s.newHost()
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(context.Background())
	a := &attacker{h: h, key: key, cancel: cancel}
	if a.ps, err = pubsub.NewGossipSub(pctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign)); err != nil {
		cancel()
		return nil, err
	}
	if a.topic, err = a.ps.Join(offers.Topic(s.cfg.Network)); err != nil {
		cancel()
		return nil, err
	}
	return a, nil
}

func (a *attacker) close() {
	a.topic.Close()
	a.cancel()
}

// AttackResult is what the attack phase found. The counts of books a bad
// offer entered must be 0.
type AttackResult struct {
	Forged     int            `json:"forged_entered"`    // books a badly signed offer entered
	Replayed   int            `json:"replayed_entered"`  // books an older offer entered again
	Oversized  int            `json:"oversized_entered"` // books an offer over MaxOfferBytes entered
	Neighbours int            `json:"neighbours"`        // the attacker's direct peers, which see each bad offer
	Rejected   map[string]int `json:"rejected"`          // by reason, at the neighbours
	Score      float64        `json:"max_score"`         // the best score a neighbour gives the attacker afterwards
	Baseline   int            `json:"baseline_books"`    // books its valid offers reached (of Nodes)
}

// Attack has the attacker publish a valid offer (seq 1) and a newer one
// (seq 2), then replay the first, publish one with a forged signature
// (seq 3) and one over MaxOfferBytes (seq 4), then a valid seq 5 as a
// barrier. Once seq 5 is in every book it can reach and every neighbour
// has refused each bad offer, it counts the books the bad ones entered.
func (s *Sim) Attack(ctx context.Context) error {
	a, cfg := s.evil, s.cfg
	now := time.Now()
	first, err := offers.Sign(workerOffer(cfg.Network, a.h, 1, now), a.key)
	if err != nil {
		return err
	}
	second, err := offers.Sign(workerOffer(cfg.Network, a.h, 2, now), a.key)
	if err != nil {
		return err
	}
	if err := s.attackerPublish(ctx, "the attacker's first offer", 1, first); err != nil {
		return err
	}
	if err := s.attackerPublish(ctx, "the attacker's second offer", 2, second); err != nil {
		return err
	}
	replayAt := time.Now()
	before := make([]map[string]int, len(a.neighbours))
	for k, j := range a.neighbours {
		before[k] = s.nodes[j].gossip.Rejected()
	}

	forged, oversized, err := badOffers(cfg.Network, a, now)
	if err != nil {
		return err
	}
	for _, bad := range []struct {
		what string
		b    []byte
	}{{"a replay", first}, {"a forged offer", forged}, {"an oversized offer", oversized}} {
		if err := s.attackerPublish(ctx, bad.what, 0, bad.b); err != nil {
			return err
		}
	}
	err = poll(ctx, cfg.Deadline, "the attacker's neighbours to refuse each bad offer", func() bool {
		for k, j := range a.neighbours {
			now := s.nodes[j].gossip.Rejected()
			for _, r := range badReasons {
				if now[r] <= before[k][r] {
					return false
				}
			}
		}
		return true
	})
	if ctx.Err() != nil {
		return err
	}
	fifth, err := offers.Sign(workerOffer(cfg.Network, a.h, 5, now), a.key)
	if err != nil {
		return err
	}
	if err := s.attackerPublish(ctx, "the attacker's barrier offer", 5, fifth); err != nil {
		return err
	}
	// Scores are inspected every 200 ms: wait for the neighbours' view.
	err = poll(ctx, 2*time.Second, "the attacker's score to fall", func() bool {
		for _, j := range a.neighbours {
			if sc, ok := s.nodes[j].gossip.Score(a.h.ID()); !ok || sc >= 0 {
				return false
			}
		}
		return true
	})
	if ctx.Err() != nil {
		return err
	}
	s.result.Attack = s.attackResult(replayAt, before)
	return nil
}

// badReasons are the errors the attacker's neighbours refuse its replay,
// its forged offer and its oversized offer with.
var badReasons = []string{offers.ErrStale.Error(), offers.ErrSignature.Error(), offers.ErrTooLarge.Error()}

// attackerPublish has the attacker publish b, its offer seq, and, unless
// seq is 0 (an offer no book may take), waits until every book holds it
// or cfg.Deadline passes; only the context's end is an error.
func (s *Sim) attackerPublish(ctx context.Context, what string, seq uint64, b []byte) error {
	if err := s.evil.topic.Publish(ctx, b); err != nil {
		return fmt.Errorf("attacker publishing %s: %w", what, err)
	}
	if seq == 0 {
		return nil
	}
	id := s.evil.h.ID()
	err := poll(ctx, s.cfg.Deadline, what+" in every book", func() bool { return s.rec.nodes(id, seq) >= s.cfg.Nodes })
	if ctx.Err() != nil {
		return err
	}
	return nil
}

// badOffers are the attacker's offer seq 3 signed with another key and
// its offer seq 4 padded over MaxOfferBytes.
func badOffers(network string, a *attacker, now time.Time) (forged, oversized []byte, err error) {
	forged, err = forge(workerOffer(network, a.h, 3, now))
	if err != nil {
		return nil, nil, err
	}
	big := workerOffer(network, a.h, 4, now)
	for k := range 40 {
		big.Models = append(big.Models, offers.ModelOffer{ID: fmt.Sprintf("padding-%02d-%s", k, strings.Repeat("x", 300))})
	}
	oversized, err = signUnchecked(big, a.key)
	if err != nil {
		return nil, nil, err
	}
	return forged, oversized, nil
}

// attackResult counts the books the attacker's offers entered, the
// refusals at its neighbours since before (their counts when the replay
// was published, at replayAt) and its best score there.
func (s *Sim) attackResult(replayAt time.Time, before []map[string]int) AttackResult {
	a := s.evil
	id := a.h.ID()
	r := AttackResult{
		Forged:     s.rec.nodes(id, 3),
		Oversized:  s.rec.nodes(id, 4),
		Neighbours: len(a.neighbours),
		Rejected:   make(map[string]int),
		Baseline:   s.rec.nodes(id, 5),
		Score:      -1e18,
	}
	// A replay enters wrongly where the book already held the newer offer.
	// (A node that missed both may take it: it cannot know better.)
	for j := range s.cfg.Nodes {
		if t2, ok := s.rec.at(j, id, 2); !ok || !t2.Before(replayAt) {
			continue
		}
		t1, ok := s.rec.at(j, id, 1)
		if s.rec.entered(j, id, 1) > 1 || ok && !t1.Before(replayAt) {
			r.Replayed++
		}
	}
	for k, j := range a.neighbours {
		now := s.nodes[j].gossip.Rejected()
		for _, reason := range badReasons {
			r.Rejected[reason] += now[reason] - before[k][reason]
		}
		if sc, ok := s.nodes[j].gossip.Score(id); ok {
			r.Score = max(r.Score, sc)
		}
	}
	return r
}

// forge signs o, which names the attacker, with another key.
func forge(o *offers.Offer) ([]byte, error) {
	other, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	return signUnchecked(o, other)
}

// signUnchecked signs o with key as offers.Sign does, without its checks
// of the signer and the size.
func signUnchecked(o *offers.Offer, key crypto.PrivKey) ([]byte, error) {
	payload, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(append([]byte("cocoon-offer-v1"), payload...))
	if err != nil {
		return nil, err
	}
	return json.Marshal(offers.Signed{Payload: payload, Signature: sig})
}
