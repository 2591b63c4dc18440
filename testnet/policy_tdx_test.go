//go:build cocoon_testroot

package testnet_test

import (
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
