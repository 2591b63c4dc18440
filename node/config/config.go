package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/inference/backend/sim"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Config is the whole configuration of one node. It is built from
// Default, then a TOML file (LoadFile), then flags, then the
// environment for secrets and paths (cmd/cocoon does those two).
type Config struct {
	Role    Role           `toml:"-"`
	Network string         `toml:"network"`  // mainnet, testnet or local
	DataDir string         `toml:"data_dir"` // identity key and state, 0700
	P2P     p2p.HostConfig `toml:"p2p"`
	Attest  Attest         `toml:"attest"`
	Worker  Worker         `toml:"worker"`
	Proxy   Proxy          `toml:"proxy"`
	Client  Client         `toml:"client"`
	Gossip  Gossip         `toml:"gossip"`
	// Discovery says how the node finds the others: the root contract and
	// the DHT.
	Discovery Discovery `toml:"discovery"`
	// Admin is the node's admin API on loopback.
	Admin Admin `toml:"admin"`
	// Payments are the node's TON payment channels.
	Payments Payments `toml:"payments"`
}

// Payments turns on payments through TON payment channels: clients
// pay proxies and proxies pay workers, per answer, from the wallet whose
// seed is in the data dir.
type Payments struct {
	// Enabled makes the node pay and require payment. It needs the chain
	// (discovery.root with discovery.global_config, or cocoon testnet's).
	Enabled bool `toml:"enabled"`
	// Deposit is what each channel this node opens holds, in nanoTON.
	Deposit uint64 `toml:"deposit"`
	// Reserve: a channel with less left takes no new payments.
	Reserve uint64 `toml:"reserve"`
	// RenewBelow: with less than this left, the next channel is opened
	// while the old one still pays (make before break).
	RenewBelow uint64 `toml:"renew_below"`
	// SettleAbove and SettleAfter: a payee asks its payer to settle a
	// channel (close it, paying out on chain, and move to a new one) once
	// it has received this much on it, or once it is this old. 0: never.
	SettleAbove uint64   `toml:"settle_above"`
	SettleAfter Duration `toml:"settle_after"`
	// MaxCredit is how much a payee serves beyond its payer's newest signed
	// state, in nanoTON.
	MaxCredit uint64 `toml:"max_credit"`
	// Quarantine is how long an uncooperative close of this node's
	// channels can be challenged.
	Quarantine Duration `toml:"quarantine"`
	// Batch is how long a payer gathers answers into one signed state.
	Batch Duration `toml:"batch"`
}

// Admin places the admin API: JSON status and Prometheus metrics.
type Admin struct {
	// Addr is a loopback host:port; port 0 picks a free one. The URL is
	// written to admin.url in the data dir, the token every request needs
	// to admin.token beside it. Empty turns the API off.
	Addr string `toml:"addr"`
}

// Discovery points a node at its network's root contract and DHT.
type Discovery struct {
	// Root is the address of the network's root contract on TON. The node
	// reads the proxies to bootstrap from, and the network's rules, from it.
	Root string `toml:"root"`
	// GlobalConfig is the TON global config (a file or an http(s) URL) used
	// to read the root contract through lite servers, e.g.
	// https://ton.org/global.config.json.
	GlobalConfig string `toml:"global_config"`
	// Bootstrap are more peers (multiaddrs ending in /p2p/<id>) to join the
	// DHT through, besides the root contract's.
	Bootstrap []string `toml:"bootstrap"`
	// RefreshInterval is how often the root contract is read again.
	RefreshInterval Duration `toml:"refresh_interval"`
	// LookupInterval is how often the node searches the DHT: clients and
	// workers for proxies, proxies for workers. Records are re-provided at
	// the same pace.
	LookupInterval Duration `toml:"lookup_interval"`
	// MaxFound is how many proxies found in the DHT a client or worker
	// keeps and checks, besides the configured and root contract's ones.
	MaxFound int `toml:"max_found"`
}

