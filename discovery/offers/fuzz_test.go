package offers_test

import (
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// FuzzOpen feeds the decoder of gossiped offers, which any peer on the
// topic reaches, arbitrary bytes: it never panics, what it opens is the
// publisher's own offer, and checking it never panics either.
func FuzzOpen(f *testing.F) {
	key, id := p2ptest.NewKey(f)
	now := time.Now()
	good, err := offers.Sign(workerOffer(id, 1, now), key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"payload":"e30=","signature":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := offers.Open(b, id)
		if err != nil {
			return
		}
		if o.Peer != id.String() {
			t.Fatalf("opened an offer of %s as %s's", o.Peer, id)
		}
		o.Check("local", now)
	})
}
