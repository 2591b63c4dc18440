package attest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// fakeIssuer issues dev evidence and counts the calls, or fails with err.
type fakeIssuer struct {
	calls atomic.Int32
	err   error
}

func (f *fakeIssuer) Issue(ctx context.Context, pub crypto.PubKey, expiry time.Time) (*attest.Evidence, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	return dev.Issuer{}.Issue(ctx, pub, expiry)
}

// fakeValidator validates dev evidence and counts the calls, or rejects
// everything with err.
type fakeValidator struct {
	calls atomic.Int32
	err   error
}

func (f *fakeValidator) Validate(ctx context.Context, ev *attest.Evidence, pub crypto.PubKey, now time.Time) (attest.Verdict, error) {
	f.calls.Add(1)
	if f.err != nil {
		return attest.Verdict{}, f.err
	}
	return dev.Validator{}.Validate(ctx, ev, pub, now)
}

var errRejected = errors.New("test validator rejects")

type node struct {
	h         host.Host
	hs        *attest.Handshaker
	issuer    *fakeIssuer
	validator *fakeValidator
}

type nodeOpt func(*node, *attest.Config)

func withValidatorErr(err error) nodeOpt {
	return func(n *node, _ *attest.Config) { n.validator.err = err }
}

func withIssuerErr(err error) nodeOpt {
	return func(n *node, _ *attest.Config) { n.issuer.err = err }
}

func withNetwork(name string) nodeOpt {
	return func(_ *node, c *attest.Config) { c.Network = name }
}

func withValidity(d time.Duration) nodeOpt {
	return func(_ *node, c *attest.Config) { c.Validity = d }
}

