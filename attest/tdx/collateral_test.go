package tdx

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tdxtesting "github.com/google/go-tdx-guest/testing"
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
	v, err := NewValidator(Config{
		Policy:     fixedPolicy(Policy{}),
		Collateral: CollateralOn,
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
		if !errors.Is(err, ErrCollateral) || !strings.Contains(err.Error(), tcbMismatch) {
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
	v2, err := NewValidator(Config{Policy: fixedPolicy(Policy{}), Collateral: CollateralOn, CacheDir: t.TempDir(), Getter: pcs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.VerifyQuote(ctx, realQuote, realNow); !errors.Is(err, ErrCollateralUnavailable) {
		t.Fatalf("no cache, Intel down: %v, want ErrCollateralUnavailable", err)
	}
}

func TestCollateralExpires(t *testing.T) {
	// The sample TCB info's nextUpdate is 2023-07-18: after it, cached or
	// not, it no longer vouches for anything.
	v, err := NewValidator(Config{Policy: fixedPolicy(Policy{}), Collateral: CollateralOn, CacheDir: t.TempDir(), Getter: &fakePCS{up: true}})
	if err != nil {
		t.Fatal(err)
	}
	later := time.Date(2023, 8, 1, 0, 0, 0, 0, time.UTC)
	_, err = v.VerifyQuote(context.Background(), realQuote, later)
	if !errors.Is(err, ErrCollateral) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired collateral: %v, want ErrCollateral saying expired", err)
	}
}

func TestCollateralOffFetchesNothing(t *testing.T) {
	pcs := &fakePCS{up: true}
	v, err := NewValidator(Config{Policy: fixedPolicy(Policy{}), Collateral: CollateralOff, Getter: pcs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyQuote(context.Background(), realQuote, realNow); err != nil || pcs.calls != 0 {
		t.Fatalf("collateral off: %v after %d fetches, want success after none", err, pcs.calls)
	}
}
