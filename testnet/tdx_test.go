//go:build cocoon_testroot

package testnet_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// Any developer's machine is a client: on a network whose root contract
// refuses dev evidence, a client that presents no evidence gets answers
// from a TDX worker (synthetic quotes under a test root) through a proxy
// that presents none either. The client verifies the worker itself, with
// collateral its proxy relays while Intel is out of the client's reach,
// and the app's OpenAI API is unchanged.
//
// Run with -tags cocoon_testroot (make test does).
func TestSealedThroughTDXWorker(t *testing.T) {
	h, intel, m := tdxNet(t, testnet.WithChain("sim-small"))
	ctx := t.Context()
	fast := func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond) }

	proxy := h.AddNode(config.RoleProxy, []node.Option{node.WithIntelPCS(intel.PCS())}, noDev, fast,
		func(c *config.Config) { c.Attest.Issuer = "none" })
	worker := h.AddNode(config.RoleWorker, []node.Option{
		node.WithIssuer(intel.Issuer(tdxtest.Spec{Measurement: m})), node.WithIntelPCS(intel.PCS()),
	}, noDev, fast, func(c *config.Config) { c.Attest.Issuer = "tdx" })
	client := h.AddNode(config.RoleClient, []node.Option{node.WithIntelPCS(tdxtest.Unreachable{})}, noDev)

	c := sdk(client)
	resp, err := c.Chat.Completions.New(ctx, chatParams("sim-small", "sealed to a TD", 4))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content == "" {
		t.Fatal("an empty answer")
	}
	var ext struct {
		Cocoon struct {
			Tier   string `json:"tier"`
			Worker string `json:"worker"`
		} `json:"cocoon"`
	}
	if err := json.Unmarshal([]byte(resp.RawJSON()), &ext); err != nil {
		t.Fatal(err)
	}
	if ext.Cocoon.Tier != "tee" || ext.Cocoon.Worker != worker.ID().String() {
		t.Fatalf("served by %s at tier %q, want the TDX worker %s at tee", ext.Cocoon.Worker, ext.Cocoon.Tier, worker.ID())
	}
	if _, ok := proxy.Verified(client.ID()); ok {
		t.Error("the proxy holds a verdict on a client that presents no evidence")
	}
	if _, ok := worker.Verified(proxy.ID()); ok {
		t.Error("the worker holds a verdict on a proxy that presents no evidence")
	}
	if v, ok := proxy.Verified(worker.ID()); !ok || v.Tier != attest.TierTEE {
		t.Errorf("the proxy's verdict on the worker: %+v, %v; want tee", v, ok)
	}
}
