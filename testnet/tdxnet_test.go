//go:build cocoon_testroot

package testnet_test

import (
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// tdxNet is a network on the sandbox chain whose root contract allows one
// TDX image, m, and refuses dev evidence, with a test Intel root trusted
// for this test: a worker issuing intel's quotes for m is tier tee.
func tdxNet(t *testing.T, opt testnet.Option) (h *testnet.Harness, intel *tdxtest.Intel, m tdx.Measurement) {
	t.Helper()
	now := time.Now()
	intel = tdxtest.New(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	intel.Trust(t)
	m.MRTD[0], m.RTMR[3][0] = 0x7d, 0x1f
	h = testnet.New(t, opt)
	ctx := t.Context()
	if err := h.Net.Chain().SetMeasurements(ctx, []registry.Measurement{{MRTD: m.MRTD, RTMR: m.RTMR}}); err != nil {
		t.Fatal(err)
	}
	if err := h.Net.Chain().SetDevAttestation(ctx, false); err != nil {
		t.Fatal(err)
	}
	return h, intel, m
}

// noDev: the node refuses dev evidence, as the contract asks.
func noDev(c *config.Config) { c.Attest.AllowDev = false }
