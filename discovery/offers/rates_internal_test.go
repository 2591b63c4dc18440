package offers

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// TestPublisherRates: a publisher gets its burst at once, then its rate;
// publishers are counted apart; buckets back to full are forgotten once the
// map grows past its pruning mark.
func TestPublisherRates(t *testing.T) {
	r := publisherRates{m: make(map[peer.ID]*rate.Limiter)}
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	taken := func(id peer.ID, n int, now time.Time) int {
		ok := 0
		for range n {
			if r.allow(id, now) {
				ok++
			}
		}
		return ok
	}
	if got := taken("flooder", 100, at); got != PublishBurst {
		t.Fatalf("100 offers at once: %d taken, want the burst %d", got, PublishBurst)
	}
	if got := taken("honest", 1, at); got != 1 {
		t.Fatal("another publisher's offer was refused: the buckets are shared")
	}
	if got := taken("flooder", 100, at.Add(time.Second)); got != PublishRate {
		t.Fatalf("100 offers a second later: %d taken, want the rate %d", got, PublishRate)
	}
	// Honest pace, one offer every MinPublishGap, is never refused.
	for i := range 100 {
		if !r.allow("steady", at.Add(time.Duration(i)*MinPublishGap)) {
			t.Fatalf("offer %d at the minimum gap refused", i)
		}
	}

	// Pruning: fill past the mark with publishers whose buckets then refill.
	r = publisherRates{m: make(map[peer.ID]*rate.Limiter)}
	for i := range 1100 {
		r.allow(peer.ID(fmt.Sprint(i)), at)
	}
	r.allow("flooder", at.Add(time.Hour))
	for range PublishBurst {
		r.allow("flooder", at.Add(time.Hour))
	}
	later := at.Add(time.Hour + time.Millisecond)
	r.prune = 0 // force the next new publisher to prune
	r.allow("new", later)
	if len(r.m) != 2 {
		t.Fatalf("%d buckets after pruning, want 2 (the flooder's, still empty, and the new one)", len(r.m))
	}
	if r.allow("flooder", later) {
		t.Fatal("pruning forgot the flooder's empty bucket")
	}
}
