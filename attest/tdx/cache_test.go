package tdx

import (
	"context"
	"errors"
	"testing"
	"time"
)

// countingGetter counts its Gets and fails them all.
type countingGetter struct{ calls int }

func (g *countingGetter) Get(string) (map[string][]string, []byte, error) {
	g.calls++
	return nil, nil, errors.New("unreachable")
}

// TestCallFetchesOnlyCollateralURLs: go-tdx-guest takes the root CRL's URL
// from a certificate in the QE identity's header before verifying it, so a
// forged answer (a relayed one, say) could name any URL: the validation's
// getter fetches none but Intel's, and a refusal is not unavailability.
func TestCallFetchesOnlyCollateralURLs(t *testing.T) {
	net := &countingGetter{}
	c, err := newCache(Config{CacheDir: t.TempDir(), Getter: net, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	g := c.call(context.Background())
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "https://certificates.trustedservices.intel.com/other.der"} {
		if _, _, err := g.Get(u); err == nil {
			t.Fatalf("fetched %s", u)
		}
	}
	if net.calls != 0 || g.failed != nil {
		t.Fatalf("%d fetches, failure %v: want none, and no unavailability", net.calls, g.failed)
	}
	if _, _, err := g.Get(IntelRootCRLURL); err == nil || net.calls != 1 || g.failed == nil {
		t.Fatalf("Intel's root CRL: %v after %d fetches, want one failed fetch", err, net.calls)
	}
}
