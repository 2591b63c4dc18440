//go:build cocoon_testroot

package testnet_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestMeasurementRemovedDropsPeers: verdicts follow the root contract.
// When the owner removes a TDX image's measurement, the proxy drops its
// verdict on the worker running that image at its next refresh of the
// contract, not at the expiry the worker chose (an hour here), stops
// routing to it, and the client's requests are no longer served by it.
//
// Run with -tags cocoon_testroot (make test does).
func TestMeasurementRemovedDropsPeers(t *testing.T) {
	h, intel, m := tdxNet(t, testnet.WithChain("sim-small"))
	var other tdx.Measurement
	other.MRTD[0] = 0x42
	ctx := t.Context()
	chain := h.Net.Chain()
	proxy := h.AddNode(config.RoleProxy, []node.Option{node.WithIntelPCS(intel.PCS())}, noDev,
		func(c *config.Config) { c.Attest.Issuer = "none" })
	worker := h.AddNode(config.RoleWorker, []node.Option{
		node.WithIssuer(intel.Issuer(tdxtest.Spec{Measurement: m})), node.WithIntelPCS(intel.PCS()),
	}, noDev, func(c *config.Config) { c.Attest.Issuer = "tdx" })
	client := h.AddNode(config.RoleClient, []node.Option{node.WithIntelPCS(intel.PCS())}, noDev)
	answeredBy(t, client, worker.ID().String())
	if v, ok := proxy.Verified(worker.ID()); !ok || v.Tier != attest.TierTEE || time.Until(v.Expiry) < 30*time.Minute {
		t.Fatalf("the proxy's verdict on the worker: %s until %v, %v; want tee for about an hour", v.Tier, v.Expiry, ok)
	}

	// The owner replaces the measurement; nodes read it at their next
	// refresh (now, rather than at discovery.refresh_interval).
	if err := chain.SetMeasurements(ctx, []registry.Measurement{{MRTD: other.MRTD, RTMR: other.RTMR}}); err != nil {
		t.Fatal(err)
	}
	refresh := time.Now()
	if err := h.Net.RefreshRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("every node's refresh, verdicts re-checked included, took %v", time.Since(refresh).Round(time.Millisecond))
	if v, ok := proxy.Verified(worker.ID()); ok {
		t.Fatalf("after the refresh the proxy still holds a verdict on a worker whose measurement was removed: %s until %v", v.Tier, v.Expiry)
	}
	c := sdk(client)
	if resp, err := c.Chat.Completions.New(ctx, chatParams("sim-small", "still allowed?", 4)); err == nil {
		t.Fatalf("a worker whose measurement was removed answered: %s", resp.RawJSON())
	}
	proxy.Poke() // its check attests the worker again, under the new policy
	if v, ok := proxy.Verified(worker.ID()); ok {
		t.Fatalf("the proxy verified the worker again under the new policy: %s until %v", v.Tier, v.Expiry)
	}
}

// TestMinTCBRaisedDropsPeers: verdicts follow the root contract's minimum
// TCB. Two TDX workers run the allowed image, one on a TDX module whose
// TEE_TCB_SVN is below the minimum the owner then sets, one at it. At the
// next refresh of the contract the proxy drops its verdict on the
// outdated worker (not at the expiry it chose, an hour here), the client
// forgets the workers it verified and verifies them again, and every
// request is served by the up-to-date one, which keeps its verdict.
//
// Run with -tags cocoon_testroot (make test does).
func TestMinTCBRaisedDropsPeers(t *testing.T) {
	h, intel, m := tdxNet(t, testnet.WithChain("sim-small"))
	ctx := t.Context()
	chain := h.Net.Chain()
	minTCB := registry.TCB{TEETCBSVN: [16]byte{3, 0, 4}}
	outdatedSVN := [16]byte{3, 0, 3} // one component below: the TDX module's SEAM loader
	currentSVN := minTCB.TEETCBSVN   // exactly the minimum
	proxy := h.AddNode(config.RoleProxy, []node.Option{node.WithIntelPCS(intel.PCS())}, noDev,
		func(c *config.Config) { c.Attest.Issuer = "none" })
	worker := func(svn [16]byte) *node.Node {
		return h.AddNode(config.RoleWorker, []node.Option{
			node.WithIssuer(intel.Issuer(tdxtest.Spec{Measurement: m, TEETCBSVN: svn})), node.WithIntelPCS(intel.PCS()),
		}, noDev, func(c *config.Config) { c.Attest.Issuer = "tdx" })
	}
	outdated := worker(outdatedSVN)
	client := h.AddNode(config.RoleClient, []node.Option{node.WithIntelPCS(intel.PCS())}, noDev)
	answeredBy(t, client, outdated.ID().String())
	current := worker(currentSVN)
	answeredBy(t, client, current.ID().String())
	for _, w := range []*node.Node{outdated, current} {
		if v, ok := proxy.Verified(w.ID()); !ok || v.Tier != attest.TierTEE || time.Until(v.Expiry) < 30*time.Minute {
			t.Fatalf("the proxy's verdict on worker %s: %s until %v, %v; want tee for about an hour", w.ID(), v.Tier, v.Expiry, ok)
		}
	}

	// The owner raises the minimum TCB; nodes read it at their next
	// refresh (now, rather than at discovery.refresh_interval).
	if err := chain.SetMinTCB(ctx, minTCB); err != nil {
		t.Fatal(err)
	}
	refresh := time.Now()
	if err := h.Net.RefreshRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("every node's refresh, verdicts re-checked included, took %v", time.Since(refresh).Round(time.Millisecond))
	if v, ok := proxy.Verified(outdated.ID()); ok {
		t.Fatalf("after the refresh the proxy still holds a verdict on a worker below the minimum TCB: %s until %v", v.Tier, v.Expiry)
	}
	if v, ok := proxy.Verified(current.ID()); !ok || v.Tier != attest.TierTEE {
		t.Fatalf("the proxy dropped the worker at the minimum TCB: %s, %v", v.Tier, ok)
	}
	c := sdk(client)
	const asks = 8
	for i := range asks {
		resp, err := c.Chat.Completions.New(ctx, chatParams("sim-small", "which worker now", 4))
		if err != nil {
			t.Fatalf("request %d after the refresh: %v", i, err)
		}
		var ext struct {
			Cocoon struct {
				Worker string `json:"worker"`
			} `json:"cocoon"`
		}
		if err := json.Unmarshal([]byte(resp.RawJSON()), &ext); err != nil {
			t.Fatal(err)
		}
		if ext.Cocoon.Worker != current.ID().String() {
			t.Fatalf("request %d after the refresh served by %s, want the worker at the minimum TCB %s", i, ext.Cocoon.Worker, current.ID())
		}
	}
	t.Logf("%d of %d requests after the refresh served by the worker at the minimum TCB", asks, asks)
	proxy.Poke() // its check attests the workers again, under the new policy
	if v, ok := proxy.Verified(outdated.ID()); ok {
		t.Fatalf("the proxy verified the outdated worker again under the new policy: %s until %v", v.Tier, v.Expiry)
	}
	if _, ok := proxy.Verified(current.ID()); !ok {
		t.Fatal("the proxy lost its verdict on the worker at the minimum TCB after its check")
	}
}
