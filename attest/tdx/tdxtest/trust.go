//go:build cocoon_testroot

package tdxtest

import (
	"testing"

	"github.com/cocoon-mesh/cocoon/attest/tdx"
)

// Trust makes every tdx.Validator that tdx.NewValidator returns until tb
// ends trust f's root beside Intel's (tdx.TrustTestRoot). It needs a test
// binary built with -tags cocoon_testroot, and fails tb without it.
func (f *Intel) Trust(tb testing.TB) {
	tb.Helper()
	tb.Cleanup(tdx.TrustTestRoot(f.root))
}