// newNode starts a loopback host serving the handshake, closed at cleanup.
func newNode(t testing.TB, clock *clocktest.Clock, opts ...nodeOpt) *node {
	t.Helper()
	h := p2ptest.NewHost(t)
	n := &node{h: h, issuer: &fakeIssuer{}, validator: &fakeValidator{}}
	cfg := attest.Config{Network: "local", Validity: time.Hour, Now: clock.Now}
	for _, o := range opts {
		o(n, &cfg)
	}
	n.hs = attest.NewHandshaker(h, n.issuer, n.validator, cfg, logtest.Discard)
	sv := p2p.NewService(h, logtest.Discard)
	n.hs.Register(sv)
	t.Cleanup(sv.Close) // runs before the host closes: cleanups run last first
	return n
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshakeMutual(t *testing.T) {
	clock := clocktest.New(t0)
	a, b := newNode(t, clock), newNode(t, clock)
	p2ptest.Connect(t, a.h, b.h)

	v, err := a.hs.Attest(ctxT(t), b.h.ID())
	if err != nil {
		t.Fatal(err)
	}
	wantExp := t0.Add(time.Hour)
	if v.Tier != attest.TierDev || v.Kind != dev.Kind || !v.Expiry.Equal(wantExp) {
		t.Fatalf("verdict %+v, want dev until %v", v, wantExp)
	}
	if got, ok := a.hs.Verified(b.h.ID()); !ok || got != v {
		t.Fatalf("initiator's Verified = %+v, %v", got, ok)
	}
	// The responder checked the initiator too; it stores its verdict as its
	// handler finishes, which may be just after Attest returned.
	p2ptest.Eventually(t, "the responder's verdict", func() bool {
		_, ok := b.hs.Verified(a.h.ID())
		return ok
	})
	if got, _ := b.hs.Verified(a.h.ID()); got.Tier != attest.TierDev || !got.Expiry.Equal(wantExp) {
		t.Fatalf("responder's verdict %+v", got)
	}

	// A live verdict is served from the cache: no second exchange.
	if _, err := a.hs.Attest(ctxT(t), b.h.ID()); err != nil {
		t.Fatal(err)
	}
	if n := a.validator.calls.Load(); n != 1 {
		t.Fatalf("initiator validated %d times, want 1", n)
	}
	if n := b.validator.calls.Load(); n != 1 {
		t.Fatalf("responder validated %d times, want 1", n)
	}
	if _, ok := a.hs.Verified(peer.ID("unknown")); ok {
		t.Fatal("unknown peer verified")
	}
}

func TestHandshakeRejected(t *testing.T) {
	tests := []struct {
		name         string
		initiator    []nodeOpt
		responder    []nodeOpt
		responderNow time.Duration // the responder's clock runs this far ahead
		wantErr      string
		wantIs       error
	}{
		{name: "responder rejects", responder: []nodeOpt{withValidatorErr(errRejected)}, wantErr: "rejected our evidence"},
		{name: "both reject", initiator: []nodeOpt{withValidatorErr(errRejected)}, responder: []nodeOpt{withValidatorErr(errRejected)}, wantErr: "rejected our evidence"},
		{name: "initiator's evidence expired at the responder", responderNow: 2 * time.Hour, wantErr: "rejected our evidence"},
		{name: "initiator rejects", initiator: []nodeOpt{withValidatorErr(errRejected)}, wantIs: errRejected},
		{name: "responder cannot issue", responder: []nodeOpt{withIssuerErr(errors.New("no quote"))}, wantErr: "reading peer evidence"},
		{name: "initiator cannot issue", initiator: []nodeOpt{withIssuerErr(errRejected)}, wantIs: errRejected},
		{name: "different networks", responder: []nodeOpt{withNetwork("testnet")}, wantErr: "attestation stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newNode(t, clocktest.New(t0), tt.initiator...)
			b := newNode(t, clocktest.New(t0.Add(tt.responderNow)), tt.responder...)
			p2ptest.Connect(t, a.h, b.h)
			v, err := a.hs.Attest(ctxT(t), b.h.ID())
			if err == nil {
				t.Fatalf("Attest succeeded with %+v", v)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("got %v, want %v", err, tt.wantIs)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if v != (attest.Verdict{}) {
				t.Fatalf("failed Attest returned verdict %+v", v)
			}
			if _, ok := a.hs.Verified(b.h.ID()); ok {
				t.Fatal("the initiator stored a verdict")
			}
			// A responder that refused the initiator stores nothing either.
			// (It answers the rejection only after its validator ran, so
			// there is nothing left to wait for.)
			if b.validator.err != nil || tt.responderNow != 0 {
				if _, ok := b.hs.Verified(a.h.ID()); ok {
					t.Fatal("the rejecting responder stored a verdict")
				}
			}
		})
	}
}

func TestHandshakeVerdictExpiry(t *testing.T) {
	clock := clocktest.New(t0)
	a, b := newNode(t, clock), newNode(t, clock)
	p2ptest.Connect(t, a.h, b.h)
	if _, err := a.hs.Attest(ctxT(t), b.h.ID()); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Hour - time.Second)
	if _, ok := a.hs.Verified(b.h.ID()); !ok {
		t.Fatal("verdict dropped a second before its expiry")
	}
	clock.Advance(time.Second)
	if _, ok := a.hs.Verified(b.h.ID()); ok {
		t.Fatal("verdict still live at its expiry")
	}

	// Attest runs a fresh exchange, with fresh evidence on both sides.
	v, err := a.hs.Attest(ctxT(t), b.h.ID())
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(2 * time.Hour); !v.Expiry.Equal(want) {
		t.Fatalf("renewed verdict expires %v, want %v", v.Expiry, want)
	}
	if n := a.validator.calls.Load(); n != 2 {
		t.Fatalf("initiator validated %d times, want 2", n)
	}
	if n := a.issuer.calls.Load(); n != 2 {
		t.Fatalf("initiator issued %d times, want 2", n)
	}
	p2ptest.Eventually(t, "the responder to renew", func() bool { return b.issuer.calls.Load() == 2 })
}

