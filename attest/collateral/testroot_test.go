//go:build cocoon_testroot

package collateral_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// TestRelayVerifiesTDXWorker is issue 14's collateral test: a client with
// an empty cache, Intel unreachable, verifies a TDX worker's evidence
// (synthetic, under a test root) with collateral on, through collateral
// its proxy relays; without the relay it cannot. Needs -tags
// cocoon_testroot.
func TestRelayVerifiesTDXWorker(t *testing.T) {
	ctx := ctxT(t)
	now := time.Now()
	intel := tdxtest.New(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	intel.Trust(t)
	m := tdx.Measurement{MRTD: [48]byte{1}, RTMR: [4][48]byte{{2}, {3}, {4}, {5}}}
	policy := func() tdx.Policy { return tdx.Policy{Measurements: []tdx.Measurement{m}} }
	workerKey, _ := p2ptest.NewKey(t)
	pub := workerKey.GetPublic()
	ev, err := intel.Issuer(tdxtest.Spec{Measurement: m}).Issue(ctx, pub, now.Add(time.Hour), []byte("sealing key"))
	if err != nil {
		t.Fatal(err)
	}

	// The proxy verified the worker against Intel (the fake's PCS).
	pv, err := tdx.NewValidator(tdx.Config{Policy: policy, Collateral: tdx.CollateralOn, CacheDir: t.TempDir(), Getter: intel.PCS()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pv.Validate(ctx, ev, pub, now); err != nil {
		t.Fatalf("proxy: %v", err)
	}
	proxy := serve(t, pv)
	fetched := intel.PCS().Calls()

	validate := func(v *tdx.Validator) (attest.Verdict, error) { return v.Validate(ctx, ev, pub, now) }
	alone, _ := newClientWith(t, policy, tdxtest.Unreachable{})
	if _, err := validate(alone); !errors.Is(err, tdx.ErrCollateralUnavailable) {
		t.Fatalf("no Intel, no relay: %v, want ErrCollateralUnavailable", err)
	}
	client, _ := newClientWith(t, policy, tdxtest.Unreachable{}, proxy)
	v, err := validate(client)
	if err != nil || v.Tier != attest.TierTEE || !bytes.Equal(v.SealKey, ev.SealKey) {
		t.Fatalf("through the relay: %+v, %v; want tee with the worker's sealing key", v, err)
	}
	if intel.PCS().Calls() != fetched {
		t.Fatal("the relay fetched from Intel")
	}

	// A quote under another test root, trusted too, is refused: the
	// relayed collateral is signed under the first.
	other := tdxtest.New(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	other.Trust(t)
	ev2, err := other.Issuer(tdxtest.Spec{Measurement: m}).Issue(ctx, pub, now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	client2, _ := newClientWith(t, policy, tdxtest.Unreachable{}, proxy)
	if _, err := client2.Validate(ctx, ev2, pub, now); !errors.Is(err, tdx.ErrCollateral) {
		t.Fatalf("collateral of another root: %v, want ErrCollateral", err)
	}
}
