package attest_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func withLimits(l attest.Limits) nodeOpt {
	return func(_ *node, c *attest.Config) { c.Limits = l }
}

// boundForeignEvidence is evidence bound to pub and unexpired, of a kind
// the dev validator refuses: it passes every cheap check and is rejected
// only by the validator (as a quote that fails verification would be).
func boundForeignEvidence(t testing.TB, pub crypto.PubKey, expiry time.Time) []byte {
	t.Helper()
	ev, err := dev.Issuer{}.Issue(context.Background(), pub, expiry, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev.Kind, ev.Quote = "tdx", []byte("not a quote")
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHandshakeFlood: one peer sends 2,000 handshakes as fast as it can
// (issue 17, item 4). Evidence the validator rejected once is refused
// from memory after; evidence already accepted is served from the
// verdict; a peer past its token bucket is refused before anything is
// read; and an honest peer is still attested during the flood.
func TestHandshakeFlood(t *testing.T) {
	const n = 2000
	tests := []struct {
		name string
		// payload is the attacker's i-th evidence.
		payload func(t *testing.T, pub crypto.PubKey, i int) []byte
		limits  attest.Limits
		// maxValidations bounds the validator's calls for the flood.
		maxValidations int32
	}{
		{
			name:           "replayed rejected evidence",
			payload:        func(t *testing.T, pub crypto.PubKey, _ int) []byte { return replayed(t, pub) },
			limits:         noLimits,
			maxValidations: 1,
		},
		{
			name:           "replayed accepted evidence",
			payload:        func(t *testing.T, pub crypto.PubKey, _ int) []byte { return replayedValid(t, pub) },
			limits:         noLimits,
			maxValidations: 1,
		},
		{
			name: "fresh evidence each time",
			payload: func(t *testing.T, pub crypto.PubKey, i int) []byte {
				return boundForeignEvidence(t, pub, t0.Add(time.Hour+time.Duration(i)*time.Second))
			},
			limits:         attest.Limits{}, // the defaults
			maxValidations: int32(attest.DefaultLimits.PeerBurst),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replayedOnce, replayedValidOnce = nil, nil
			clock := clocktest.New(t0)
			victim := newNode(t, clock, withLimits(tt.limits))
			attacker := rawPeer(t)
			p2ptest.Connect(t, attacker, victim.h)
			pub := attacker.Peerstore().PubKey(attacker.ID())
			payloads := make([][]byte, n)
			for i := range payloads {
				payloads[i] = tt.payload(t, pub, i)
			}

			ctx := ctxT(t)
			var answered, refused atomic.Int32
			var wg sync.WaitGroup
			next := atomic.Int32{}
			start := time.Now()
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
						typ, _, err := exchangeRaw(ctx, attacker, victim.h.ID(), frameEvidence, payloads[i])
						switch {
						case err != nil:
						case typ == frameReject:
							refused.Add(1)
						default:
							answered.Add(1)
						}
					}
				}()
			}
			// An honest peer attests the victim during the flood.
			honest := newNode(t, clock)
			p2ptest.Connect(t, honest.h, victim.h)
			hstart := time.Now()
			v, err := honest.hs.Attest(ctx, victim.h.ID())
			honestTook := time.Since(hstart)
			wg.Wait()
			took := time.Since(start)
			if err != nil || v.Tier != attest.TierDev {
				t.Fatalf("an honest peer attesting the victim during the flood: %+v, %v", v, err)
			}
			p2ptest.Eventually(t, "the victim's verdict on the honest peer", func() bool {
				_, ok := victim.hs.Verified(honest.h.ID())
				return ok
			})
			if answered.Load()+refused.Load() < n/2 {
				t.Fatalf("only %d of %d handshakes answered", answered.Load()+refused.Load(), n)
			}
			// The honest peer's evidence is validated once; the flood at
			// most maxValidations times.
			if got := victim.validator.calls.Load() - 1; got > tt.maxValidations {
				t.Fatalf("the validator ran %d times for %d handshakes from one peer, want at most %d", got, n, tt.maxValidations)
			}
			t.Logf("%d handshakes in %s (%d answered, %d refused), %d validations; an honest handshake took %s",
				n, took.Round(time.Millisecond), answered.Load(), refused.Load(), victim.validator.calls.Load()-1, honestTook.Round(time.Millisecond))
		})
	}
}

var replayedOnce, replayedValidOnce []byte

func replayed(t *testing.T, pub crypto.PubKey) []byte {
	if replayedOnce == nil {
		replayedOnce = boundForeignEvidence(t, pub, t0.Add(time.Hour))
	}
	return replayedOnce
}

func replayedValid(t *testing.T, pub crypto.PubKey) []byte {
	if replayedValidOnce == nil {
		replayedValidOnce = devEvidence(t, pub, t0.Add(time.Hour))
	}
	return replayedValidOnce
}

// TestEvidenceShownOnlyWhenDialedOrAccepted: a node attesting a peer that
// dialed it asks the peer to go first, and a peer that asks a node it
// dialed to go first is refused (issue 17, item 4): a stranger that
// connects never receives the node's evidence before showing its own.
func TestEvidenceShownOnlyWhenDialedOrAccepted(t *testing.T) {
	clock := clocktest.New(t0)
	victim := newNode(t, clock)
	stranger := rawPeer(t)
	first := make(chan byte, 1)
	stranger.SetStreamHandler(attestProto, func(s network.Stream) {
		defer s.Reset()
		typ, _, err := p2p.NewFrameReader(s, 1<<20, 0).Next()
		if err != nil {
			typ = 0
		}
		first <- typ
	})
	p2ptest.Connect(t, stranger, victim.h) // the stranger dials

	if _, err := victim.hs.Attest(ctxT(t), stranger.ID()); err == nil {
		t.Fatal("attested a stranger that presented nothing")
	}
	if got := p2ptest.WaitFor(t, first, "the stranger's first frame"); got != frameAsk {
		t.Fatalf("the stranger received frame type %d first, want an ask (%d): the node's evidence went to a peer it did not dial", got, frameAsk)
	}

	// The stranger asks the node to go first over the connection the
	// stranger dialed: refused, no evidence.
	typ, payload, err := exchangeRaw(ctxT(t), stranger, victim.h.ID(), frameAsk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if typ != frameReject {
		t.Fatalf("asked to go first by the peer that dialed, the node answered frame %d (%.40q)", typ, payload)
	}

	// Two nodes that attest each other, whoever dialed, still do.
	other := newNode(t, clock)
	p2ptest.Connect(t, other.h, victim.h)
	if _, err := victim.hs.Attest(ctxT(t), other.h.ID()); err != nil {
		t.Fatalf("attesting a peer that dialed: %v", err)
	}
	if _, err := other.hs.Attest(ctxT(t), victim.h.ID()); err != nil && !errors.Is(err, attest.ErrNoEvidence) {
		t.Fatalf("attesting the peer it dialed: %v", err)
	}
}
