package scale_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/cmd/bench/internal/scale"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmallNetwork runs every phase on 12 nodes: every offer reaches every
// book, no bad offer enters any, its neighbours refuse each and score its
// sender down, lookups find their workers and a new worker is routed to.
// No timing is checked.
func TestSmallNetwork(t *testing.T) {
	cfg := scale.DefaultConfig(12)
	cfg.Degree = 4
	cfg.Latency = time.Millisecond
	cfg.Publishers = 4
	cfg.Spread = 0
	cfg.Deadline = 20 * time.Second // generous under -race; the run ends as soon as all arrive
	cfg.DHTServers = 3
	cfg.Providers = 3
	cfg.Lookups = 6
	cfg.Joins = 1
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r, err := scale.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}

	if g := r.Gossip; g.Delivered != g.Pairs || g.Pairs != 4*11 {
		t.Errorf("gossip delivered %d of %d offer-node pairs, want all of 44", g.Delivered, g.Pairs)
	}
	if g := r.Gossip; g.OfferBytes < 400 || g.OfferBytes > 1000 {
		t.Errorf("an offer is %d bytes signed, want about 800", g.OfferBytes)
	}
	a := r.Attack
	if a.Forged != 0 || a.Replayed != 0 || a.Oversized != 0 {
		t.Errorf("bad offers entered books: forged %d, replayed %d, oversized %d", a.Forged, a.Replayed, a.Oversized)
	}
	if a.Baseline != cfg.Nodes {
		t.Errorf("the attacker's valid offer reached %d books, want %d", a.Baseline, cfg.Nodes)
	}
	for _, reason := range []error{offers.ErrStale, offers.ErrSignature, offers.ErrTooLarge} {
		if a.Rejected[reason.Error()] < a.Neighbours {
			t.Errorf("%q: %d rejections at %d neighbours", reason, a.Rejected[reason.Error()], a.Neighbours)
		}
	}
	if a.Score >= 0 {
		t.Errorf("the attacker's best score at its neighbours is %v, want negative", a.Score)
	}
	if d := r.DHT; d.Found != d.Lookups || d.Lookups != 6 || d.ProvideErrors != 0 {
		t.Errorf("dht: %d of %d lookups found a worker, %d provide errors", d.Found, d.Lookups, d.ProvideErrors)
	}
	if j := r.Join; j.Failed != 0 || j.Routed.N != 1 {
		t.Errorf("join: %+v", j)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*scale.Config)
		ok     bool
	}{
		{"default", func(*scale.Config) {}, true},
		{"too few nodes", func(c *scale.Config) { c.Nodes = 3 }, false},
		{"degree too high", func(c *scale.Config) { c.Degree = c.Nodes }, false},
		{"more publishers than nodes", func(c *scale.Config) { c.Publishers = c.Nodes + 1 }, false},
		{"no deadline", func(c *scale.Config) { c.Deadline = 0 }, false},
		{"one model", func(c *scale.Config) { c.Models = 1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := scale.DefaultConfig(200)
			tt.modify(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