// Attest says how the node proves itself and what it accepts.
type Attest struct {
	// Issuer is the evidence this node presents: "dev" (no hardware; local
	// networks), "tdx" (a TDX quote; the node must run in a TDX guest, and
	// makes its libp2p key in memory at each start: an identity.key in
	// the data dir is refused), or
	// "none" (a client, the default there, or a proxy without TEE
	// hardware: peers hold no verdict on it). Workers must present
	// evidence: it is what clients seal their prompts to.
	Issuer string `toml:"issuer"`
	// Collateral says whether peers' TDX quotes are also checked against
	// Intel's collateral (TCB info, QE identity, revocation lists), fetched
	// from Intel PCS and cached in the data dir: "on" (default) or "off"
	// (signatures and the certificate chain to Intel's pinned root only).
	Collateral string `toml:"collateral"`
	// GPU adds NVIDIA confidential-computing evidence of the machine's GPUs
	// to the TDX quote (attest.issuer tdx), for the tee-gpu tier.
	GPU bool `toml:"gpu"`
	// AllowDev accepts peers with dev evidence: on the network local, or
	// where the root contract allows dev attestation; mainnet refuses to
	// start with it.
	AllowDev bool `toml:"allow_dev"`
	// Validity is how long own evidence lasts; it is renewed in the
	// background once a third is left.
	Validity Duration `toml:"validity"`
}

// Worker configures the worker role.
type Worker struct {
	Backend       string `toml:"backend"` // "sim" or "openai"
	MaxConcurrent int    `toml:"max_concurrent"`
	Sim           Sim    `toml:"sim"`
	OpenAI        OpenAI `toml:"openai"`
	// Price is what the worker asks for every model it serves, in nanoTON
	// per million tokens; it is announced in the worker's offers.
	Price payments.Price `toml:"price"`
	// Prices are what it asks for the models named, instead of Price
	// (TOML: [worker.prices.llama3] prompt = ..., completion = ...).
	Prices map[string]payments.Price `toml:"prices"`
	// Proxies are multiaddrs (ending in /p2p/<id>) of proxies to join: the
	// worker stays connected and attested to them, and they learn of it
	// from its gossiped offers. The DHT replaces this list in [2/6].
	Proxies       []string `toml:"proxies"`
	CheckInterval Duration `toml:"check_interval"`
}

// Gossip says how often a node announces its offer, and bounds what it
// takes of others' (fresh keys cost nothing: see docs/hardening.md).
type Gossip struct {
	// AnnounceInterval is how often workers and proxies re-announce their
	// offer; offers expire after three intervals.
	AnnounceInterval Duration `toml:"announce_interval"`
	// PeerRate is how many offers a second one neighbour may deliver,
	// under any keys. Past it a neighbour's own offers are rejected and
	// relayed ones dropped; past five times it, it is scored down.
	PeerRate float64 `toml:"peer_rate"`
	// BookSize is how many offers the node's book holds at most.
	BookSize int `toml:"book_size"`
	// BookPerPeer is how many of them one neighbour's deliveries may hold.
	BookPerPeer int `toml:"book_per_peer"`
}

// Sim is sim.Config with TOML-friendly durations.
type Sim struct {
	Models       []string `toml:"models"`
	TTFT         Duration `toml:"ttft"`
	TokensPerSec float64  `toml:"tokens_per_sec"`
	MaxTokens    int      `toml:"max_tokens"`
	Chunks       int      `toml:"chunks"`
	ChunkBytes   int      `toml:"chunk_bytes"`
}

// Sim converts to the backend's config.
func (s Sim) Sim() sim.Config {
	return sim.Config{Models: s.Models, TTFT: s.TTFT.D(), TokensPerSec: s.TokensPerSec,
		MaxTokens: s.MaxTokens, Chunks: s.Chunks, ChunkBytes: s.ChunkBytes}
}

// OpenAI points a worker at an OpenAI-compatible engine.
type OpenAI struct {
	URL string `toml:"url"` // e.g. http://127.0.0.1:8000/v1
	// Socket, when set, is the path of a unix socket the engine listens
	// on; requests go there, and URL only gives the path prefix.
	Socket string   `toml:"socket"`
	APIKey string   `toml:"-"`      // from COCOON_ENGINE_API_KEY only
	Models []string `toml:"models"` // announce these instead of asking the engine
	// EmbeddingModels are the models announced for /v1/embeddings; one
	// also in Models is announced for chat and completion too.
	EmbeddingModels []string `toml:"embedding_models"`
}

