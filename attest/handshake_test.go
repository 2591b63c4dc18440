package attest_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/attesttest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// fakeIssuer issues dev evidence and counts the calls, or fails with err.
// With dropSealKey it issues v1 evidence whatever the sealing key.
// With failing set it fails with errIssuerDown, as a quote provider that
// stopped answering does.
type fakeIssuer struct {
	calls       atomic.Int32
	err         error
	failing     atomic.Bool
	dropSealKey bool
}

var errIssuerDown = errors.New("fake issuer: quote provider down")

func (f *fakeIssuer) Issue(ctx context.Context, pub crypto.PubKey, expiry time.Time, sealKey []byte) (*attest.Evidence, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	if f.failing.Load() {
		return nil, errIssuerDown
	}
	if f.dropSealKey {
		sealKey = nil
	}
	return dev.Issuer{}.Issue(ctx, pub, expiry, sealKey)
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

// noLimits admits every handshake: for a fuzzer or a benchmark that is one
// peer sending thousands.
var noLimits = attest.Limits{PeerRate: 1e9, PeerBurst: 1 << 30, IPRate: 1e9, IPBurst: 1 << 30}

type node struct {
	h         host.Host
	hs        *attest.Handshaker
	issuer    *fakeIssuer
	validator *fakeValidator
	sealKeys  *attesttest.SealKeys // nil: the node seals nothing
}

type nodeOpt func(*node, *attest.Config)

// withSealKeys gives the node a fake source of sealing keys.
func withSealKeys() nodeOpt {
	return func(n *node, _ *attest.Config) { n.sealKeys = attesttest.NewSealKeys() }
}

func withValidatorErr(err error) nodeOpt {
	return func(n *node, _ *attest.Config) { n.validator.err = err }
}

func withIssuerErr(err error) nodeOpt {
	return func(n *node, _ *attest.Config) { n.issuer.err = err }
}

// withoutEvidence makes the node present none, as a client does.
func withoutEvidence() nodeOpt {
	return func(n *node, _ *attest.Config) { n.issuer = nil }
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
	var sealKeys attest.SealKeys // a nil interface when the node seals nothing
	if n.sealKeys != nil {
		sealKeys = n.sealKeys
	}
	var issuer attest.Issuer // a nil interface when the node presents no evidence
	if n.issuer != nil {
		issuer = n.issuer
	}
	n.hs = attest.NewHandshaker(h, issuer, sealKeys, n.validator, cfg, logtest.Discard)
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
	if got, ok := a.hs.Verified(b.h.ID()); !ok || !reflect.DeepEqual(got, v) {
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

// A node without evidence (a client, a proxy without TEE) takes part in
// the handshake: it verifies a peer that presents evidence, and gets no
// verdict itself, whichever side starts; two such nodes verify nothing.
func TestHandshakeWithoutEvidence(t *testing.T) {
	clock := clocktest.New(t0)
	client, worker := newNode(t, clock, withoutEvidence()), newNode(t, clock)
	p2ptest.Connect(t, client.h, worker.h)

	v, err := client.hs.Attest(ctxT(t), worker.h.ID())
	if err != nil || v.Tier != attest.TierDev {
		t.Fatalf("the client's verdict on the worker: %+v, %v", v, err)
	}
	if _, err := worker.hs.Attest(ctxT(t), client.h.ID()); !errors.Is(err, attest.ErrNoEvidence) {
		t.Fatalf("the worker attesting the client: %v, want ErrNoEvidence", err)
	}
	if _, ok := worker.hs.Verified(client.h.ID()); ok {
		t.Fatal("the worker holds a verdict on a peer that presented no evidence")
	}
	if ev, err := client.hs.Evidence(ctxT(t)); ev != nil || err != nil {
		t.Fatalf("the client's own evidence: %v, %v; want none", ev, err)
	}

	other := newNode(t, clock, withoutEvidence())
	p2ptest.Connect(t, client.h, other.h)
	if _, err := client.hs.Attest(ctxT(t), other.h.ID()); !errors.Is(err, attest.ErrNoEvidence) {
		t.Fatalf("two nodes without evidence: %v, want ErrNoEvidence", err)
	}
	// The client checked the worker's evidence once, as initiator: when
	// the worker attested it over the connection the client dialed, the
	// worker asked it to go first and, shown nothing, showed nothing back.
	// Nothing else was presented to check.
	if n, m := client.validator.calls.Load(), other.validator.calls.Load(); n != 1 || m != 0 {
		t.Fatalf("%d and %d validations, want 1 (the worker's evidence, by the client) and 0", n, m)
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
			if !reflect.DeepEqual(v, attest.Verdict{}) {
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

// TestEvidenceRenewal: the renewal loop (Renew, as Run calls it) renews
// own evidence once a third of its validity or less is left.
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
		if err := a.hs.Renew(ctxT(t)); err != nil {
			t.Fatal(err)
		}
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

// TestHandshakeSealKey: a worker's evidence binds a sealing key from its
// source, and the peer's verdict carries exactly that key; a proxy's
// evidence binds none (v1) and still verifies.
func TestHandshakeSealKey(t *testing.T) {
	clock := clocktest.New(t0)
	worker, proxy := newNode(t, clock, withSealKeys()), newNode(t, clock)
	p2ptest.Connect(t, proxy.h, worker.h)

	v, err := proxy.hs.Attest(ctxT(t), worker.h.ID())
	if err != nil {
		t.Fatal(err)
	}
	made := worker.sealKeys.Made()
	if len(made) != 1 {
		t.Fatalf("%d sealing keys made, want 1", len(made))
	}
	if !bytes.Equal(v.SealKey, made[0].Pub) || len(v.SealKey) == 0 {
		t.Fatalf("verdict's sealing key %x, want the source's %x", v.SealKey, made[0].Pub)
	}
	if !made[0].Expiry.Equal(v.Expiry) {
		t.Fatalf("sealing key lives until %v, the evidence until %v", made[0].Expiry, v.Expiry)
	}
	ev, err := worker.hs.Evidence(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev.SealKey, made[0].Pub) {
		t.Fatalf("own evidence carries sealing key %x, want %x", ev.SealKey, made[0].Pub)
	}

	p2ptest.Eventually(t, "the worker's verdict", func() bool {
		_, ok := worker.hs.Verified(proxy.h.ID())
		return ok
	})
	if pv, _ := worker.hs.Verified(proxy.h.ID()); pv.Tier != attest.TierDev || len(pv.SealKey) != 0 {
		t.Fatalf("the proxy's verdict %+v, want dev with no sealing key", pv)
	}
}

// TestSealKeyRotation: each evidence the handshaker issues (renewed by
// Renew, as its loop does) binds a new key
// from its source, made to live exactly as long as the evidence.
func TestSealKeyRotation(t *testing.T) {
	const validity = 3 * time.Hour // renewed once an hour or less is left
	clock := clocktest.New(t0)
	a := newNode(t, clock, withSealKeys(), withValidity(validity))
	var seen [][]byte
	for i, advance := range []time.Duration{0, time.Hour, time.Hour, time.Hour, 10 * time.Hour, 2 * time.Hour} {
		clock.Advance(advance)
		if err := a.hs.Renew(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		ev, err := a.hs.Evidence(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (dev.Validator{}).Validate(ctxT(t), ev, a.h.Peerstore().PubKey(a.h.ID()), clock.Now()); err != nil {
			t.Fatalf("step %d: own evidence: %v", i, err)
		}
		made := a.sealKeys.Made()
		if len(made) != int(a.issuer.calls.Load()) {
			t.Fatalf("step %d: %d sealing keys for %d issues, want one each", i, len(made), a.issuer.calls.Load())
		}
		last := made[len(made)-1]
		if !bytes.Equal(ev.SealKey, last.Pub) || last.Expiry.Unix() != ev.Expiry {
			t.Fatalf("step %d: evidence binds %x until %d, the newest key is %x until %v", i, ev.SealKey, ev.Expiry, last.Pub, last.Expiry)
		}
		if len(seen) == 0 || !bytes.Equal(seen[len(seen)-1], ev.SealKey) {
			for _, k := range seen {
				if bytes.Equal(k, ev.SealKey) {
					t.Fatalf("step %d: sealing key %x came back", i, k)
				}
			}
			seen = append(seen, ev.SealKey)
		}
	}
	// Issued at 0h, 2h (a third left), 13h (expired) and 15h (a third left).
	if len(seen) != 4 || a.issuer.calls.Load() != 4 {
		t.Fatalf("%d distinct sealing keys over %d issues, want 4 and 4", len(seen), a.issuer.calls.Load())
	}
}

func TestSealKeyFailures(t *testing.T) {
	errKeys := errors.New("no entropy")
	tests := []struct {
		name  string
		setup func(n *node)
		want  string
	}{
		{"source fails", func(n *node) { n.sealKeys.Fail(errKeys) }, "making a sealing key: no entropy"},
		{"issuer drops the key", func(n *node) { n.issuer.dropSealKey = true }, "did not bind the sealing key"},
		{"issuer fails", func(n *node) { n.issuer.err = errors.New("quote provider busy") }, "quote provider busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, clocktest.New(t0), withSealKeys())
			tt.setup(n)
			ev, err := n.hs.Evidence(ctxT(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Evidence = %+v, %v; want an error saying %q", ev, err, tt.want)
			}
			// A key made for evidence that was not issued is given back,
			// so failed renewals cannot push the live key out.
			for i, k := range n.sealKeys.Made() {
				if !k.Discarded {
					t.Errorf("key %d, made for evidence that failed, was not discarded", i)
				}
			}
		})
	}
}

// badSealKeys returns the same public key, whatever it is, every time.
type badSealKeys []byte

func (k badSealKeys) Next(time.Time) ([]byte, error) { return k, nil }

func (badSealKeys) Discard([]byte) {}

func TestSealKeySize(t *testing.T) {
	for _, tt := range []struct {
		name string
		key  []byte
		ok   bool
	}{
		{"empty", []byte{}, false},
		{"one byte", []byte{1}, true},
		{"the maximum", make([]byte, attest.MaxSealKey), true},
		{"too long", make([]byte, attest.MaxSealKey+1), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := p2ptest.NewHost(t)
			hs := attest.NewHandshaker(h, dev.Issuer{}, badSealKeys(tt.key), dev.Validator{}, attest.Config{Network: "local", Now: clocktest.New(t0).Now}, logtest.Discard)
			ev, err := hs.Evidence(ctxT(t))
			if tt.ok != (err == nil) {
				t.Fatalf("Evidence = %+v, %v; want ok %v", ev, err, tt.ok)
			}
			if err != nil && !errors.Is(err, attest.ErrFormat) {
				t.Fatalf("error %v, want ErrFormat", err)
			}
		})
	}
}

// TestPeerEvidence: the handshaker keeps the evidence each verified peer
// presented, exactly as presented, for as long as its verdict: what a proxy
// relays to clients.
func TestPeerEvidence(t *testing.T) {
	clock := clocktest.New(t0)
	worker, proxy := newNode(t, clock, withSealKeys()), newNode(t, clock)
	p2ptest.Connect(t, proxy.h, worker.h)
	if _, ok := proxy.hs.PeerEvidence(worker.h.ID()); ok {
		t.Fatal("evidence of a peer never verified")
	}
	if _, err := proxy.hs.Attest(ctxT(t), worker.h.ID()); err != nil {
		t.Fatal(err)
	}
	own, err := worker.hs.Evidence(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := proxy.hs.PeerEvidence(worker.h.ID())
	if !ok || !reflect.DeepEqual(got, own) {
		t.Fatalf("PeerEvidence = %+v, %v; want the worker's own %+v", got, ok, own)
	}
	pub, err := worker.h.ID().ExtractPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := (dev.Validator{}).Validate(ctxT(t), got, pub, clock.Now()); err != nil || !bytes.Equal(v.SealKey, worker.sealKeys.Last()) {
		t.Fatalf("the relayed evidence does not verify for the worker: %+v, %v", v, err)
	}

	t.Run("dropped with the verdict", func(t *testing.T) {
		proxy.hs.Forget(worker.h.ID())
		if _, ok := proxy.hs.PeerEvidence(worker.h.ID()); ok {
			t.Fatal("evidence survived Forget")
		}
		if _, err := proxy.hs.Attest(ctxT(t), worker.h.ID()); err != nil {
			t.Fatal(err)
		}
		proxy.hs.ForgetKind(dev.Kind)
		if _, ok := proxy.hs.PeerEvidence(worker.h.ID()); ok {
			t.Fatal("evidence survived ForgetKind")
		}
	})
	t.Run("not after the verdict's expiry", func(t *testing.T) {
		if _, err := proxy.hs.Attest(ctxT(t), worker.h.ID()); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
		if _, ok := proxy.hs.PeerEvidence(worker.h.ID()); ok {
			t.Fatal("evidence relayed after its verdict expired")
		}
	})
	t.Run("replaced by the next exchange", func(t *testing.T) {
		// The worker's evidence was renewed with a new sealing key; the
		// proxy keeps only the newest.
		if _, err := proxy.hs.Attest(ctxT(t), worker.h.ID()); err != nil {
			t.Fatal(err)
		}
		got, ok := proxy.hs.PeerEvidence(worker.h.ID())
		if !ok || !bytes.Equal(got.SealKey, worker.sealKeys.Last()) || len(worker.sealKeys.Made()) < 2 {
			t.Fatalf("PeerEvidence after renewal carries %x, want the newest key %x", got.SealKey, worker.sealKeys.Last())
		}
	})
}

// TestRenewalFailure: one failed renewal does not take a node out while
// its evidence is valid. Handshakes both ways succeed on the current
// evidence and never call the issuer; retries back off exponentially on
// the injected clock; once the evidence expires the node has none and
// says why (ErrRenewal), without calling the issuer again inside the
// backoff; Renewal reports the failure until a renewal succeeds.
func TestRenewalFailure(t *testing.T) {
	clock := clocktest.New(t0) // validity 1h: renewal due at 40m
	worker := newNode(t, clock)
	own, err := worker.hs.Evidence(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	worker.issuer.failing.Store(true)
	clock.Advance(45 * time.Minute)
	if err := worker.hs.Renew(ctxT(t)); !errors.Is(err, errIssuerDown) {
		t.Fatalf("Renew with a failing issuer: %v, want %v", err, errIssuerDown)
	}
	r := worker.hs.Renewal()
	if r.Failures != 1 || !strings.Contains(r.LastError, errIssuerDown.Error()) || !r.RetryAt.Equal(clock.Now().Add(time.Second)) ||
		!r.Expiry.Equal(time.Unix(own.Expiry, 0)) {
		t.Fatalf("Renewal() = %+v, want 1 failure saying %q, a retry in 1s, expiry %v", r, errIssuerDown, time.Unix(own.Expiry, 0))
	}
	calls := worker.issuer.calls.Load()

	for i := range 3 {
		p := newNode(t, clock)
		p2ptest.Connect(t, p.h, worker.h)
		v, err := p.hs.Attest(ctxT(t), worker.h.ID()) // the worker answers
		if err != nil {
			t.Fatalf("peer %d: handshake to a node whose renewal fails: %v", i, err)
		}
		if v.Expiry.Unix() != own.Expiry {
			t.Fatalf("peer %d: verdict until %v, want the current evidence's %v", i, v.Expiry, time.Unix(own.Expiry, 0))
		}
		if _, err := worker.hs.Attest(ctxT(t), p.h.ID()); err != nil { // the worker asks
			t.Fatalf("peer %d: handshake from a node whose renewal fails: %v", i, err)
		}
	}
	if got := worker.issuer.calls.Load(); got != calls {
		t.Fatalf("6 handshakes called the issuer %d times, want none", got-calls)
	}

	// Backoff: nothing before RetryAt, then 1s, 2s, 4s.
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if err := worker.hs.Renew(ctxT(t)); err != nil {
			t.Fatalf("Renew inside the backoff: %v, want nil (nothing to do yet)", err)
		}
		if got := worker.issuer.calls.Load(); got != calls {
			t.Fatalf("attempt %d: the issuer was called inside the backoff", i)
		}
		clock.Advance(wait)
		if err := worker.hs.Renew(ctxT(t)); !errors.Is(err, errIssuerDown) {
			t.Fatalf("attempt %d after %v: %v, want %v", i, wait, err, errIssuerDown)
		}
		calls++
		if r := worker.hs.Renewal(); r.Failures != i+2 || !r.RetryAt.Equal(clock.Now().Add(2*wait)) {
			t.Fatalf("attempt %d: Renewal() = %+v, want %d failures, a retry in %v", i, r, i+2, 2*wait)
		}
	}

	// Expired: no evidence, and no issuer call inside the backoff.
	clock.Set(time.Unix(own.Expiry, 0))
	if _, err := worker.hs.Evidence(ctxT(t)); !errors.Is(err, errIssuerDown) {
		t.Fatalf("Evidence after expiry: %v, want the issuer's error", err)
	}
	calls++
	for range 3 {
		if _, err := worker.hs.Evidence(ctxT(t)); !errors.Is(err, attest.ErrRenewal) {
			t.Fatalf("Evidence after expiry, inside the backoff: %v, want ErrRenewal", err)
		}
	}
	p := newNode(t, clock)
	p2ptest.Connect(t, p.h, worker.h)
	if _, err := p.hs.Attest(ctxT(t), worker.h.ID()); err == nil {
		t.Fatal("a peer verified a node whose evidence expired")
	}
	if got := worker.issuer.calls.Load(); got != calls {
		t.Fatalf("calls inside the backoff reached the issuer %d times, want none", got-calls)
	}

	// The issuer comes back: the next attempt after the backoff succeeds.
	worker.issuer.failing.Store(false)
	clock.Advance(time.Minute)
	if err := worker.hs.Renew(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if r := worker.hs.Renewal(); r.Failures != 0 || r.LastError != "" || !r.Expiry.Equal(clock.Now().Add(time.Hour)) {
		t.Fatalf("Renewal() after recovery = %+v, want no failures and a new expiry", r)
	}
	if _, err := p.hs.Attest(ctxT(t), worker.h.ID()); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// policyValidator is dev.Validator under a policy a test changes: while
// refused is set, it refuses evidence, as a validator whose root contract
// removed the peer's measurement does.
type policyValidator struct{ refused atomic.Bool }

func (v *policyValidator) Validate(ctx context.Context, ev *attest.Evidence, pub crypto.PubKey, now time.Time) (attest.Verdict, error) {
	if v.refused.Load() {
		return attest.Verdict{}, errRejected
	}
	return dev.Validator{}.Validate(ctx, ev, pub, now)
}

// TestRevalidate: when the policy changes, Revalidate checks every cached
// verdict again on the evidence it was reached on: those no longer allowed
// are dropped (with their evidence) and returned, at once rather than at
// the expiry the peer chose; with the policy unchanged, none is.
func TestRevalidate(t *testing.T) {
	clock := clocktest.New(t0)
	proxy := newNode(t, clock)
	var policy policyValidator
	proxy.hs = attest.NewHandshaker(proxy.h, proxy.issuer, nil, &policy, attest.Config{Network: "local", Validity: time.Hour, Now: clock.Now}, logtest.Discard)
	a, b := newNode(t, clock), newNode(t, clock)
	for _, w := range []*node{a, b} {
		p2ptest.Connect(t, proxy.h, w.h)
		if _, err := proxy.hs.Attest(ctxT(t), w.h.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if dropped := proxy.hs.Revalidate(ctxT(t)); len(dropped) != 0 {
		t.Fatalf("Revalidate under an unchanged policy dropped %v", dropped)
	}
	for _, w := range []*node{a, b} {
		if _, ok := proxy.hs.Verified(w.h.ID()); !ok {
			t.Fatal("a verdict lost under an unchanged policy")
		}
	}
	policy.refused.Store(true)
	dropped := proxy.hs.Revalidate(ctxT(t))
	if len(dropped) != 2 || !slices.Contains(dropped, a.h.ID()) || !slices.Contains(dropped, b.h.ID()) {
		t.Fatalf("Revalidate dropped %v, want both peers", dropped)
	}
	for _, w := range []*node{a, b} {
		if _, ok := proxy.hs.Verified(w.h.ID()); ok {
			t.Fatal("a verdict survived the policy that refuses it")
		}
		if _, ok := proxy.hs.PeerEvidence(w.h.ID()); ok {
			t.Fatal("evidence relayed after its verdict was dropped")
		}
	}
}
