// Package tdx issues and checks Intel TDX evidence: a TDX quote whose
// REPORTDATA is the binding of the node's libp2p key and the evidence's
// expiry (see package attest).
//
// The Issuer gets quotes from a QuoteProvider: OpenHardware finds
// configfs-tsm or /dev/tdx_guest through go-tdx-guest; tests use a fake.
//
// The Validator checks a quote in two steps. Genuine: the quote is at most
// MaxQuoteSize and parses as a TDX v4 quote; the attestation key signed its
// header and TD report; the QE report binds that key and is signed by the
// PCK certificate; the PCK chain ends at Intel's SGX Root CA, pinned by
// IntelRootFingerprint, with every certificate valid at the given time;
// with CollateralOn, Intel's TCB info and QE identity say UpToDate and no
// certificate is revoked. Acceptable: the evidence binds the presenting
// peer's key and an expiry that is ahead but not too far, the quote's
// REPORTDATA is that binding, the TD is not a debug TD, MRTD and RTMR0-3
// are one entry of the policy's allow-list, and the TCB meets the policy's
// minimum. The verdict is attest.TierTEE until the expiry.
package tdx