// Proxy configures the proxy role.
type Proxy struct {
	// Workers are multiaddrs ending in /p2p/<id> of workers to use.
	// Workers that join the proxy themselves (worker.proxies) are found
	// from their offers; discovery replaces both in [2/6].
	Workers []string `toml:"workers"`
	// FeePPM is the fee this proxy adds to a worker's price, in millionths
	// of it, announced in its offers. The root contract caps it.
	FeePPM            int64    `toml:"fee_ppm"`
	Attempts          int      `toml:"attempts"`
	FirstChunkTimeout Duration `toml:"first_chunk_timeout"`
	// ChunkTimeout cuts off a worker silent for this long mid-stream.
	ChunkTimeout  Duration `toml:"chunk_timeout"`
	CheckInterval Duration `toml:"check_interval"`
	// MaxRequestsPerClient bounds the requests one client has in flight
	// at this proxy; ClientShare, in percent, the share of a worker's
	// slots one client may hold.
	MaxRequestsPerClient int `toml:"max_requests_per_client"`
	ClientShare          int `toml:"client_share"`
	// ClientWriteTimeout cuts off a client that stops reading its answer
	// for this long, and stops its worker's request.
	ClientWriteTimeout Duration `toml:"client_write_timeout"`
}

// Client configures the client role.
type Client struct {
	APIAddr string `toml:"api_addr"`
	// APIKey is required when APIAddr is not loopback, and with
	// AllowedOrigins; from COCOON_API_KEY, APIKeyFile (--api-key-file) or
	// --api-key, which every user of the machine can read in ps.
	APIKey string `toml:"-"`
	// APIKeyFile is a file holding the API key (0600, at most
	// MaxSecretBytes; surrounding space trimmed), read by ReadSecret.
	APIKeyFile string `toml:"api_key_file"`
	// AllowedHosts are host names (or IPs), without port, that requests'
	// Host header may name besides loopback ones and api_addr's host: the
	// names apps use to reach a node beyond loopback. Any other Host is
	// refused, as DNS rebinding sends one.
	AllowedHosts []string `toml:"allowed_hosts"`
	// AllowedOrigins are the exact origins (scheme://host[:port]) of web
	// apps that may use the API from a browser, with the API key. Every
	// other page's request is refused.
	AllowedOrigins []string `toml:"allowed_origins"`
	Proxies        []string `toml:"proxies"`
	RequestTimeout Duration `toml:"request_timeout"`
	// MaxPrice is the most the client pays, in nanoTON per million prompt
	// plus completion tokens, the proxy's fee included; 0 is no limit. An
	// app may set its own per request with the X-Cocoon-Max-Price header.
	MaxPrice int64 `toml:"max_price"`
	// MinTrust is the weakest trust tier a worker serving this client may
	// have: "dev", "tee" or "tee-gpu"; "" accepts any. Proxies send the
	// client's requests only to workers they verified at that tier or
	// above, and the client withholds answers whose tier is below it. An
	// app may raise it per request with the X-Cocoon-Min-Trust header.
	MinTrust string `toml:"min_trust"`
	// MinProxyTrust is the weakest trust tier a proxy this client uses may
	// have: "dev", "tee" or "tee-gpu"; "" (the default) accepts a proxy
	// with no evidence at all. Requests are sealed to workers the client
	// verified itself, so a proxy sees no prompt whatever its tier; a
	// minimum keeps, say, request sizes and timing inside a TEE too.
	MinProxyTrust string `toml:"min_proxy_trust"`
	// MaxConnections caps the API's open connections; more wait until one
	// closes.
	MaxConnections int      `toml:"max_connections"`
	CheckInterval  Duration `toml:"check_interval"`
}

// MinTier is MinTrust as a tier; 0 for "" (any) or a name Validate
// refuses.
func (c Client) MinTier() attest.Tier { return tierOf(c.MinTrust) }

// MinProxyTier is MinProxyTrust as a tier; 0 for "" (any proxy, with or
// without evidence) or a name Validate refuses.
func (c Client) MinProxyTier() attest.Tier { return tierOf(c.MinProxyTrust) }

func tierOf(name string) attest.Tier {
	if name == "" {
		return 0
	}
	t, err := attest.ParseTier(name)
	if err != nil {
		return 0
	}
	return t
}

