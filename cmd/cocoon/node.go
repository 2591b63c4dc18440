package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// findConfig returns the value of --config (or -config) in args, if any.
func findConfig(args []string) string {
	for i, a := range args {
		for _, p := range []string{"--config", "-config"} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return ""
}

// loadConfig builds a role's configuration: defaults, then the TOML file,
// then flags, then the environment (secrets and paths).
func loadConfig(role config.Role, args []string, getenv func(string) string, stderr io.Writer) (config.Config, string, error) {
	cfg := config.Default(role)
	path := findConfig(args)
	if path == "" {
		path = getenv("COCOON_CONFIG")
	}
	if path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return cfg, "", err
		}
	}
	fs := flag.NewFlagSet(role.String(), flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", path, "TOML configuration file (env COCOON_CONFIG)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory: identity key and state (env COCOON_DATA_DIR; default ~/.cocoon/<role>)")
	fs.StringVar(&cfg.Network, "network", cfg.Network, "network name: mainnet, testnet or local")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	var listen stringList
	fs.Var(&listen, "listen", "libp2p listen multiaddr (repeatable; default loopback TCP and QUIC)")
	fs.StringVar(&cfg.Attest.Issuer, "issuer", cfg.Attest.Issuer, "evidence this node presents: dev (local networks), tdx (a TDX quote; run in a TDX guest), or none (clients, and proxies without TEE hardware)")
	fs.BoolVar(&cfg.Attest.GPU, "gpu", cfg.Attest.GPU, "with --issuer tdx: add NVIDIA confidential-computing evidence of the GPUs (tier tee-gpu)")
	fs.StringVar(&cfg.Discovery.Root, "root", cfg.Discovery.Root, "the network's root contract address on TON: nodes find each other through it")
	fs.StringVar(&cfg.Discovery.GlobalConfig, "global-config", cfg.Discovery.GlobalConfig, "TON global config file or URL to read the root contract with (default: ton.org's for mainnet and testnet)")
	var workers, proxies, models, embeddingModels, bootstrap, allowedHosts, allowedOrigins stringList
	fs.Var(&bootstrap, "bootstrap", "more peers to join the DHT through, multiaddrs ending in /p2p/<id> (repeatable)")
	switch role {
	case config.RoleWorker:
		fs.StringVar(&cfg.Worker.Backend, "backend", cfg.Worker.Backend, "engine backend: sim or openai")
		fs.StringVar(&cfg.Worker.OpenAI.URL, "engine-url", cfg.Worker.OpenAI.URL, "OpenAI-compatible engine base URL (backend openai), e.g. http://127.0.0.1:8000/v1")
		fs.StringVar(&cfg.Worker.OpenAI.Socket, "engine-socket", cfg.Worker.OpenAI.Socket, "unix socket the engine listens on (backend openai); --engine-url then gives only the path")
		fs.Var(&models, "model", "model to serve (repeatable): sim model IDs, or the engine's models to announce")
		fs.Var(&embeddingModels, "embedding-model", "engine model to serve /v1/embeddings for (repeatable; backend openai); also --model to serve chat with it too")
		fs.IntVar(&cfg.Worker.MaxConcurrent, "max-concurrent", cfg.Worker.MaxConcurrent, "requests served at once")
		fs.Var(&proxies, "proxy", "proxy multiaddr ending in /p2p/<id> to join (repeatable); it finds this worker from its offers")
		fs.BoolVar(&cfg.P2P.Private, "private", cfg.P2P.Private, "behind NAT with no open port: be reached through relay slots on the proxies")
		ttft := fs.Duration("sim-ttft", cfg.Worker.Sim.TTFT.D(), "sim backend: time to first token")
		fs.Float64Var(&cfg.Worker.Sim.TokensPerSec, "sim-tps", cfg.Worker.Sim.TokensPerSec, "sim backend: tokens per second (0: as fast as possible)")
		fs.IntVar(&cfg.Worker.Sim.Chunks, "sim-chunks", cfg.Worker.Sim.Chunks, "sim backend: answer with exactly this many chunks (benchmark shape)")
		fs.IntVar(&cfg.Worker.Sim.ChunkBytes, "sim-chunk-bytes", cfg.Worker.Sim.ChunkBytes, "sim backend: bytes per chunk (benchmark shape)")
		defer func() { cfg.Worker.Sim.TTFT = config.Duration(*ttft) }()
	case config.RoleProxy:
		fs.Var(&workers, "worker", "worker multiaddr ending in /p2p/<id> (repeatable)")
		fs.IntVar(&cfg.Proxy.Attempts, "attempts", cfg.Proxy.Attempts, "workers a request may try before its first chunk")
		fs.Int64Var(&cfg.Proxy.FeePPM, "fee-ppm", cfg.Proxy.FeePPM, "fee added to workers' prices, in millionths (the root contract caps it)")
	case config.RoleClient:
		fs.Var(&proxies, "proxy", "proxy multiaddr ending in /p2p/<id> (repeatable)")
		fs.StringVar(&cfg.Client.APIAddr, "api-addr", cfg.Client.APIAddr, "OpenAI API listen address; non-loopback needs an API key (--api-key-file or COCOON_API_KEY)")
		fs.StringVar(&cfg.Client.APIKeyFile, "api-key-file", cfg.Client.APIKeyFile, "file holding the API key required from apps, mode 0600 (env COCOON_API_KEY overrides it)")
		fs.StringVar(&cfg.Client.APIKey, "api-key", "", "API key required from apps; every local user sees it in ps: prefer --api-key-file or COCOON_API_KEY")
		fs.Var(&allowedHosts, "allowed-host", "host name apps may reach the API by, besides loopback and --api-addr's host (repeatable)")
		fs.Var(&allowedOrigins, "allowed-origin", "exact origin of a web app allowed to call the API from a browser, with the API key, e.g. https://app.example (repeatable)")
		fs.Int64Var(&cfg.Client.MaxPrice, "max-price", cfg.Client.MaxPrice, "most to pay in nanoTON per million prompt+completion tokens, proxy fee included (0: no limit)")
		fs.StringVar(&cfg.Client.MinTrust, "min-trust", cfg.Client.MinTrust, "weakest trust tier a serving worker may have: tee-gpu, tee or dev (default: any)")
		fs.StringVar(&cfg.Client.MinProxyTrust, "min-proxy-trust", cfg.Client.MinProxyTrust,
			"weakest trust tier a proxy may have: tee-gpu, tee or dev (default: any, with or without evidence; requests are sealed to workers either way)")
		timeout := fs.Duration("request-timeout", cfg.Client.RequestTimeout.D(), "how long to wait for the first chunk before answering 504")
		defer func() { cfg.Client.RequestTimeout = config.Duration(*timeout) }()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if len(listen) > 0 {
		cfg.P2P.Listen = listen
	}
	if len(workers) > 0 {
		cfg.Proxy.Workers = workers
	}
	if len(bootstrap) > 0 {
		cfg.Discovery.Bootstrap = bootstrap
	}
	if len(allowedHosts) > 0 {
		cfg.Client.AllowedHosts = allowedHosts
	}
	if len(allowedOrigins) > 0 {
		cfg.Client.AllowedOrigins = allowedOrigins
	}
	if len(proxies) > 0 {
		cfg.Client.Proxies = proxies
		cfg.Worker.Proxies = proxies
	}
	if len(models) > 0 {
		cfg.Worker.Sim.Models = models
		cfg.Worker.OpenAI.Models = models
	}
	if len(embeddingModels) > 0 {
		cfg.Worker.OpenAI.EmbeddingModels = embeddingModels
	}
	if v := getenv("COCOON_DATA_DIR"); v != "" {
		cfg.DataDir = v
	}
	if cfg.DataDir == "" {
		home := getenv("HOME")
		if home == "" {
			return cfg, "", fmt.Errorf("data_dir: not set and HOME is empty; pass --data-dir")
		}
		cfg.DataDir = filepath.Join(home, ".cocoon", role.String())
	}
	if err := clientKey(&cfg, fs, getenv, stderr); err != nil {
		return cfg, "", err
	}
	if v := getenv("COCOON_ENGINE_API_KEY"); v != "" {
		cfg.Worker.OpenAI.APIKey = v
	}
	return cfg, *logLevel, nil
}

// clientKey sets the client's API key from, in this order, COCOON_API_KEY,
// client.api_key_file (--api-key-file) or --api-key, which it warns about:
// argv is readable by every user of the machine.
func clientKey(cfg *config.Config, fs *flag.FlagSet, getenv func(string) string, stderr io.Writer) error {
	flagged := false
	fs.Visit(func(f *flag.Flag) { flagged = flagged || f.Name == "api-key" })
	if flagged {
		if cfg.Client.APIKeyFile != "" {
			return usageError{"give the API key once: --api-key or --api-key-file (client.api_key_file)"}
		}
		fmt.Fprintln(stderr, "warning: --api-key shows the key to every user of this machine (ps, /proc); use --api-key-file or COCOON_API_KEY")
	}
	if v := getenv("COCOON_API_KEY"); v != "" {
		cfg.Client.APIKey = v
		return nil
	}
	if cfg.Client.APIKeyFile == "" {
		return nil
	}
	key, err := config.ReadSecret(cfg.Client.APIKeyFile)
	if err != nil {
		return fmt.Errorf("client.api_key_file: %w", err)
	}
	cfg.Client.APIKey = key
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runNode(ctx context.Context, name string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	role, err := config.ParseRole(name)
	if err != nil {
		return err
	}
	cfg, level, err := loadConfig(role, args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, level)
	if err != nil {
		return err
	}
	reload := func() (config.Config, error) {
		c, _, err := loadConfig(role, args, getenv, io.Discard)
		return c, err
	}
	n, err := node.New(cfg, log, node.WithReload(reload))
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintf(stdout, "%s %s on network %q\n", role, n.ID(), cfg.Network)
	for _, a := range n.Addrs() {
		fmt.Fprintf(stdout, "  listening on %s\n", a)
	}
	if role == config.RoleClient {
		fmt.Fprintf(stdout, "  OpenAI API on http://%s/v1\n", n.APIAddr())
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if waitReady(rctx, n) {
			fmt.Fprintln(stdout, "ready")
		} else if ctx.Err() == nil {
			fmt.Fprintln(stdout, "no proxy with models yet; still trying")
		}
		cancel()
	}
	// SIGHUP reloads the configuration, as `cocoon reload` does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			res, err := n.Reload(ctx)
			if err != nil {
				log.Error("reload failed; the node keeps its settings", "err", err)
				continue
			}
			printReloaded(stdout, res)
			continue
		case <-ctx.Done():
		}
		break
	}
	fmt.Fprintln(stdout, "shutting down")
	return n.Close()
}

func waitReady(ctx context.Context, n *node.Node) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n.Ready(ctx) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}
