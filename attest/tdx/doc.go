// Package tdx issues and checks Intel TDX evidence: a TDX quote whose
// REPORTDATA is the binding of the node's libp2p key, its sealing key (if
// any) and the evidence's expiry (see package attest), so the quote says
// "a TD with these measurements holds this peer key and this sealing key
// until then".
//
// # Issuing
//
// The Issuer gets a quote over the binding from a QuoteProvider and checks
// that it parses and carries the binding before presenting it. OpenHardware
// returns the machine's provider through go-tdx-guest: configfs-tsm first,
// then /dev/tdx_guest, or an error wrapping ErrNoTDX naming both. An empty
// quote is ErrEmptyQuote. Tests use a fake provider.
//
// # Validating
//
// Validate checks, in this order, the cheap checks first (the binding is a
// hash; the quote's verification costs about a millisecond):
//
//  1. Kind is "tdx" (attest.ErrKind).
//  2. Bound (attest.CheckBinding): the evidence's report data is the
//     binding of the presenting peer's key, the evidence's sealing key (v2;
//     v1 when it has none) and its expiry (attest.ErrBinding), the expiry
//     is after the given time (attest.ErrExpired) and at most MaxValidity
//     ahead (attest.ErrTooLong). Then the quote is at most MaxQuoteSize and
//     parses as a TDX v4 quote (ErrMalformed), and its REPORTDATA, not yet
//     verified, is that same binding (attest.ErrBinding). Another peer's
//     quote, or a swapped sealing key, is refused here without verifying
//     anything.
//  3. Genuine (VerifyQuote), ECDSA P-256 attestation (ErrNotGenuine): the
//     PCK chain in the quote is three certificates and its root is byte for
//     byte the trusted root; the attestation key signed the header and TD
//     report (REPORTDATA included, so a quote rewritten to bind another
//     sealing key fails here); the PCK certificate signed the QE report;
//     the QE report's data is the hash of the attestation key and QE
//     authentication data; root, intermediate and PCK certificates chain by
//     signature and name, and are valid at the given time; the PCK
//     certificate carries Intel's SGX extensions.
//  4. Collateral, only with CollateralOn (ErrCollateral, or
//     ErrCollateralUnavailable when neither Intel PCS nor the cache had
//     it): Intel's TDX TCB info and QE identity for the platform, signed
//     under the same root and not past their nextUpdate; the platform's TCB
//     level, its TDX module identity and the QE's level are all UpToDate;
//     neither the PCK nor the intermediate certificate is on Intel's CRLs.
//     go-tdx-guest accepts only UpToDate; SWHardeningNeeded and
//     ConfigurationNeeded platforms are rejected too.
//  5. Acceptable to the Policy in force, read on every call: not a debug TD
//     (ErrDebug), MRTD and RTMR0-3 equal to one allow-list entry
//     (ErrMeasurement), and TEE_TCB_SVN, the PCK certificate's CPUSVN
//     components and PCESVN each at least the minimum (ErrTCB).
//
// The verdict is attest.TierTEE until the evidence's expiry, and carries
// the sealing key the quote binds.
//
// Not verified: MRCONFIGID, MROWNER, MROWNERCONFIG, XFAM, MRSEAM and the
// TD attributes other than DEBUG; the QE's vendor ID and MRSIGNER unless
// collateral is on; with collateral off, whether the platform's TCB is
// current and whether its PCK certificate was revoked (Policy.MinTCB is
// then the only TCB check). The evidence's expiry is the node's own claim,
// bounded by MaxValidity; the quote carries no time.
//
// # Trust root
//
// NewValidator trusts only Intel's SGX Root CA: a copy kept in this
// package, refused unless its SHA-256 is IntelRootFingerprint. Config has
// no field that can carry a root; TestConfigCannotChangeRoot keeps it that
// way.
//
// Tests need quotes that no Intel machine made. Package tdxtest is a fake
// Intel: a throwaway chain imitating Intel's, synthetic quotes under it
// (tdxtest.Intel.Issuer, an attest.Issuer) and the collateral Intel PCS
// would serve for them (tdxtest.Intel.PCS, a Getter). This package's own
// tests trust the fake root through an unexported constructor. Tests that
// build validators with NewValidator, as a node does, call
// tdxtest.Intel.Trust, which calls TrustTestRoot: every Validator that
// NewValidator makes while it is in force trusts the test root beside
// Intel's, and logs a warning saying so. TrustTestRoot exists only in
// binaries built with -tags cocoon_testroot (testroot.go): a production
// build has no function, variable or setting that adds a root, so no
// configuration, flag or code path reaches one, and a program that calls
// it does not compile (TestTrustTestRootOnlyWithTag). TestRootBuild says
// which build a binary is; without the tag tdxtest.Intel.Trust fails the
// test, naming the tag. Whole-network tests that use synthetic TDX quotes
// run with
//
//	go test -tags cocoon_testroot ./testnet/...
//
// # Collateral cache
//
// With CollateralOn, go-tdx-guest fetches TCB info, QE identity and CRLs
// through a getter that keeps every answer in Config.CacheDir (files
// 0600). An answer younger than Config.Refresh is served from disk;
// otherwise it is fetched again, and if Intel PCS cannot be reached the
// cached one is served. Cached answers are verified like fresh ones, so a
// tampered cache can deny service but not vouch for a quote, and Intel's
// nextUpdate bounds how long an offline node accepts them.
//
// Only the URLs IsCollateralURL names are fetched: go-tdx-guest takes the
// root CRL's URL from a certificate in an answer it has not verified yet,
// and any other URL there is refused (ErrCollateral) without a request.
// Validator.Cached reads the cache without fetching; package
// attest/collateral serves peers from it, and its Getter, given as
// Config.Getter, asks peers when Intel cannot be reached, so collateral
// travels between nodes (see that package for what a relay can and cannot
// do). A Getter that is also a ContextGetter fetches within the
// validation's context.
//
// go-tdx-guest logs to stdout through github.com/google/logger; it prints
// only when no trusted roots are passed, and this package always passes
// them (TestVerifyPrintsNothing).
//
// # Attacks and the tests that show them rejected
//
//	evidence of another kind               attest.ErrKind            TestValidate/wrong_kind
//	no quote                               ErrMalformed              TestValidate/empty_quote
//	quote over 64 KiB                      ErrMalformed              TestValidate/oversize_quote
//	truncated or garbled quote             ErrMalformed              TestValidate/truncated_quote, FuzzValidate
//	TD report altered after signing        ErrNotGenuine             TestValidate/tampered_TD_report, TestValidate/tampered_report_data
//	QE report altered                      ErrNotGenuine             TestValidate/tampered_QE_report
//	quote signed under another root        ErrNotGenuine             TestValidate/wrong_root
//	PCK chain expired                      ErrNotGenuine             TestCertificatesExpire, TestRealQuoteIsGenuine
//	another peer replays a quote           attest.ErrBinding         TestValidate/replayed_by_another_peer
//	replayed evidence re-bound to the key  attest.ErrBinding         TestValidate/evidence_rebound_to_another_peer
//	quote over other report data           attest.ErrBinding         TestValidate/quote_over_other_data, TestRealQuoteIsGenuine
//	expiry extended after quoting          attest.ErrBinding         TestValidate/expiry_changed
//	expired evidence                       attest.ErrExpired         TestValidate/expired
//	validity beyond MaxValidity            attest.ErrTooLong         TestValidate/validity_too_long
//	image not on the allow-list            ErrMeasurement            TestValidate/measurement_not_allowed, TestValidate/one_RTMR_differs
//	image dropped from the allow-list      ErrMeasurement            TestPolicyFollowsItsSource
//	debug TD                               ErrDebug                  TestValidate/debug_TD
//	TCB below the minimum                  ErrTCB                    TestValidate/TEE_TCB_below_minimum, TestPolicyFollowsItsSource
//	TCB out of date per Intel              ErrCollateral             TestCollateralCachedForOffline
//	stale collateral                       ErrCollateral             TestCollateralExpires
//	Intel unreachable, nothing cached      ErrCollateralUnavailable  TestCollateralCachedForOffline, TestSyntheticCollateral
//	collateral signed under another root   ErrCollateral             TestSyntheticCollateral
//	answer naming a root CRL elsewhere     ErrCollateral, no fetch   TestCallFetchesOnlyCollateralURLs
//	quote under an untrusted test root     ErrNotGenuine             TestNewValidatorRefusesTestRoot
//	test root trusted in production        does not compile          TestTrustTestRootOnlyWithTag
//	pinned root copy altered               NewValidator fails        TestRootIsPinned
package tdx