// Default is the configuration of a role before any file or flag.
func Default(role Role) Config {
	sc := sim.DefaultConfig()
	hc := p2p.DefaultHostConfig()
	switch role {
	case RoleClient:
		hc.Listen = nil // a client only dials
	case RoleProxy:
		hc.RelayService = true // workers behind NAT are reached through proxies
	}
	att := Attest{Issuer: "dev", AllowDev: true, Collateral: "on", Validity: Duration(time.Hour)}
	if role == RoleClient {
		att.Issuer = "none" // a client risks its own data: it proves nothing
	}
	return Config{
		Role:    role,
		Network: "local",
		P2P:     hc,
		Attest:  att,
		Worker: Worker{
			Backend: "sim", MaxConcurrent: 64,
			Sim:           Sim{Models: sc.Models, MaxTokens: sc.MaxTokens},
			Price:         payments.Price{Prompt: 100_000_000, Cached: 10_000_000, Completion: 400_000_000},
			CheckInterval: Duration(5 * time.Second),
		},
		Gossip: Gossip{AnnounceInterval: Duration(10 * time.Second), PeerRate: offers.DefaultPeerRate,
			BookSize: offers.DefaultBookSize, BookPerPeer: offers.DefaultBookSize / 4},
		Admin: Admin{Addr: "127.0.0.1:0"},
		Payments: Payments{Deposit: 1_000_000_000, Reserve: 10_000_000, RenewBelow: 100_000_000, MaxCredit: 50_000_000,
			SettleAbove: 500_000_000, SettleAfter: Duration(24 * time.Hour),
			Quarantine: Duration(time.Hour), Batch: Duration(50 * time.Millisecond)},
		Discovery: Discovery{RefreshInterval: Duration(5 * time.Minute),
			LookupInterval: Duration(30 * time.Second), MaxFound: discovery.DefaultMaxFound},
		Proxy: Proxy{Attempts: 3, FeePPM: 20_000, FirstChunkTimeout: Duration(2 * time.Minute), ChunkTimeout: Duration(time.Minute),
			CheckInterval: Duration(5 * time.Second), MaxRequestsPerClient: 1024, ClientShare: 75, ClientWriteTimeout: Duration(time.Minute)},
		Client: Client{APIAddr: "127.0.0.1:10000", RequestTimeout: Duration(2 * time.Minute), MaxConnections: 4096,
			CheckInterval: Duration(5 * time.Second)},
	}
}

// LoadFile applies a TOML file over c. Unknown keys are an error, so a
// typo does not silently fall back to a default.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	md, err := toml.Decode(string(b), c)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("config %s: unknown setting %q", path, und[0].String())
	}
	return nil
}

// Validate checks the configuration; errors name the setting at fault.
func (c *Config) Validate() error {
	if c.Role == 0 {
		return errors.New("role: not set")
	}
	if err := p2p.ValidNetwork(c.Network); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: not set")
	}
	if err := c.P2P.Validate(); err != nil {
		return fmt.Errorf("p2p.%w", err)
	}
	if err := c.validateAttest(); err != nil {
		return err
	}
	if d := c.Gossip.AnnounceInterval.D(); d < 100*time.Millisecond || 3*d > 2*time.Minute {
		return fmt.Errorf("gossip.announce_interval: %s must be from 100ms to 40s (offers live three intervals, at most 2m)", d)
	}
	if err := c.Gossip.validate(); err != nil {
		return err
	}
	if c.Attest.Validity.D() < time.Minute || c.Attest.Validity.D() > 24*time.Hour {
		return fmt.Errorf("attest.validity: %s must be from 1m to 24h", c.Attest.Validity)
	}
	if c.Admin.Addr != "" {
		if err := checkLoopback(c.Admin.Addr); err != nil {
			return fmt.Errorf("admin.addr: %w", err)
		}
	}
	if err := c.Discovery.validate(); err != nil {
		return err
	}
	if err := c.Payments.validate(); err != nil {
		return err
	}
	switch c.Role {
	case RoleWorker:
		return c.validateWorker()
	case RoleProxy:
		return c.validateProxy()
	case RoleClient:
		return c.validateClient()
	}
	return fmt.Errorf("role: %v is not a role", c.Role)
}

