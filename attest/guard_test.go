package attest

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestGuardBuckets: many identities at one address share the address's
// bucket (a Sybil gains nothing by fresh keys); another address has its
// own; loopback ("") has none; a peer's own bucket holds whatever its
// address.
func TestGuardBuckets(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	g := newGuard(Limits{})
	burst := DefaultLimits.IPBurst
	admitted := 0
	for i := range burst + 10 {
		if g.admitLocked(peer.ID(fmt.Sprint("sybil-", i)), "203.0.113.7", now) == "" {
			admitted++
		}
	}
	if admitted != burst {
		t.Fatalf("%d fresh identities at one address admitted, want the address's burst %d", admitted, burst)
	}
	if why := g.admitLocked("elsewhere", "198.51.100.1", now); why != "" {
		t.Fatalf("a peer at another address refused: %s", why)
	}
	for i := range burst + 10 {
		if why := g.admitLocked(peer.ID(fmt.Sprint("local-", i)), "", now); why != "" {
			t.Fatalf("loopback peer %d refused: %s", i, why)
		}
	}
	for i := range DefaultLimits.PeerBurst {
		if why := g.admitLocked("one", "", now); why != "" {
			t.Fatalf("handshake %d of one peer refused within its burst: %s", i, why)
		}
	}
	if why := g.admitLocked("one", "", now); why == "" {
		t.Fatal("a peer past its burst admitted")
	}
	// Tokens come back at the peer's rate.
	if why := g.admitLocked("one", "", now.Add(time.Second)); why != "" {
		t.Fatalf("a peer refused after a second: %s", why)
	}
}
