package testnet_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/attest/attesttest"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestRenewalFailureKeepsServing: a worker whose issuer (a fake) fails at
// renewal keeps serving on its current evidence until it expires: a new
// proxy's handshake succeeds, requests are answered, and handshakes never
// call the issuer; its status and doctor say renewal is failing. Once the
// evidence expired (the worker's attestation clock moved past it) the
// worker stops advertising and the doctor fails.
func TestRenewalFailureKeepsServing(t *testing.T) {
	clock := clocktest.New(time.Now()) // the worker's attestation clock
	issuer := attesttest.NewIssuer()
	h := testnet.New(t)
	ctx := t.Context()
	worker, err := h.Net.AddNode(ctx, config.RoleWorker, nil, node.WithIssuer(issuer), node.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	first := h.AddProxy()
	client := h.AddClient()
	ask := func(when string) {
		t.Helper()
		c := sdk(client)
		resp, err := c.Chat.Completions.New(ctx, chatParams("sim-small", "still there?", 4))
		if err != nil || resp.Choices[0].Message.Content == "" {
			t.Fatalf("%s: %v", when, err)
		}
	}
	ask("before renewal")

	issuer.Fail(errors.New("fake issuer: quote provider down"))
	clock.Advance(45 * time.Minute) // attest.validity 1h: a quarter left, renewal due
	waitStatus(t, worker, func(s admin.Status) bool { return s.Evidence != nil && s.Evidence.Renewal == "failing" })
	calls := issuer.Calls()

	second := h.AddProxy() // attests the worker: a handshake the worker answers
	ask("while renewal fails")
	if got := issuer.Calls(); got != calls {
		t.Errorf("handshakes and offers called the issuer %d more times inside the backoff, want none", got-calls)
	}
	st := worker.Status(ctx)
	if e := st.Evidence; e == nil || !e.Valid || e.Failures < 1 || !strings.Contains(e.LastError, "quote provider down") {
		t.Fatalf("status while renewal fails: %+v, want valid evidence and the failure", st.Evidence)
	}
	if c := attestationCheck(t, worker); c.Result != admin.Warn || !strings.Contains(c.Detail, "renewal failing") || !strings.Contains(c.Detail, "quote provider down") {
		t.Fatalf("doctor while renewal fails: %+v, want a warning naming the failure", c)
	}

	t.Logf("renewal failing: a new proxy attested the worker and a request was answered; issuer calls %d (1 at start, 1 failed renewal)", issuer.Calls())
	clock.Advance(16 * time.Minute) // past the evidence's expiry
	expired := time.Now()
	waitStatus(t, worker, func(s admin.Status) bool { return s.Evidence != nil && !s.Evidence.Valid && s.Tier == "" })
	for _, p := range []*node.Node{first, second} {
		if err := waitFor(ctx, 30*time.Second, func() bool {
			return !slices.ContainsFunc(p.Offers(), func(o *offers.Offer) bool { return o.Peer == worker.ID().String() })
		}); err != nil {
			t.Fatalf("proxy %s still holds the worker's offer after its evidence expired: %v", p.ID(), err)
		}
	}
	t.Logf("after expiry: both proxies dropped the worker's offer within %v", time.Since(expired).Round(time.Millisecond))
	if c := attestationCheck(t, worker); c.Result != admin.Fail || !strings.Contains(c.Detail, "expired") {
		t.Fatalf("doctor after expiry: %+v, want a failure saying the evidence expired", c)
	}
}

// attestationCheck is nd's doctor's attestation check.
func attestationCheck(t *testing.T, nd *node.Node) admin.Check {
	t.Helper()
	for _, c := range nd.Doctor(t.Context()) {
		if c.Name == "attestation" {
			return c
		}
	}
	t.Fatal("the doctor has no attestation check")
	return admin.Check{}
}