func (c *Config) validateAttest() error {
	switch c.Attest.Issuer {
	case "dev":
		if !c.Attest.AllowDev {
			return errors.New("attest.issuer: dev evidence on a network that does not accept it (attest.allow_dev is false); use tdx")
		}
	case "tdx":
	case "none":
		if c.Role == RoleWorker {
			return errors.New("attest.issuer: none: a worker must present evidence (dev or tdx); clients seal their prompts to the key it binds")
		}
	default:
		return fmt.Errorf("attest.issuer: %q: want dev, tdx or none", c.Attest.Issuer)
	}
	if c.Attest.GPU && c.Attest.Issuer != "tdx" {
		return errors.New("attest.gpu: GPU evidence rides on a TDX quote; set attest.issuer to tdx")
	}
	if c.Attest.Collateral != "on" && c.Attest.Collateral != "off" {
		return fmt.Errorf("attest.collateral: %q: want on or off", c.Attest.Collateral)
	}
	if c.Network == "mainnet" && c.Attest.AllowDev {
		return errors.New("attest.allow_dev: mainnet never accepts dev attestation")
	}
	return nil
}

func (p Payments) validate() error {
	if !p.Enabled {
		return nil
	}
	if p.Deposit == 0 || p.Reserve >= p.Deposit {
		return fmt.Errorf("payments.deposit: %d must be above payments.reserve (%d)", p.Deposit, p.Reserve)
	}
	if p.RenewBelow >= p.Deposit {
		return fmt.Errorf("payments.renew_below: %d must be below payments.deposit (%d)", p.RenewBelow, p.Deposit)
	}
	if p.SettleAfter.D() < 0 {
		return fmt.Errorf("payments.settle_after: %s must not be negative", p.SettleAfter)
	}
	if p.Quarantine.D() < 10*time.Minute || p.Quarantine.D() > 30*24*time.Hour {
		return fmt.Errorf("payments.quarantine: %s must be from 10m to 720h, what payees accept", p.Quarantine)
	}
	if p.Batch.D() < 0 || p.Batch.D() > time.Second {
		return fmt.Errorf("payments.batch: %s must be from 0 to 1s", p.Batch)
	}
	return nil
}

