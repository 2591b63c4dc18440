package tdx

import (
	"strings"

	"github.com/google/go-tdx-guest/pcs"
)

// IntelRootCRLURL is where Intel publishes the SGX Root CA's CRL: the CRL
// distribution point of its root certificate, which go-tdx-guest reads
// from the QE identity's issuer chain.
const IntelRootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

// fmspcLen is the length of an FMSPC in hex: six bytes.
const fmspcLen = 12

// IsCollateralURL reports whether url is one that collateral checks fetch,
// exactly as go-tdx-guest spells it: Intel PCS's TDX TCB info for an FMSPC
// (lowercase hex), its TDX QE identity, the PCK CRL of the platform or the
// processor CA, or the SGX Root CA's CRL. Nothing else is ever fetched,
// cached or relayed.
func IsCollateralURL(url string) bool {
	if fmspc, ok := strings.CutPrefix(url, pcs.TcbInfoURL("")); ok {
		return isLowerHex(fmspc, fmspcLen)
	}
	switch url {
	case pcs.QeIdentityURL(), pcs.PckCrlURL("platform"), pcs.PckCrlURL("processor"), IntelRootCRLURL:
		return true
	}
	return false
}

// isLowerHex reports whether s is n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
