package seal

import (
	"math/rand/v2"
	"testing"
)

// TestWindowModel checks the replay window against a set of every counter
// seen: a counter is accepted once, and only within ReplayWindow of the
// newest.
func TestWindowModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		var w window
		seen := map[uint64]bool{}
		var top uint64
		for range 2000 {
			var ctr uint64
			switch rng.IntN(4) {
			case 0: // ahead, sometimes far
				ctr = top + 1 + rng.Uint64N(uint64(1+rng.IntN(3)*ReplayWindow))
			default: // around the window's edge
				ctr = max(0, top+64-rng.Uint64N(ReplayWindow+128))
				if ctr > top+64 { // wrapped below zero
					ctr = rng.Uint64N(top + 1)
				}
			}
			want := ctr != 0 && !seen[ctr] && (ctr > top || top-ctr < ReplayWindow)
			if got := w.accept(ctr); got != want {
				t.Fatalf("run %d: accept(%d) with top %d = %v, want %v", run, ctr, top, got, want)
			}
			if want {
				seen[ctr] = true
				top = max(top, ctr)
			}
		}
	}
}