func TestHandshakeForget(t *testing.T) {
	clock := clocktest.New(t0)
	a, b := newNode(t, clock), newNode(t, clock)
	p2ptest.Connect(t, a.h, b.h)
	for range 2 {
		if _, err := a.hs.Attest(ctxT(t), b.h.ID()); err != nil {
			t.Fatal(err)
		}
		a.hs.Forget(b.h.ID())
		if _, ok := a.hs.Verified(b.h.ID()); ok {
			t.Fatal("verdict survived Forget")
		}
	}
	if n := a.validator.calls.Load(); n != 2 {
		t.Fatalf("validated %d times, want 2 (once per Attest after Forget)", n)
	}
	if n := a.issuer.calls.Load(); n != 1 {
		t.Fatalf("issued %d times, want 1: Forget drops verdicts, not own evidence", n)
	}
}

func TestHandshakeForgetKind(t *testing.T) {
	clock := clocktest.New(t0)
	a, b := newNode(t, clock), newNode(t, clock)
	p2ptest.Connect(t, a.h, b.h)
	if _, err := a.hs.Attest(ctxT(t), b.h.ID()); err != nil {
		t.Fatal(err)
	}
	a.hs.ForgetKind("tdx")
	if _, ok := a.hs.Verified(b.h.ID()); !ok {
		t.Fatal("a dev verdict dropped by ForgetKind(tdx)")
	}
	a.hs.ForgetKind(dev.Kind)
	if _, ok := a.hs.Verified(b.h.ID()); ok {
		t.Fatal("a dev verdict survived ForgetKind(dev)")
	}
}

func TestEvidenceRenewal(t *testing.T) {
	const validity = 3 * time.Hour // renewed once an hour or less is left
	clock := clocktest.New(t0)
	a := newNode(t, clock, withValidity(validity))
	steps := []struct {
		advance   time.Duration
		wantCalls int32
		wantExp   time.Time
	}{
		{0, 1, t0.Add(3 * time.Hour)},
		{time.Hour, 1, t0.Add(3 * time.Hour)},
		{time.Hour - time.Second, 1, t0.Add(3 * time.Hour)}, // 1h01s left
		{time.Second, 2, t0.Add(5 * time.Hour)},             // exactly a third left
		{time.Hour, 2, t0.Add(5 * time.Hour)},
		{time.Hour + time.Second, 3, t0.Add(7*time.Hour + time.Second)}, // 59m59s left
		{10 * time.Hour, 4, t0.Add(17*time.Hour + time.Second)},         // long expired
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		ev, err := a.hs.Evidence(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if n := a.issuer.calls.Load(); n != st.wantCalls {
			t.Fatalf("step %d (%v): %d Issue calls, want %d", i, clock.Now().Sub(t0), n, st.wantCalls)
		}
		if ev.Expiry != st.wantExp.Unix() {
			t.Fatalf("step %d: evidence expires %v, want %v", i, time.Unix(ev.Expiry, 0).UTC(), st.wantExp)
		}
	}
}

func TestEvidenceIssuedOncePerWindow(t *testing.T) {
	clock := clocktest.New(t0)
	hub := newNode(t, clock)

	// Concurrent first calls share one Issue.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := hub.hs.Evidence(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	// Handshakes with several peers, both ways, reuse it too.
	peers := []*node{newNode(t, clock), newNode(t, clock), newNode(t, clock)}
	for _, p := range peers {
		p2ptest.Connect(t, hub.h, p.h)
	}
	for _, p := range peers {
		wg.Go(func() {
			if _, err := hub.hs.Attest(ctxT(t), p.h.ID()); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := p.hs.Attest(ctxT(t), hub.h.ID()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := hub.issuer.calls.Load(); n != 1 {
		t.Fatalf("hub issued %d times for 3 peers, want 1", n)
	}
	for i, p := range peers {
		if n := p.issuer.calls.Load(); n != 1 {
			t.Errorf("peer %d issued %d times, want 1", i, n)
		}
	}
}
