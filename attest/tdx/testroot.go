//go:build cocoon_testroot

package tdx

import (
	"crypto/x509"
	"slices"
	"sync"
)

// TestRootBuild says whether this binary was built with -tags
// cocoon_testroot, the only build in which TrustTestRoot exists.
const TestRootBuild = true

// testRoots are the roots TrustTestRoot added.
var testRoots struct {
	mu    sync.Mutex // guards certs
	certs []*x509.Certificate
}

// TrustTestRoot makes every Validator that NewValidator returns from now
// on trust root beside Intel's, until untrust is called (Validators made
// meanwhile keep trusting it). It exists only in binaries built with -tags
// cocoon_testroot, for whole-network tests whose TDX quotes are synthetic
// (package tdxtest); without the tag no code can make a Validator trust
// any root but Intel's.
func TrustTestRoot(root *x509.Certificate) (untrust func()) {
	if root == nil {
		panic("tdx: TrustTestRoot(nil)")
	}
	testRoots.mu.Lock()
	defer testRoots.mu.Unlock()
	testRoots.certs = append(testRoots.certs, root)
	return func() {
		testRoots.mu.Lock()
		defer testRoots.mu.Unlock()
		if i := slices.Index(testRoots.certs, root); i >= 0 {
			testRoots.certs = slices.Delete(testRoots.certs, i, i+1)
		}
	}
}

// trustedTestRoots returns the roots TrustTestRoot added.
func trustedTestRoots() []*x509.Certificate {
	testRoots.mu.Lock()
	defer testRoots.mu.Unlock()
	return slices.Clone(testRoots.certs)
}
