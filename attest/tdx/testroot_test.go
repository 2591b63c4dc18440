//go:build cocoon_testroot

package tdx_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
)

// TestTrustTestRoot: in a binary built with -tags cocoon_testroot,
// NewValidator accepts a fake Intel's quote, collateral checked against
// its PCS, while its root is trusted; validators made after the trust
// ends refuse it again.
func TestTrustTestRoot(t *testing.T) {
	if !tdx.TestRootBuild {
		t.Fatal("TestRootBuild is false under -tags cocoon_testroot")
	}
	ctx := context.Background()
	pub := key(t, 1)
	intel, ev, pol := newTDXWorker(t, pub)
	newValidator := func() *tdx.Validator {
		v, err := tdx.NewValidator(tdx.Config{Policy: fixedPolicy(pol), Collateral: tdx.CollateralOn, CacheDir: t.TempDir(), Getter: intel.PCS()})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	var trusting *tdx.Validator
	t.Run("trusted", func(t *testing.T) {
		intel.Trust(t) // until this subtest ends
		trusting = newValidator()
		v, err := trusting.Validate(ctx, ev, pub, now)
		if err != nil || v.Tier != attest.TierTEE {
			t.Fatalf("verdict %+v, %v; want tee", v, err)
		}
	})
	if _, err := newValidator().Validate(ctx, ev, pub, now); !errors.Is(err, tdx.ErrNotGenuine) {
		t.Fatalf("after the trust ended: %v, want ErrNotGenuine", err)
	}
	if _, err := trusting.Validate(ctx, ev, pub, now); err != nil {
		t.Fatalf("a validator made while the root was trusted: %v", err)
	}
	if _, err := trusting.Validate(ctx, ev, pub, now.Add(25*time.Hour)); err == nil {
		t.Fatal("accepted after the fake Intel's certificates expired")
	}
}
