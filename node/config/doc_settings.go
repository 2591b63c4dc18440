package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// settingDocs explains every setting of the TOML file, by its dotted key.
// Example refuses to write a setting without one, and a test checks
// every setting has one.
var settingDocs = map[string]string{
	"network":  "The network: mainnet, testnet or local. Protocol IDs and the DHT carry it, so nodes of different networks never talk.",
	"data_dir": "Identity key, state, admin.url and admin.token live here (0700; secrets 0600). Empty: ~/.cocoon/<role>, or COCOON_DATA_DIR.",

	"p2p.listen":                  "libp2p listen multiaddrs. Never leave this to libp2p: it would listen on every interface.",
	"p2p.max_streams_per_peer":    "Concurrent streams with one peer, each way: the concurrency one client can reach through a proxy.",
	"p2p.max_streams":             "Concurrent streams in the whole host.",
	"p2p.max_conns":               "Open connections at most.",
	"p2p.conns_low":               "The connection manager trims to this many once conns_high is passed.",
	"p2p.conns_high":              "See conns_low.",
	"p2p.relay_service":           "Relay connections to workers behind NAT (circuit relay v2, not limited in time or bytes), for attested peers only: a peer reserves a slot or opens a circuit once it holds a live verdict here. On for proxies.",
	"p2p.relay_max_reservations":  "Relay slots at most (one per private worker); an eighth of them from one IP address.",
	"p2p.relay_max_circuits":      "Relayed connections to or from one peer at once: to a private worker, one per proxy that routes to it.",
	"p2p.relay_circuits_per_peer": "Relayed connections one peer may open at once, so that a few peers cannot take a worker's relay_max_circuits.",
	"p2p.private":                 "Behind NAT with no open port: be reached through relay slots on the proxies (workers).",

	"attest.issuer":     "Evidence this node presents: dev (no hardware; local networks only), tdx (a TDX quote; run in a TDX guest; the libp2p key is then made in memory at each start and an identity.key on disk is refused), or none (clients, by default, and proxies without TEE hardware; not workers).",
	"attest.collateral": "Check peers' TDX quotes against Intel's collateral and revocation lists too (cached in the data dir): on or off.",
	"attest.gpu":        "With issuer tdx: add NVIDIA confidential-computing evidence of the GPUs, for the tee-gpu tier.",
	"attest.allow_dev":  "Accept peers with dev evidence: on the network local, or where the root contract allows it too. Mainnet refuses it.",
	"attest.validity":   "How long this node's own evidence lasts (1m to 24h); it is renewed in the background when a third is left, and served meanwhile, also while renewal fails.",

	"worker.backend":                 "The engine: sim (built-in simulator) or openai (any OpenAI-compatible engine: vLLM, SGLang, llama.cpp, Ollama).",
	"worker.max_concurrent":          "Requests served at once; more are refused as overloaded.",
	"worker.proxies":                 "Proxies to join, multiaddrs ending in /p2p/<id>, besides those the root contract lists.",
	"worker.check_interval":          "How often the worker checks its proxies.",
	"worker.sim.models":              "Model IDs the simulator serves.",
	"worker.sim.ttft":                "Simulated time to first token.",
	"worker.sim.tokens_per_sec":      "Simulated generation speed; 0 is as fast as possible.",
	"worker.sim.max_tokens":          "Tokens per answer when the request sets none.",
	"worker.sim.chunks":              "Answer with exactly this many chunks (benchmark shape); 0 is off.",
	"worker.sim.chunk_bytes":         "Bytes per chunk in the benchmark shape.",
	"worker.openai.url":              "The engine's OpenAI base URL, e.g. http://127.0.0.1:8000/v1. Its key comes from COCOON_ENGINE_API_KEY.",
	"worker.openai.models":           "Models to announce instead of asking the engine's /v1/models.",
	"worker.openai.embedding_models": "Models the engine serves embeddings for (/v1/embeddings); one also in models serves chat and completion too.",
	"worker.openai.socket":           "A unix socket the engine listens on; when set, requests go there and url gives only the path. With attest.issuer tdx the engine must be on loopback or a unix socket.",
	"worker.price.prompt":            "Price of a million prompt tokens, in nanoTON (1 TON = 10^9), for every model served.",
	"worker.price.cached":            "Price of a million cached prompt tokens, in nanoTON.",
	"worker.price.completion":        "Price of a million completion tokens, in nanoTON.",
	"worker.prices":                  "Prices of the models named, instead of worker.price: [worker.prices.MODEL] with prompt, cached and completion.",

	"proxy.workers":                 "Workers to use, multiaddrs ending in /p2p/<id>, besides those found through offers and the DHT.",
	"proxy.fee_ppm":                 "Fee added to workers' prices, in millionths; the root contract caps it.",
	"proxy.attempts":                "Workers a request may try before its first chunk (1 to 10).",
	"proxy.chunk_timeout":           "How long a worker may go silent mid-stream before it is cut off and the answer ends with upstream_timeout.",
	"proxy.first_chunk_timeout":     "How long a worker may take to send its first chunk before the next is tried.",
	"proxy.check_interval":          "How often the proxy checks the workers in proxy.workers.",
	"proxy.max_requests_per_client": "Requests one client may have in flight at this proxy; more are refused as overloaded (503).",
	"proxy.client_share":            "The share of a worker's slots, in percent, one client may hold, so that one client cannot take every slot of a worker.",
	"proxy.client_write_timeout":    "How long a client may stop reading its answer before it is cut off and its worker's request stopped.",

	"client.api_addr":        "Where the OpenAI-compatible API listens. Beyond loopback it needs an API key (api_key_file or COCOON_API_KEY).",
	"client.api_key_file":    "A file holding the API key apps must send as 'Authorization: Bearer <key>' (0600, at most 4 KiB, space trimmed); COCOON_API_KEY overrides it. Empty: no key, unless the environment gives one.",
	"client.allowed_hosts":   "Host names (or IPs), without port, apps may use to reach the API besides localhost, loopback IPs and api_addr's host, e.g. [\"gpu-box.lan\"]. Any other Host header is refused with 403 host_not_allowed: it is how a DNS-rebinding web page reaches the API.",
	"client.allowed_origins": "Exact origins of web apps that may call the API from a browser, e.g. [\"https://app.example\"]; needs an API key, which the app sends. Their CORS preflights are answered for that origin only. Any other page's request (an Origin header, or Sec-Fetch-Site cross-site or same-site) is refused with 403 origin_not_allowed.",
	"client.proxies":         "Proxies to use, multiaddrs ending in /p2p/<id>, besides those the root contract and the DHT give.",
	"client.request_timeout": "How long to wait for the first chunk before answering 504.",
	"client.max_price":       "Most to pay per million prompt+completion tokens, proxy fee included, in nanoTON; 0 is no limit. X-Cocoon-Max-Price overrides it per request.",
	"client.min_trust":       "Weakest trust tier a serving worker may have: dev, tee or tee-gpu; empty is any. X-Cocoon-Min-Trust can raise it per request.",
	"client.min_proxy_trust": "Weakest trust tier a proxy this client uses may have: dev, tee or tee-gpu; empty (default) accepts proxies with no evidence, which see no prompt: requests are sealed to workers.",
	"client.check_interval":  "How often the client checks its proxies.",
	"client.max_connections": "Open connections the API takes at most; more wait in the kernel's backlog until one closes.",

	"payments.enabled":      "Pay and require payment through TON payment channels, from the wallet whose seed is in the data dir (cocoon wallet address). Needs the chain: discovery.root.",
	"payments.deposit":      "nanoTON put into each channel this node opens (a client's to a proxy, a proxy's to a worker); the channel's capacity. A channel running low is followed by a new one (payments.renew_below).",
	"payments.reserve":      "A channel with less than this many nanoTON left takes no new payments.",
	"payments.renew_below":  "With less than this many nanoTON left on a channel this node pays on (or when its payee asks to settle), the next channel is opened while the old one still pays, so no request waits for it (make before break); the old one is then closed cooperatively, paying its payee out.",
	"payments.settle_above": "A payee asks its payer to settle a channel (close it cooperatively, which pays the payee out on chain, and move to a new one) once it has received this many nanoTON on it; 0 never asks for that reason.",
	"payments.settle_after": "A payee asks its payer to settle a channel once it is this old; 0 never asks for that reason.",
	"payments.max_credit":   "nanoTON a payee serves beyond its payer's newest signed state; past it requests get 402 (clients) or are refused (proxies). A proxy also pays a worker ahead of its clients once half of this is due to it.",
	"payments.batch":        "How long a payer gathers answers into one signed state (one signature and one disk write on each side for all of them); 0 signs each answer's payment at once.",
	"payments.quarantine":   "How long an uncooperative close of this node's channels can be challenged; the counterparty must watch the chain at least this often.",

	"gossip.announce_interval": "How often workers and proxies re-announce their offers; offers live three intervals (100ms to 40s).",
	"gossip.peer_rate":         "Offers a second one neighbour may deliver, under any keys: past it its own offers are rejected and relayed ones dropped, past five times it the neighbour is scored down. 100 covers 1,000 nodes announcing every 10s; raise it for bigger networks.",
	"gossip.book_size":         "Most offers the node keeps; a full book drops expired offers first, then the oldest unattested ones of the neighbour that delivered the most, never an attested peer's.",
	"gossip.book_per_peer":     "Most offers in the book delivered by one neighbour (at most gossip.book_size).",

	"discovery.root":             "The network's root contract on TON (raw 0:... or user-friendly EQ...). Nodes find each other through it.",
	"discovery.global_config":    "TON global config file or URL to read the root contract with; empty uses ton.org's for mainnet and testnet.",
	"discovery.bootstrap":        "More peers to join the DHT through, multiaddrs ending in /p2p/<id>.",
	"discovery.refresh_interval": "How often the root contract is read again.",
	"discovery.lookup_interval":  "How often the node searches the DHT and re-provides its records.",
	"discovery.max_found":        "Most proxies found in the DHT a client or worker keeps and checks, besides the configured and root contract ones; those failing two checks in a row are dropped.",

	"admin.addr": "The admin API (JSON status, Prometheus metrics, dashboard) on loopback; port 0 picks one, written to admin.url, with a new token each start in admin.token (send it as a bearer token). Empty turns it off.",
}

