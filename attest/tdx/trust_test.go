package tdx_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
)

// testRootTag is the build tag under which tdx.TrustTestRoot exists.
const testRootTag = "cocoon_testroot"

// newTDXWorker is a fake Intel, evidence its synthetic TD (measure(1))
// issued for pub through tdxtest's issuer, and a policy allowing it.
func newTDXWorker(t *testing.T, pub crypto.PubKey) (*tdxtest.Intel, *attest.Evidence, tdx.Policy) {
	t.Helper()
	intel := tdxtest.New(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	ev, err := intel.Issuer(tdxtest.Spec{Measurement: measure(1)}).Issue(context.Background(), pub, now.Add(time.Hour), sealKey)
	if err != nil {
		t.Fatal(err)
	}
	return intel, ev, tdx.Policy{Measurements: []tdx.Measurement{measure(1)}}
}

// TestNewValidatorRefusesTestRoot: whatever the build, NewValidator refuses
// a quote under a test root nobody trusted, with collateral off or on
// (its PCS answering), and so does a validator built while another test
// root was trusted.
func TestNewValidatorRefusesTestRoot(t *testing.T) {
	pub := key(t, 1)
	intel, ev, pol := newTDXWorker(t, pub)
	for _, cfg := range []tdx.Config{
		{Policy: fixedPolicy(pol), Collateral: tdx.CollateralOff},
		{Policy: fixedPolicy(pol), Collateral: tdx.CollateralOn, CacheDir: t.TempDir(), Getter: intel.PCS()},
	} {
		v, err := tdx.NewValidator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Validate(context.Background(), ev, pub, now); !errors.Is(err, tdx.ErrNotGenuine) {
			t.Fatalf("collateral %s: %v, want ErrNotGenuine", cfg.Collateral, err)
		}
	}
}

// TestTrustTestRootOnlyWithTag builds a package that calls
// tdx.TrustTestRoot: without -tags cocoon_testroot it does not compile, so
// no production binary can trust a root but Intel's; with it, it does.
func TestTrustTestRootOnlyWithTag(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "probe.go")
	if err := os.WriteFile(src, []byte("package probe\n\nimport \"github.com/cocoon-mesh/cocoon/attest/tdx\"\n\nvar _ = tdx.TrustTestRoot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The probe package exists only in the overlay, below this package.
	at, err := filepath.Abs(filepath.Join("probe", "probe.go"))
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlay, []byte(`{"Replace":{`+quoteJSON(at)+`:`+quoteJSON(src)+`}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	build := func(tags string) (string, error) {
		cmd := exec.Command(goCmd, "build", "-tags="+tags, "-overlay="+overlay, "./probe")
		cmd.Env = append(os.Environ(), "GOFLAGS=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := build(""); err == nil || !strings.Contains(out, "undefined: tdx.TrustTestRoot") {
		t.Fatalf("without the tag: %v\n%s\nwant a build failure for undefined: tdx.TrustTestRoot", err, out)
	}
	if out, err := build(testRootTag); err != nil {
		t.Fatalf("with -tags %s: %v\n%s", testRootTag, err, out)
	}
}

// quoteJSON quotes s as a JSON string.
func quoteJSON(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