func (c *Config) validateWorker() error {
	w := c.Worker
	if w.MaxConcurrent < 1 {
		return fmt.Errorf("worker.max_concurrent: %d must be at least 1", w.MaxConcurrent)
	}
	for _, p := range []int64{w.Price.Prompt, w.Price.Cached, w.Price.Completion} {
		if p < 0 || p > 1_000_000_000_000_000 {
			return fmt.Errorf("worker.price: %d nanoTON per million tokens is out of bounds (0 to 10^15)", p)
		}
	}
	for model, price := range w.Prices {
		if model == "" || len(model) > 256 {
			return fmt.Errorf("worker.prices: model name %q must be 1 to 256 bytes", model)
		}
		for _, p := range []int64{price.Prompt, price.Cached, price.Completion} {
			if p < 0 || p > 1_000_000_000_000_000 {
				return fmt.Errorf("worker.prices.%s: %d nanoTON per million tokens is out of bounds (0 to 10^15)", model, p)
			}
		}
	}
	switch w.Backend {
	case "sim":
		if err := w.Sim.Sim().Validate(); err != nil {
			return fmt.Errorf("worker.%w", err)
		}
	case "openai":
		if w.OpenAI.URL == "" {
			return errors.New("worker.openai.url: not set (e.g. http://127.0.0.1:8000/v1)")
		}
		if err := c.checkEngineInside(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("worker.backend: %q: want sim or openai", w.Backend)
	}
	if c.P2P.Private && len(w.Proxies) == 0 && c.Discovery.Root == "" && len(c.Discovery.Bootstrap) == 0 {
		return errors.New("p2p.private: a private worker is reached through its proxies; give it discovery.root, discovery.bootstrap or worker.proxies")
	}
	if len(c.P2P.Listen) == 0 && !c.P2P.Private {
		return errors.New("p2p.listen: a worker must listen, or set p2p.private to be reached through its proxies")
	}
	if _, err := discovery.ParseAddrs(w.Proxies); err != nil {
		return fmt.Errorf("worker.proxies: %w", err)
	}
	if w.CheckInterval.D() <= 0 {
		return errors.New("worker.check_interval must be positive")
	}
	return nil
}

// checkEngineInside refuses, for a worker whose evidence is a TDX quote, an
// engine outside its own machine: the tee tier promises that a prompt
// stays inside the TD, and an engine elsewhere would get it in the clear.
// The engine must listen on loopback or on a unix socket.
func (c *Config) checkEngineInside() error {
	if c.Attest.Issuer != "tdx" || c.Worker.OpenAI.Socket != "" {
		return nil
	}
	u, err := url.Parse(c.Worker.OpenAI.URL)
	if err != nil {
		return fmt.Errorf("worker.openai.url: %w", err)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
		return nil
	}
	return fmt.Errorf("worker.openai.url: %q is outside this machine; a worker with TDX evidence (attest.issuer tdx) "+
		"serves only an engine inside its own TD, on loopback (http://127.0.0.1:PORT/v1) or a unix socket (worker.openai.socket), "+
		"so that no prompt leaves the TD", u.Redacted())
}

func (c *Config) validateProxy() error {
	if _, err := discovery.ParseAddrs(c.Proxy.Workers); err != nil {
		return fmt.Errorf("proxy.workers: %w", err)
	}
	if c.Proxy.FeePPM < 0 || c.Proxy.FeePPM > offers.MaxFeePPM {
		return fmt.Errorf("proxy.fee_ppm: %d must be from 0 to %d", c.Proxy.FeePPM, offers.MaxFeePPM)
	}
	if c.Proxy.Attempts < 1 || c.Proxy.Attempts > 10 {
		return fmt.Errorf("proxy.attempts: %d must be from 1 to 10", c.Proxy.Attempts)
	}
	if c.Proxy.FirstChunkTimeout.D() <= 0 || c.Proxy.CheckInterval.D() <= 0 || c.Proxy.ChunkTimeout.D() <= 0 {
		return errors.New("proxy.first_chunk_timeout and proxy.check_interval must be positive")
	}
	if c.Proxy.MaxRequestsPerClient < 1 {
		return fmt.Errorf("proxy.max_requests_per_client: %d must be positive", c.Proxy.MaxRequestsPerClient)
	}
	if c.Proxy.ClientShare < 1 || c.Proxy.ClientShare > 100 {
		return fmt.Errorf("proxy.client_share: %d must be a percentage from 1 to 100", c.Proxy.ClientShare)
	}
	if c.Proxy.ClientWriteTimeout.D() <= 0 {
		return errors.New("proxy.client_write_timeout must be positive")
	}
	if len(c.P2P.Listen) == 0 {
		return errors.New("p2p.listen: a proxy must listen")
	}
	return nil
}

func (c *Config) validateClient() error {
	if len(c.Client.Proxies) == 0 && c.Discovery.Root == "" && len(c.Discovery.Bootstrap) == 0 {
		return errors.New("client.proxies: a client needs a way to find proxies: discovery.root (--root), discovery.bootstrap (--bootstrap) or a proxy address (--proxy)")
	}
	if _, err := discovery.ParseAddrs(c.Client.Proxies); err != nil {
		return fmt.Errorf("client.proxies: %w", err)
	}
	if err := checkAPIAddr(c.Client.APIAddr, c.Client.APIKey); err != nil {
		return err
	}
	if err := checkHosts(c.Client.AllowedHosts); err != nil {
		return fmt.Errorf("client.allowed_hosts: %w", err)
	}
	if err := checkOrigins(c.Client.AllowedOrigins); err != nil {
		return fmt.Errorf("client.allowed_origins: %w", err)
	}
	if len(c.Client.AllowedOrigins) > 0 && c.Client.APIKey == "" {
		return errors.New("client.allowed_origins: web apps may use the API only with an API key " +
			"(client.api_key_file, --api-key-file or COCOON_API_KEY); without one any page could")
	}
	if c.Client.MaxConnections < 1 {
		return fmt.Errorf("client.max_connections: %d must be at least 1", c.Client.MaxConnections)
	}
	if c.Client.MaxPrice < 0 {
		return fmt.Errorf("client.max_price: %d must be 0 (no limit) or more", c.Client.MaxPrice)
	}
	if c.Client.MinTrust != "" {
		if _, err := attest.ParseTier(c.Client.MinTrust); err != nil {
			return fmt.Errorf("client.min_trust: %w (or empty for any)", err)
		}
	}
	if c.Client.MinProxyTrust != "" {
		if _, err := attest.ParseTier(c.Client.MinProxyTrust); err != nil {
			return fmt.Errorf("client.min_proxy_trust: %w (or empty for any proxy, with or without evidence)", err)
		}
	}
	if c.Client.RequestTimeout.D() <= 0 || c.Client.CheckInterval.D() <= 0 {
		return errors.New("client.request_timeout and client.check_interval must be positive")
	}
	return nil
}

func (d Discovery) validate() error {
	if d.Root != "" {
		if _, err := ParseRoot(d.Root); err != nil {
			return fmt.Errorf("discovery.root: %w", err)
		}
	}
	if _, err := discovery.ParseAddrs(d.Bootstrap); err != nil {
		return fmt.Errorf("discovery.bootstrap: %w", err)
	}
	if d.RefreshInterval.D() < time.Second || d.LookupInterval.D() < 100*time.Millisecond {
		return errors.New("discovery.refresh_interval must be at least 1s and discovery.lookup_interval at least 100ms")
	}
	if d.MaxFound < 1 || d.MaxFound > 1024 {
		return fmt.Errorf("discovery.max_found: %d must be from 1 to 1024", d.MaxFound)
	}
	return nil
}

func (g Gossip) validate() error {
	if g.PeerRate < 1 || g.PeerRate > 100_000 {
		return fmt.Errorf("gossip.peer_rate: %g must be from 1 to 100000 offers a second", g.PeerRate)
	}
	if g.BookSize < 16 || g.BookSize > 1_000_000 {
		return fmt.Errorf("gossip.book_size: %d must be from 16 to 1000000", g.BookSize)
	}
	if g.BookPerPeer < 1 || g.BookPerPeer > g.BookSize {
		return fmt.Errorf("gossip.book_per_peer: %d must be from 1 to gossip.book_size (%d)", g.BookPerPeer, g.BookSize)
	}
	return nil
}

// ParseRoot parses a root contract address, raw ("0:ab…") or
// user-friendly ("EQ…").
func ParseRoot(s string) (*address.Address, error) {
	if strings.Contains(s, ":") {
		return address.ParseRawAddr(s)
	}
	return address.ParseAddr(s)
}

// checkLoopback refuses an address beyond this machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address: the admin API is local only", addr)
	}
	return nil
}