// roleSections are the tables that belong to one role only.
var roleSections = map[string]Role{"worker": RoleWorker, "proxy": RoleProxy, "client": RoleClient}

// Example is a TOML file holding every setting of role with its
// default value and what it means: what `cocoon config init` writes.
func Example(role Role) (string, error) {
	c := Default(role)
	// Empty lists are written too, so that they are documented.
	for _, l := range []*[]string{&c.Worker.Proxies, &c.Worker.OpenAI.Models, &c.Worker.OpenAI.EmbeddingModels, &c.Proxy.Workers, &c.Client.Proxies, &c.Client.AllowedHosts, &c.Client.AllowedOrigins, &c.Discovery.Bootstrap} {
		if *l == nil {
			*l = []string{}
		}
	}
	var enc bytes.Buffer
	if err := toml.NewEncoder(&enc).Encode(c); err != nil {
		return "", err
	}
	var out strings.Builder
	fmt.Fprintf(&out, "# Cocoon %s configuration: every setting with its default.\n", role)
	out.WriteString("# Order of precedence: defaults, this file (--config or COCOON_CONFIG), flags, environment.\n")
	section, skip := "", false
	for _, line := range strings.Split(enc.String(), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "":
			if !skip {
				out.WriteString("\n")
			}
			continue
		case strings.HasPrefix(t, "["):
			section = strings.Trim(t, "[]")
			top, _, _ := strings.Cut(section, ".")
			r, owned := roleSections[top]
			skip = owned && r != role
			if !skip {
				if !strings.HasSuffix(out.String(), "\n\n") {
					out.WriteString("\n")
				}
				out.WriteString(t + "\n")
			}
			continue
		}
		if skip {
			continue
		}
		key, _, ok := strings.Cut(t, " = ")
		if !ok {
			return "", fmt.Errorf("unexpected line %q", t)
		}
		full := key
		if section != "" {
			full = section + "." + key
		}
		doc, ok := settingDocs[full]
		if !ok {
			return "", fmt.Errorf("setting %s has no documentation", full)
		}
		fmt.Fprintf(&out, "# %s\n%s\n", doc, t)
	}
	return strings.TrimRight(out.String(), "\n") + "\n", nil
}

// SettingDocs returns the documentation of every setting, by dotted key.
func SettingDocs() map[string]string {
	out := make(map[string]string, len(settingDocs))
	for k, v := range settingDocs {
		out[k] = v
	}
	return out
}
