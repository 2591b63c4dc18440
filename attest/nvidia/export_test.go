package nvidia

// NewVerifierPinned trusts rootPEM pinned by pin. It exists only in this
// package's test binary, so production code cannot trust another root.
var NewVerifierPinned = newVerifier
