//go:build !cocoon_testroot

package tdx

import "crypto/x509"

// TestRootBuild says whether this binary was built with -tags
// cocoon_testroot, the only build in which TrustTestRoot exists.
const TestRootBuild = false

// trustedTestRoots is empty: this build has no TrustTestRoot, so Intel's
// root is the only one a Validator can trust.
func trustedTestRoots() []*x509.Certificate { return nil }
