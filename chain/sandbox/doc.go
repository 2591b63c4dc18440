// Package sandbox is a chain.Chain on a local TVM emulator: @ton/sandbox,
// run by Node.js as a loopback sidecar (contracts/sandbox.mjs). It backs
// `cocoon testnet` and the tests, where a real TON network would be slow and
// cost money.
//
// The emulator executes every message at once: SendExternal and SendInternal
// return only after the whole chain of transactions they caused has run, so
// WaitTransaction never waits for a message sent through this Sandbox. Beyond
// chain.Chain it can deploy contracts, fund and send from treasuries (wallets
// the emulator owns, created on first use with plenty of TON) and move its
// clock.
//
// # The sidecar
//
// Start writes the sidecar embedded in package contracts to a cache
// directory, installs its npm packages there with `npm ci` the first time
// (about ten seconds), and starts `node sandbox.mjs`. The directory is
// $XDG_CACHE_HOME/cocoon/sandbox-<hash of package-lock.json> (or ~/.cache on
// Linux, as os.UserCacheDir says) unless Config.Dir names one. Several
// processes may prepare it at once: each installs into a temporary sibling
// and renames it into place, and a process that loses the rename uses the
// winner's. The sidecar listens on a random port of 127.0.0.1 and exits when
// its stdin closes, so it never outlives the Go process; Close closes it and
// waits for the exit.
package sandbox
