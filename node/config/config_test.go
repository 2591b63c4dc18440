package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/payments"
)

func TestRole(t *testing.T) {
	for _, r := range []config.Role{config.RoleWorker, config.RoleProxy, config.RoleClient} {
		got, err := config.ParseRole(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), got, err)
		}
	}
	if got := config.Role(0).String(); got != "role(0)" {
		t.Errorf("zero role prints %q", got)
	}
	for _, s := range []string{"", "Worker", "role(0)", "relay", " proxy"} {
		if r, err := config.ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) = %v, want an error", s, r)
		}
	}
}

const (
	workerAddr = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"
	proxyAddr  = "/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
)

// validConfig is the default configuration of role, completed with what
// the role must be told.
func validConfig(role config.Role) config.Config {
	c := config.Default(role)
	c.DataDir = "/var/lib/cocoon"
	c.Proxy.Workers = []string{workerAddr}
	c.Client.Proxies = []string{proxyAddr}
	return c
}

// tdxEngine makes a worker present TDX evidence and serve the engine at
// url (through socket, if not empty).
func tdxEngine(url, socket string) func(*config.Config) {
	return func(c *config.Config) {
		c.Attest.Issuer = "tdx"
		c.Worker.Backend, c.Worker.OpenAI.URL, c.Worker.OpenAI.Socket = "openai", url, socket
	}
}

