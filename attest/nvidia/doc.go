// Package nvidia collects and verifies NVIDIA GPU confidential-computing
// (CC) evidence, the GPU half of the tee-gpu trust tier. The evidence
// rides in attest.Evidence.GPU beside a TDX quote and is bound to the same
// peer key, sealing key and expiry: the GPU's attestation report is made
// over
//
//	Nonce(binding) = SHA-256(binding),  binding = attest.Binding(pub, expiry, sealKey)
//
// so a report replayed by another peer, for another sealing key or for
// another expiry, fails.
//
// # Collecting
//
// Collector talks to the driver through go-nvml, which needs cgo. Built
// without cgo (CGO_ENABLED=0), Collector exists but Collect fails with
// ErrNoNVML; the verifier needs no cgo. On a machine with cgo but no
// driver, Collect also fails with ErrNoNVML. Collect reads the machine's
// CC capability, state (on/off, devtools, environment) and GPU ready
// state, and per GPU its attestation certificate chain and an attestation
// report over the nonce. Encode and Decode turn that into a versioned,
// size-capped binary blob (MaxSize; certificates shared between GPUs are
// stored once).
//
// # What VerifyEvidence checks
//
//   - The machine's GPUs are CC capable, CC is on, devtools (debug) mode is
//     off, the CC environment is production (not simulated) and the GPUs
//     accept client work (ready state). These are the values NVML reported
//     to the collector: they are NOT signed by the GPU, so a machine that
//     lies about them is caught only by the checks below (a GPU with CC off
//     makes no report at all) and by the TDX quote vouching for the
//     software that collected them.
//   - Every GPU has a report, and it parses as an SPDM 1.1 GET_MEASUREMENTS
//     request followed by its MEASUREMENTS response, every length adding up
//     (see report.go for the layout).
//   - The report's request nonce (bytes 4 to 36 of the report) equals the
//     expected nonce.
//   - The GPU's attestation certificate chain verifies, at the given time,
//     up to NVIDIA's device identity root ("NVIDIA Device Identity CA"),
//     embedded and pinned by its SHA-256 (RootSHA256). It is the root
//     NVIDIA ships with its nvtrust verifier; a real Hopper sample report
//     and chain from nvtrust verify against it in the tests.
//   - The report's ECDSA P-384 signature over SHA-384 of everything before
//     it verifies with the chain's leaf key, so the nonce and measurements
//     were signed by a genuine NVIDIA GPU.
//
// # What it does NOT check
//
//   - Measurements against NVIDIA's reference values (RIMs, fetched online
//     from NVIDIA's RIM service, themselves signed): a genuine GPU running
//     an old or unexpected VBIOS or driver passes. Report.Measurements
//     exposes them for a future allow-list.
//   - Revocation (NVIDIA's OCSP service) of any certificate in the chain.
//   - The opaque data (driver and VBIOS versions, FWID, ...), the leaf
//     certificate's FWID extension, or that the GPU's UUID or name match
//     the certificate.
//   - NVIDIA's remote attestation service (NRAS) is not used.
//   - That the GPUs are the ones attached to the TDX guest that presents
//     them, beyond the nonce binding (a TDX guest could relay the reports
//     of GPUs it does not own, made over its own nonce); the protected PCIe
//     / SPDM session between the CVM and the GPU is the driver's business.
//   - SPDM 1.2+ reports (Blackwell), and the CEC report some GPUs add.
//
// Verdicts: VerifyEvidence runs every check and returns a Result saying
// per GPU what passed, with every failure joined into one error (each
// wrapping a documented sentinel: ErrCCOff, ErrNotReady, ErrNonce,
// ErrChain, ErrNoReport, ...). The tier decision (tee-gpu needs this and
// TDX) belongs to the caller.
//
// Tests use go-nvml's mock DGX H100 with a throwaway root, reachable only
// from the package's own tests (export_test.go); production code can only
// build a verifier that trusts the pinned NVIDIA root.
package nvidia
