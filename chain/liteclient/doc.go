// Package liteclient is a chain.Chain on a real TON network, through the
// liteservers of a TON global config and tonutils-go.
//
// # Status
//
// It has not been run against a live TON network: where it was written there
// is no internet. Its tests drive it through a fake of the tonutils-go API
// fed with real tonutils-go cells and TL-B structures, and load global
// configs from files and a loopback HTTP server. Try it on testnet first.
//
// # Pointing it at a network
//
// Set Config.Network to "mainnet" or "testnet". Config.GlobalConfig is a file
// path or an http(s) URL of a global config; when empty, the network's public
// config is fetched:
//
//	mainnet  https://ton.org/global.config.json
//	testnet  https://ton.org/testnet-global.config.json
//
// A private or pinned config can be downloaded once and given as a path; it
// must list at least one liteserver and the validator's init_block. Configs
// over 4 MiB are refused.
//
// # How it talks to TON
//
// Start loads the config, connects a tonutils-go connection pool to its
// liteservers and builds the API client with ton.ProofCheckPolicySecure,
// trusting the config's init block, and with retries on other liteservers
// (WithRetry). It then checks the masterchain's proof chain up to the latest
// block before returning; on a first start from an old init block that takes
// up to a minute. Each call binds its requests to one liteserver with a
// sticky context, so that the masterchain block it reads first is known to
// the liteserver it asks next. Dropped liteservers are redialled with
// backoff until Close.
//
// Account and RunGetMethod read the latest masterchain block. SendExternal
// takes a whole external-in Message cell. tonutils-go decodes and encodes
// the message again before sending it; the hash returned is that of the
// message as sent, which is the cell's own hash unless the cell keeps its
// body or state init in a reference where it would fit inline.
// WaitTransaction polls the account every two seconds and matches
// transactions by that same hash. Its first look also checks the account's
// 32 latest transactions, so a message that landed shortly before the call is
// found; one buried deeper is not.
//
// Close waits for the reconnect loops; the reader and ping goroutines of
// tonutils-go's pool end when their sockets close, and are not waited for.
package liteclient