func TestValidate(t *testing.T) {
	type change = func(*config.Config)
	tests := []struct {
		name   string
		role   config.Role
		change change
		want   string // the setting the error names; "" means valid
	}{
		{"worker defaults", config.RoleWorker, func(*config.Config) {}, ""},
		{"proxy defaults", config.RoleProxy, func(*config.Config) {}, ""},
		{"client defaults", config.RoleClient, func(*config.Config) {}, ""},

		{"no role", config.RoleWorker, func(c *config.Config) { c.Role = 0 }, "role"},
		{"unknown role", config.RoleWorker, func(c *config.Config) { c.Role = 9 }, "role"},
		{"bad network", config.RoleWorker, func(c *config.Config) { c.Network = "Main Net" }, "network"},
		{"no network", config.RoleWorker, func(c *config.Config) { c.Network = "" }, "network"},
		{"no data dir", config.RoleWorker, func(c *config.Config) { c.DataDir = "" }, "data_dir"},
		{"bad listen address", config.RoleWorker, func(c *config.Config) { c.P2P.Listen = []string{"tcp:4001"} }, "p2p.listen"},
		{"bad stream limits", config.RoleWorker, func(c *config.Config) { c.P2P.MaxStreamsPerPeer = 0 }, "p2p.max_streams_per_peer"},
		{"bad connection limits", config.RoleWorker, func(c *config.Config) { c.P2P.ConnsLow = 0 }, "p2p.conns_low"},
		{"tdx issuer", config.RoleWorker, func(c *config.Config) { c.Attest.Issuer = "tdx" }, ""},
		{"unknown issuer", config.RoleWorker, func(c *config.Config) { c.Attest.Issuer = "sev-snp" }, "attest.issuer"},
		{"dev issuer on a network without dev", config.RoleWorker, func(c *config.Config) { c.Attest.AllowDev = false }, "attest.issuer"},
		{"tdx issuer without dev", config.RoleWorker, func(c *config.Config) { c.Attest.Issuer, c.Attest.AllowDev = "tdx", false }, ""},
		{"gpu without tdx", config.RoleWorker, func(c *config.Config) { c.Attest.GPU = true }, "attest.gpu"},
		{"gpu with tdx", config.RoleWorker, func(c *config.Config) { c.Attest.GPU, c.Attest.Issuer = true, "tdx" }, ""},
		{"collateral garbage", config.RoleWorker, func(c *config.Config) { c.Attest.Collateral = "maybe" }, "attest.collateral"},
		{"mainnet with allow_dev", config.RoleWorker, func(c *config.Config) { c.Network = "mainnet" }, "attest.allow_dev"},
		{"validity too short", config.RoleWorker, func(c *config.Config) { c.Attest.Validity = config.Duration(59 * time.Second) }, "attest.validity"},
		{"validity too long", config.RoleWorker, func(c *config.Config) { c.Attest.Validity = config.Duration(25 * time.Hour) }, "attest.validity"},
		{"validity at the bounds", config.RoleWorker, func(c *config.Config) { c.Attest.Validity = config.Duration(24 * time.Hour) }, ""},

		{"worker max_concurrent", config.RoleWorker, func(c *config.Config) { c.Worker.MaxConcurrent = 0 }, "worker.max_concurrent"},
		{"worker sim without models", config.RoleWorker, func(c *config.Config) { c.Worker.Sim.Models = nil }, "worker.sim.models"},
		{"worker sim negative ttft", config.RoleWorker, func(c *config.Config) { c.Worker.Sim.TTFT = config.Duration(-time.Second) }, "worker.sim"},
		{"worker sim chunks alone", config.RoleWorker, func(c *config.Config) { c.Worker.Sim.Chunks = 50 }, "worker.sim"},
		{"worker sim chunk too big", config.RoleWorker, func(c *config.Config) { c.Worker.Sim.Chunks, c.Worker.Sim.ChunkBytes = 1, 1<<20 }, "worker.sim.chunk_bytes"},
		{"worker openai without url", config.RoleWorker, func(c *config.Config) { c.Worker.Backend = "openai" }, "worker.openai.url"},
		{"worker openai", config.RoleWorker, func(c *config.Config) {
			c.Worker.Backend, c.Worker.OpenAI.URL = "openai", "http://127.0.0.1:8000/v1"
		}, ""},
		{"tdx worker, engine on loopback", config.RoleWorker, tdxEngine("http://127.0.0.1:8000/v1", ""), ""},
		{"tdx worker, engine on IPv6 loopback", config.RoleWorker, tdxEngine("http://[::1]:8000/v1", ""), ""},
		{"tdx worker, engine on localhost", config.RoleWorker, tdxEngine("http://localhost:8000/v1", ""), ""},
		{"tdx worker, engine on a unix socket", config.RoleWorker, tdxEngine("http://engine/v1", "/run/vllm.sock"), ""},
		{"tdx worker, engine on another machine", config.RoleWorker, tdxEngine("http://10.0.0.7:8000/v1", ""), "worker.openai.url"},
		{"tdx worker, engine by a remote name", config.RoleWorker, tdxEngine("https://engine.example.com/v1", ""), "worker.openai.url"},
		{"tdx worker, engine on all interfaces", config.RoleWorker, tdxEngine("http://0.0.0.0:8000/v1", ""), "worker.openai.url"},
		{"dev worker, engine on another machine", config.RoleWorker, func(c *config.Config) {
			c.Worker.Backend, c.Worker.OpenAI.URL = "openai", "http://10.0.0.7:8000/v1"
		}, ""},
		{"worker unknown backend", config.RoleWorker, func(c *config.Config) { c.Worker.Backend = "vllm" }, "worker.backend"},
		{"worker not listening", config.RoleWorker, func(c *config.Config) { c.P2P.Listen = nil }, "p2p.listen"},
		{"worker ignores client settings", config.RoleWorker, func(c *config.Config) { c.Client.APIAddr = "0.0.0.0:1" }, ""},

		{"proxy without workers: they join it", config.RoleProxy, func(c *config.Config) { c.Proxy.Workers = nil }, ""},
		{"worker proxy address garbage", config.RoleWorker, func(c *config.Config) { c.Worker.Proxies = []string{"proxy:4001"} }, "worker.proxies"},
		{"worker check interval zero", config.RoleWorker, func(c *config.Config) { c.Worker.CheckInterval = 0 }, "worker.check_interval"},
		{"gossip interval too short", config.RoleWorker, func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(time.Millisecond) }, "gossip.announce_interval"},
		{"no gossip peer rate", config.RoleProxy, func(c *config.Config) { c.Gossip.PeerRate = 0 }, "gossip.peer_rate"},
		{"book too small", config.RoleProxy, func(c *config.Config) { c.Gossip.BookSize = 1 }, "gossip.book_size"},
		{"per-peer share over the book", config.RoleProxy, func(c *config.Config) { c.Gossip.BookPerPeer = c.Gossip.BookSize + 1 }, "gossip.book_per_peer"},
		{"no found proxies kept", config.RoleClient, func(c *config.Config) { c.Discovery.MaxFound = 0 }, "discovery.max_found"},
		{"worker price negative", config.RoleWorker, func(c *config.Config) { c.Worker.Price.Prompt = -1 }, "worker.price"},
		{"proxy worker address garbage", config.RoleProxy, func(c *config.Config) { c.Proxy.Workers = []string{"worker-1:4001"} }, "proxy.workers"},
		{"proxy worker address without /p2p", config.RoleProxy, func(c *config.Config) { c.Proxy.Workers = []string{"/ip4/127.0.0.1/tcp/4001"} }, "proxy.workers"},
		{"proxy attempts zero", config.RoleProxy, func(c *config.Config) { c.Proxy.Attempts = 0 }, "proxy.attempts"},
		{"proxy attempts eleven", config.RoleProxy, func(c *config.Config) { c.Proxy.Attempts = 11 }, "proxy.attempts"},
		{"proxy max requests per client zero", config.RoleProxy, func(c *config.Config) { c.Proxy.MaxRequestsPerClient = 0 }, "proxy.max_requests_per_client"},
		{"proxy client share over 100", config.RoleProxy, func(c *config.Config) { c.Proxy.ClientShare = 101 }, "proxy.client_share"},
		{"proxy client write timeout zero", config.RoleProxy, func(c *config.Config) { c.Proxy.ClientWriteTimeout = 0 }, "proxy.client_write_timeout"},
		{"relay circuits per peer over the max", config.RoleProxy, func(c *config.Config) { c.P2P.RelayCircuitsPerPeer = c.P2P.RelayMaxCircuits + 1 }, "relay_circuits_per_peer"},
		{"proxy first chunk timeout", config.RoleProxy, func(c *config.Config) { c.Proxy.FirstChunkTimeout = 0 }, "proxy.first_chunk_timeout"},
		{"proxy check interval", config.RoleProxy, func(c *config.Config) { c.Proxy.CheckInterval = config.Duration(-time.Second) }, "proxy.check_interval"},
		{"proxy not listening", config.RoleProxy, func(c *config.Config) { c.P2P.Listen = nil }, "p2p.listen"},

		{"client without proxies", config.RoleClient, func(c *config.Config) { c.Client.Proxies = nil }, "client.proxies"},
		{"client proxy address garbage", config.RoleClient, func(c *config.Config) { c.Client.Proxies = []string{"proxy.example.com"} }, "client.proxies"},
		{"client proxy address without /p2p", config.RoleClient, func(c *config.Config) { c.Client.Proxies = []string{"/ip4/127.0.0.1/tcp/4002"} }, "client.proxies"},
		{"client api_addr without port", config.RoleClient, func(c *config.Config) { c.Client.APIAddr = "127.0.0.1" }, "client.api_addr"},
		{"client api_addr on every interface", config.RoleClient, func(c *config.Config) { c.Client.APIAddr = ":10000" }, "client.api_addr"},
		{"client api_addr 0.0.0.0", config.RoleClient, func(c *config.Config) { c.Client.APIAddr = "0.0.0.0:10000" }, "client.api_addr"},
		{"client api_addr LAN", config.RoleClient, func(c *config.Config) { c.Client.APIAddr = "192.168.1.5:10000" }, "client.api_addr"},
		{"client api_addr lookalike", config.RoleClient, func(c *config.Config) { c.Client.APIAddr = "localhost.example.com:10000" }, "client.api_addr"},
		{"client api_addr LAN with key", config.RoleClient, func(c *config.Config) {
			c.Client.APIAddr, c.Client.APIKey = "0.0.0.0:10000", "sk-test"
		}, ""},
		{"client api_addr localhost", config.RoleClient, func(c *config.Config) { c.Client.APIAddr = "localhost:10000" }, ""},
		{"client api_addr IPv6 loopback", config.RoleClient, func(c *config.Config) { c.Client.APIAddr = "[::1]:10000" }, ""},
		{"client api_addr other loopback", config.RoleClient, func(c *config.Config) { c.Client.APIAddr = "127.0.0.2:0" }, ""},
		{"allowed origins need a key", config.RoleClient, func(c *config.Config) { c.Client.AllowedOrigins = []string{"https://app.example"} }, "client.allowed_origins"},
		{"allowed origin with a key", config.RoleClient, func(c *config.Config) {
			c.Client.AllowedOrigins, c.Client.APIKey = []string{"https://app.example", "http://localhost:5173"}, "sk-test"
		}, ""},
		{"allowed origin *", config.RoleClient, func(c *config.Config) { c.Client.AllowedOrigins, c.Client.APIKey = []string{"*"}, "sk-test" }, "client.allowed_origins"},
		{"allowed origin with a path", config.RoleClient, func(c *config.Config) {
			c.Client.AllowedOrigins, c.Client.APIKey = []string{"https://app.example/"}, "sk-test"
		}, "client.allowed_origins"},
		{"allowed origin without scheme", config.RoleClient, func(c *config.Config) {
			c.Client.AllowedOrigins, c.Client.APIKey = []string{"app.example"}, "sk-test"
		}, "client.allowed_origins"},
		{"allowed hosts", config.RoleClient, func(c *config.Config) { c.Client.AllowedHosts = []string{"gpu-box.lan", "192.0.2.7", "::1"} }, ""},
		{"allowed host with a port", config.RoleClient, func(c *config.Config) { c.Client.AllowedHosts = []string{"gpu-box.lan:10000"} }, "client.allowed_hosts"},
		{"allowed host a URL", config.RoleClient, func(c *config.Config) { c.Client.AllowedHosts = []string{"http://gpu-box.lan"} }, "client.allowed_hosts"},
		{"client request timeout", config.RoleClient, func(c *config.Config) { c.Client.RequestTimeout = 0 }, "client.request_timeout"},
		{"client negative max price", config.RoleClient, func(c *config.Config) { c.Client.MaxPrice = -1 }, "client.max_price"},
		{"client min trust unknown", config.RoleClient, func(c *config.Config) { c.Client.MinTrust = "tdx" }, "client.min_trust"},
		{"client min trust any", config.RoleClient, func(c *config.Config) { c.Client.MinTrust = "any" }, "client.min_trust"},
		{"client min trust tee-gpu", config.RoleClient, func(c *config.Config) { c.Client.MinTrust = "tee-gpu" }, ""},
		{"client min trust dev", config.RoleClient, func(c *config.Config) { c.Client.MinTrust = "dev" }, ""},
		{"proxy fee too high", config.RoleProxy, func(c *config.Config) { c.Proxy.FeePPM = 500_001 }, "proxy.fee_ppm"},
		{"client check interval", config.RoleClient, func(c *config.Config) { c.Client.CheckInterval = 0 }, "client.check_interval"},
		{"client needs no listener", config.RoleClient, func(c *config.Config) { c.P2P.Listen = nil }, ""},
		{"client with only a root contract", config.RoleClient, func(c *config.Config) {
			c.Client.Proxies, c.Discovery.Root = nil, "0:"+strings.Repeat("ab", 32)
		}, ""},
		{"client with only bootstrap peers", config.RoleClient, func(c *config.Config) {
			c.Client.Proxies, c.Discovery.Bootstrap = nil, c.Client.Proxies
		}, ""},

		{"root not an address", config.RoleWorker, func(c *config.Config) { c.Discovery.Root = "EQnotanaddress" }, "discovery.root"},
		{"root raw address", config.RoleWorker, func(c *config.Config) { c.Discovery.Root = "0:" + strings.Repeat("ab", 32) }, ""},
		{"bootstrap without /p2p", config.RoleWorker, func(c *config.Config) { c.Discovery.Bootstrap = []string{"/ip4/127.0.0.1/tcp/4002"} }, "discovery.bootstrap"},
		{"lookup interval zero", config.RoleWorker, func(c *config.Config) { c.Discovery.LookupInterval = 0 }, "discovery.lookup_interval"},
		{"private worker without listener", config.RoleWorker, func(c *config.Config) {
			c.P2P.Private, c.P2P.Listen, c.Worker.Proxies = true, nil, []string{"/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"}
		}, ""},
		{"private worker with no way to its proxies", config.RoleWorker, func(c *config.Config) { c.P2P.Private, c.P2P.Listen = true, nil }, "p2p.private"},
		{"private proxy", config.RoleProxy, func(c *config.Config) { c.P2P.Private = true }, "relay_service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(tt.role)
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("valid; want an error naming %s", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %s", err, tt.want)
			}
			if _, nerr := node.New(c, nil); nerr == nil {
				t.Fatal("node.New accepted a config Validate refuses")
			}
		})
	}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cocoon.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadFile(t *testing.T) {
	path := writeConfig(t, `
network = "testnet"
data_dir = "/srv/cocoon"

[p2p]
listen = ["/ip4/127.0.0.1/tcp/4001"]
max_streams = 100
max_streams_per_peer = 10

[attest]
validity = "30m"

[worker]
backend = "sim"
max_concurrent = 8

[worker.sim]
ttft = "250ms"
tokens_per_sec = 40.5
chunks = 50
chunk_bytes = 128

[proxy]
workers = ["`+workerAddr+`"]
first_chunk_timeout = "1m30s"

[client]
api_addr = "127.0.0.1:11000"
proxies = ["`+proxyAddr+`"]
request_timeout = "45s"
`)
	c := config.Default(config.RoleWorker)
	def := config.Default(config.RoleWorker)
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"network", c.Network, "testnet"},
		{"data_dir", c.DataDir, "/srv/cocoon"},
		{"p2p.listen replaced, not merged", c.P2P.Listen, []string{"/ip4/127.0.0.1/tcp/4001"}},
		{"p2p.max_streams", c.P2P.MaxStreams, 100},
		{"p2p.max_streams_per_peer", c.P2P.MaxStreamsPerPeer, 10},
		{"p2p.max_conns kept", c.P2P.MaxConns, def.P2P.MaxConns},
		{"attest.validity", c.Attest.Validity.D(), 30 * time.Minute},
		{"attest.issuer kept", c.Attest.Issuer, "dev"},
		{"worker.max_concurrent", c.Worker.MaxConcurrent, 8},
		{"worker.sim.ttft", c.Worker.Sim.TTFT.D(), 250 * time.Millisecond},
		{"worker.sim.tokens_per_sec", c.Worker.Sim.TokensPerSec, 40.5},
		{"worker.sim.chunks", c.Worker.Sim.Chunks, 50},
		{"worker.sim.chunk_bytes", c.Worker.Sim.ChunkBytes, 128},
		{"worker.sim.models kept", c.Worker.Sim.Models, def.Worker.Sim.Models},
		{"proxy.workers", c.Proxy.Workers, []string{workerAddr}},
		{"proxy.first_chunk_timeout", c.Proxy.FirstChunkTimeout.D(), 90 * time.Second},
		{"proxy.check_interval kept", c.Proxy.CheckInterval, def.Proxy.CheckInterval},
		{"client.api_addr", c.Client.APIAddr, "127.0.0.1:11000"},
		{"client.proxies", c.Client.Proxies, []string{proxyAddr}},
		{"client.request_timeout", c.Client.RequestTimeout.D(), 45 * time.Second},
		{"role kept", c.Role, config.RoleWorker},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("loaded config: %v", err)
	}
	// The sim config converts with its durations.
	if sc := c.Worker.Sim.Sim(); sc.TTFT != 250*time.Millisecond || sc.Chunks != 50 || sc.TokensPerSec != 40.5 {
		t.Errorf("Sim() = %+v", sc)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{"unknown top-level key", `netwrk = "local"`, "netwrk"},
		{"unknown nested key", "[worker.sim]\nttft_ms = 5", "worker.sim.ttft_ms"},
		{"unknown table", "[payments]\nchain = \"ton\"", "payments"},
		{"role is not a file setting", `role = "proxy"`, "role"},
		{"API key is not a file setting", "[client]\napi_key = \"sk-secret\"", "client.api_key"},
		{"engine key is not a file setting", "[worker.openai]\napi_key = \"sk-secret\"", "worker.openai.api_key"},
		{"bad duration", "[attest]\nvalidity = \"forever\"", "forever"},
		{"duration without unit", "[proxy]\nfirst_chunk_timeout = \"30\"", "30"},
		{"wrong type", "[worker]\nmax_concurrent = \"many\"", "max_concurrent"},
		{"not TOML", "network = ", "cocoon.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default(config.RoleClient)
			err := c.LoadFile(writeConfig(t, tt.content))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
	c := config.Default(config.RoleClient)
	if err := c.LoadFile(filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Fatal("LoadFile of a missing file succeeded")
	}
}

func TestDuration(t *testing.T) {
	d := config.Duration(90 * time.Second)
	b, err := d.MarshalText()
	if err != nil || string(b) != "1m30s" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var back config.Duration
	if err := back.UnmarshalText(b); err != nil || back != d {
		t.Fatalf("UnmarshalText = %v, %v", back, err)
	}
	if d.String() != "1m30s" || d.D() != 90*time.Second {
		t.Fatalf("String %q, D %v", d.String(), d.D())
	}
	if err := back.UnmarshalText([]byte("1 minute")); err == nil {
		t.Fatal("accepted \"1 minute\"")
	}
}

// TestREADMEConfig loads the worker settings the README shows.
func TestREADMEConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.toml")
	os.WriteFile(path, []byte(`
[worker.price]
prompt = 100000000      # 0.1 TON per million prompt tokens
cached = 10000000
completion = 400000000

[gossip]
announce_interval = "10s"
`), 0o600)
	cfg := config.Default(config.RoleWorker)
	if err := cfg.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if cfg.Worker.Price != (payments.Price{Prompt: 100000000, Cached: 10000000, Completion: 400000000}) || cfg.Gossip.AnnounceInterval.D() != 10*time.Second {
		t.Fatalf("loaded %+v, %s", cfg.Worker.Price, cfg.Gossip.AnnounceInterval)
	}
}

// TestReadSecret: a key file is read trimmed, and refused with a reason
// when it is missing, empty, too big or readable by other users.
func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want, err string
	}{
		{"trimmed", write("ok", "  sk-local\n", 0o600), "sk-local", ""},
		{"owner read-only", write("ro", "sk-ro", 0o400), "sk-ro", ""},
		{"missing", filepath.Join(dir, "none"), "", "no such file"},
		{"empty", write("empty", " \n", 0o600), "", "empty"},
		{"world-readable", write("open", "sk-open", 0o644), "", "chmod 600"},
		{"group-readable", write("group", "sk-group", 0o640), "", "chmod 600"},
		{"too big", write("big", strings.Repeat("k", config.MaxSecretBytes+1), 0o600), "", "over 4096 bytes"},
		{"a directory", dir, "", "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.ReadSecret(tt.path)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want one saying %q", err, tt.err)
			}
		})
	}
}
