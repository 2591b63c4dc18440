//go:build !cocoon_testroot

package tdx_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
)

// fatalRecorder is a testing.TB whose Fatal records its message instead
// of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Fatal(args ...any) { r.msg = fmt.Sprint(args...) }

// TestTrustNeedsTag: without -tags cocoon_testroot the build says so, and
// tdxtest's Trust fails the test that asks for it, naming the tag, rather
// than letting it run against Intel's root alone.
func TestTrustNeedsTag(t *testing.T) {
	if tdx.TestRootBuild {
		t.Fatal("TestRootBuild is true without -tags cocoon_testroot")
	}
	ft := &fatalRecorder{TB: t}
	tdxtest.New(t, now, now.Add(time.Hour)).Trust(ft)
	if !strings.Contains(ft.msg, "-tags cocoon_testroot") {
		t.Fatalf("Trust without the tag said %q, want it to name the tag", ft.msg)
	}
}