// checkAPIAddr refuses to expose the API beyond loopback without a key.
func checkAPIAddr(addr, key string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("client.api_addr: %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip != nil && ip.IsLoopback() {
		return nil
	}
	if key == "" {
		return fmt.Errorf("client.api_addr: %q is not a loopback address; set an API key (--api-key-file, client.api_key_file or COCOON_API_KEY) to expose the API", addr)
	}
	return nil
}

// checkHosts refuses a host that is not a bare name or IP.
func checkHosts(hosts []string) error {
	for _, h := range hosts {
		name := strings.TrimSuffix(h, ".")
		if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
			continue
		}
		if name == "" || len(name) > 253 || strings.ContainsFunc(name, func(r rune) bool {
			return !(r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) {
			return fmt.Errorf("%q is not a host name or IP (give the name alone, without scheme, port or path)", h)
		}
	}
	return nil
}

// checkOrigins refuses what a browser never sends as an Origin.
func checkOrigins(origins []string) error {
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || o == "*" || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
			return fmt.Errorf("%q is not an exact origin: give scheme://host[:port], as the browser's Origin header, e.g. https://app.example", o)
		}
	}
	return nil
}

// MaxSecretBytes caps a secret file.
const MaxSecretBytes = 4 << 10

// ReadSecret reads a secret from a file only its owner can read: at most
// MaxSecretBytes, surrounding space trimmed, not empty.
func ReadSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return "", fmt.Errorf("%s can be read by other users (mode %04o): chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > MaxSecretBytes {
		return "", fmt.Errorf("%s is over %d bytes: not a key", path, MaxSecretBytes)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// Duration is a time.Duration written as "1m30s" in TOML.
type Duration time.Duration

// D is the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads "1m30s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
