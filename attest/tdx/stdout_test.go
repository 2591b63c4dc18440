package tdx_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-tdx-guest/verify"
)

// go-tdx-guest logs through github.com/google/logger, set up at init to
// write to os.Stdout. Redirecting os.Stdout afterwards does not move it, so
// these tests look at a child process's real stdout.

const childEnv = "TDX_STDOUT_CHILD"

// TestStdoutChild is the child: it verifies the real quote one way and
// exits; the parent reads what it printed.
func TestStdoutChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("run by TestVerifyPrintsNothing")
	}
	var err error
	switch mode {
	case "ours":
		_, err = productionValidator(t).VerifyQuote(context.Background(), realQuote, realNow)
	case "library-default":
		err = verify.RawTdxQuote(realQuote, &verify.Options{Now: realNow})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyPrintsNothing(t *testing.T) {
	stdout := func(mode string) string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStdoutChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+mode)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v: %s", mode, err, out)
		}
		// What the test framework prints is not ours.
		return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(out)), "PASS"))
	}
	// The claim this guards against: without trusted roots go-tdx-guest
	// writes a warning to stdout.
	if got := stdout("library-default"); !strings.Contains(got, "Using embedded Intel certificate") {
		t.Fatalf("go-tdx-guest without roots printed %q; has it stopped logging to stdout?", got)
	}
	if got := stdout("ours"); got != "" {
		t.Fatalf("verification printed %q to stdout", got)
	}
}
