package tdx_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	tdxtesting "github.com/google/go-tdx-guest/testing"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
)

// fakePCS stands in for Intel PCS: go-tdx-guest's sample answers for the
// real quote while up, an error while down.
type fakePCS struct {
	up    bool
	calls int
}

func (f *fakePCS) Get(url string) (map[string][]string, []byte, error) {
	f.calls++
	if !f.up {
		return nil, nil, errors.New("dial tcp: network is unreachable")
	}
	return tdxtesting.TestGetter.Get(url)
}

// The sample collateral is Intel-signed and current at realNow, but its
// TCB levels are newer than the real quote's TCB, so a quote that reaches
// the TCB check fails it with this message (as in go-tdx-guest's own tests).
const tcbMismatch = "no matching TCB level found"

func TestCollateralCachedForOffline(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pcs := &fakePCS{up: true}
	clock := realNow
	v, err := tdx.NewValidator(tdx.Config{
		Policy:     fixedPolicy(tdx.Policy{}),
		Collateral: tdx.CollateralOn,
		CacheDir:   dir,
		Refresh:    time.Hour,
		Getter:     pcs,
		Now:        func() time.Time { return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	// collateralChecked asserts the quote got as far as comparing its TCB
	// with Intel's: collateral was had, its signatures and dates passed.
	collateralChecked := func(step string) {
		t.Helper()
		_, err := v.VerifyQuote(ctx, realQuote, realNow)
		if !errors.Is(err, tdx.ErrCollateral) || !strings.Contains(err.Error(), tcbMismatch) {
			t.Fatalf("%s: %v, want ErrCollateral at the TCB check", step, err)
		}
	}

	collateralChecked("online")
	fetched := pcs.calls
	if fetched != 4 { // TCB info, QE identity, PCK CRL, root CRL
		t.Fatalf("%d fetches, want 4", fetched)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) != fetched {
		t.Fatalf("cache holds %v (%v), want %d files", files, err, fetched)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v (%v), want 0600", f, fi.Mode(), err)
		}
	}

	collateralChecked("fresh cache")
	if pcs.calls != fetched {
		t.Fatalf("fresh cache: %d more fetches, want none", pcs.calls-fetched)
	}

	clock = clock.Add(2 * time.Hour) // the cache is stale: refetch
	collateralChecked("stale cache, Intel up")
	if pcs.calls != 2*fetched {
		t.Fatalf("stale cache: %d fetches, want %d", pcs.calls-fetched, fetched)
	}

	clock = clock.Add(2 * time.Hour)
	pcs.up = false
	collateralChecked("stale cache, Intel down")

	// Another node with an empty cache and no Intel cannot check.
	v2, err := tdx.NewValidator(tdx.Config{Policy: fixedPolicy(tdx.Policy{}), Collateral: tdx.CollateralOn, CacheDir: t.TempDir(), Getter: pcs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.VerifyQuote(ctx, realQuote, realNow); !errors.Is(err, tdx.ErrCollateralUnavailable) {
		t.Fatalf("no cache, Intel down: %v, want ErrCollateralUnavailable", err)
	}
}

func TestCollateralExpires(t *testing.T) {
	// The sample TCB info's nextUpdate is 2023-07-18: after it, cached or
	// not, it no longer vouches for anything.
	v, err := tdx.NewValidator(tdx.Config{Policy: fixedPolicy(tdx.Policy{}), Collateral: tdx.CollateralOn, CacheDir: t.TempDir(), Getter: &fakePCS{up: true}})
	if err != nil {
		t.Fatal(err)
	}
	later := time.Date(2023, 8, 1, 0, 0, 0, 0, time.UTC)
	_, err = v.VerifyQuote(context.Background(), realQuote, later)
	if !errors.Is(err, tdx.ErrCollateral) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired collateral: %v, want ErrCollateral saying expired", err)
	}
}

func TestCollateralOffFetchesNothing(t *testing.T) {
	pcs := &fakePCS{up: true}
	v, err := tdx.NewValidator(tdx.Config{Policy: fixedPolicy(tdx.Policy{}), Collateral: tdx.CollateralOff, Getter: pcs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyQuote(context.Background(), realQuote, realNow); err != nil || pcs.calls != 0 {
		t.Fatalf("collateral off: %v after %d fetches, want success after none", err, pcs.calls)
	}
}

// syntheticCollateral is a fake Intel, evidence of its TD for pub, and a
// validator trusting its root with collateral on, fetching through pcs.
func syntheticCollateral(t *testing.T, pcs tdx.Getter) (*tdxtest.Intel, *attest.Evidence, *tdx.Validator) {
	t.Helper()
	intel, ev, pol := newTDXWorker(t, key(t, 1))
	if pcs == nil {
		pcs = intel.PCS()
	}
	v, err := tdx.NewValidatorTrusting(tdx.Config{Policy: fixedPolicy(pol), Collateral: tdx.CollateralOn, CacheDir: t.TempDir(), Getter: pcs}, intel.Root())
	if err != nil {
		t.Fatal(err)
	}
	return intel, ev, v
}

// TestSyntheticCollateral: tdxtest's PCS serves collateral that passes
// go-tdx-guest's checks for tdxtest's quotes, signed under the fake root
// and no further.
func TestSyntheticCollateral(t *testing.T) {
	ctx := context.Background()
	pub := key(t, 1)
	intel, ev, v := syntheticCollateral(t, nil)
	if _, err := v.Validate(ctx, ev, pub, now); err != nil {
		t.Fatal(err)
	}
	if n := intel.PCS().Calls(); n != 4 { // TCB info, QE identity, PCK CRL, root CRL
		t.Fatalf("%d fetches, want 4", n)
	}
	if got := intel.PCS().URLs(); len(got) != 4 || !slices.Equal(got, slices.DeleteFunc(slices.Clone(got), func(u string) bool { return !tdx.IsCollateralURL(u) })) {
		t.Fatalf("PCS answers %q: want 4 collateral URLs", got)
	}
	if _, err := v.Validate(ctx, ev, pub, now.Add(25*time.Hour)); err == nil {
		t.Fatal("accepted once the fake Intel's collateral and certificates expired")
	}

	// Collateral from another fake Intel is signed under another root.
	other := tdxtest.New(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	_, ev2, v2 := syntheticCollateral(t, other.PCS())
	if _, err := v2.Validate(ctx, ev2, pub, now); !errors.Is(err, tdx.ErrCollateral) {
		t.Fatalf("collateral under another root: %v, want ErrCollateral", err)
	}

	// Intel unreachable and nothing cached.
	_, ev3, v3 := syntheticCollateral(t, tdxtest.Unreachable{})
	if _, err := v3.Validate(ctx, ev3, pub, now); !errors.Is(err, tdx.ErrCollateralUnavailable) || !errors.Is(err, tdxtest.ErrUnreachable) {
		t.Fatalf("Intel unreachable, empty cache: %v, want ErrCollateralUnavailable", err)
	}
}

// TestCached: Cached returns what the cache holds for collateral URLs, as
// Intel gave it, and nothing for any other URL, for a URL not fetched yet,
// or with collateral off; it never fetches.
func TestCached(t *testing.T) {
	intel, ev, v := syntheticCollateral(t, nil)
	for _, u := range intel.PCS().URLs() {
		if _, _, ok := v.Cached(u); ok {
			t.Fatalf("%s cached before any validation", u)
		}
	}
	if _, err := v.Validate(context.Background(), ev, key(t, 1), now); err != nil {
		t.Fatal(err)
	}
	calls := intel.PCS().Calls()
	for _, u := range intel.PCS().URLs() {
		h, b, ok := v.Cached(u)
		wantH, wantB, _ := intel.PCS().Get(u)
		if !ok || !bytes.Equal(b, wantB) || !reflect.DeepEqual(h, wantH) {
			t.Fatalf("Cached(%s) = %v, %d bytes, %v; want Intel's answer", u, h, len(b), ok)
		}
	}
	if intel.PCS().Calls() != calls+len(intel.PCS().URLs()) {
		t.Fatal("Cached fetched")
	}
	for _, u := range []string{"https://example.com/", "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=00606a000000", ""} {
		if _, _, ok := v.Cached(u); ok {
			t.Fatalf("Cached(%q) answered", u)
		}
	}
	if _, _, ok := productionValidator(t).Cached(tdx.IntelRootCRLURL); ok {
		t.Fatal("a validator with collateral off answered from a cache")
	}
}

func TestIsCollateralURL(t *testing.T) {
	accepted := slices.Sorted(maps.Keys(tdxtesting.TestGetter.Responses)) // what go-tdx-guest asks Intel for
	accepted = append(accepted, "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=processor&encoding=der")
	for _, u := range accepted {
		if !tdx.IsCollateralURL(u) {
			t.Errorf("refused %s", u)
		}
	}
	for _, u := range []string{
		"",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806F000000",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f00000",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f0000000",
		"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000&x=1",
		"https://api.trustedservices.intel.com/sgx/certification/v4/tcb?fmspc=50806f000000",
		"http://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity/",
		"https://api.trustedservices.intel.com.evil.example/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=other&encoding=der",
		"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform",
		"https://certificates.trustedservices.intel.com/IntelSGXRootCA.pem",
		"https://169.254.169.254/latest/meta-data/",
	} {
		if tdx.IsCollateralURL(u) {
			t.Errorf("accepted %q", u)
		}
	}
	// The root CRL's URL is the one in Intel's root certificate.
	root, err := tdx.PinnedRoot(tdx.IntelRootPEM, tdx.IntelRootFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(root.CRLDistributionPoints, []string{tdx.IntelRootCRLURL}) {
		t.Fatalf("Intel's root names its CRL at %q, not IntelRootCRLURL", root.CRLDistributionPoints)
	}
}
