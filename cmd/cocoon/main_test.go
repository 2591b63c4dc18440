package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestCommands(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
		usage   bool // a command-line mistake: exit code 2
		out     string
	}{
		{[]string{"version"}, false, false, "cocoon dev"},
		{[]string{"help"}, false, false, "cocoon testnet"},
		{nil, true, true, ""},
		{[]string{"launch"}, true, true, ""},
		{[]string{"worker", "extra"}, true, true, ""},
		{[]string{"client", "-h"}, true, true, ""},
		{[]string{"worker", "--backend", "magic", "--data-dir", "/tmp/x"}, true, false, ""},
		{[]string{"client", "--root", "not-an-address", "--data-dir", "/tmp/x"}, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(t.Context(), tt.args, env(nil), &out, &errOut)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && (exitCode(err) == 2) != tt.usage {
				t.Errorf("exit code %d for %v", exitCode(err), err)
			}
			if !strings.Contains(out.String(), tt.out) {
				t.Errorf("output %q lacks %q", out.String(), tt.out)
			}
		})
	}
	if exitCode(flag.ErrHelp) != 2 || exitCode(errors.New("x")) != 1 {
		t.Error("exit codes: help is 2, failures are 1")
	}
}

// A node on a network with no public TON config cannot read its root
// contract without one, and says which setting is missing.
func TestRootNeedsGlobalConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"client", "--root", "0:" + strings.Repeat("ab", 32), "--data-dir", t.TempDir(),
		"--api-addr", "127.0.0.1:0"}, env(nil), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "discovery.global_config") {
		t.Fatalf("err = %v, want one naming discovery.global_config", err)
	}
}

// A node told to present a TDX quote on a machine that is not a TDX guest
// refuses to start, and says why.
func TestTDXIssuerWithoutTDX(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"worker", "--issuer", "tdx", "--data-dir", t.TempDir()}, env(nil), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no TDX guest interface") {
		t.Fatalf("err = %v, want one saying there is no TDX guest interface", err)
	}
}

// A worker with TDX evidence refuses an engine on another machine before
// it starts anything, and says how to fix it: the tee tier promises that
// a prompt stays inside the TD.
func TestTDXWorkerRemoteEngine(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"worker", "--issuer", "tdx", "--data-dir", t.TempDir(),
		"--backend", "openai", "--engine-url", "http://10.0.0.7:8000/v1"}, env(nil), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "worker.openai.url") || !strings.Contains(err.Error(), "outside this machine") ||
		!strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("err = %v, want one naming worker.openai.url as outside this machine, with the fix", err)
	}
}

// TestConfigPrecedence: defaults, then the file, then flags, then the
// environment.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "client.toml")
	os.WriteFile(file, []byte(`
network = "local"
[client]
api_addr = "127.0.0.1:1111"
proxies = ["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWNFpLXoNSakESamyTHGDZ2Ehj6m2SAwiMHyyNnrsHsZwf"]
request_timeout = "7s"
min_trust = "tee"
max_price = 900
`), 0o600)
	cfg, _, err := loadConfig(config.RoleClient, []string{"--config", file, "--api-addr", "127.0.0.1:2222", "--min-trust", "tee-gpu", "--min-proxy-trust", "tee"},
		env(map[string]string{"COCOON_API_KEY": "from-env", "COCOON_DATA_DIR": "/data/env", "HOME": "/home/x"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Client.APIAddr != "127.0.0.1:2222" {
		t.Errorf("api_addr = %s: the flag must win over the file", cfg.Client.APIAddr)
	}
	if cfg.Client.RequestTimeout.D() != 7*time.Second {
		t.Errorf("request_timeout = %s: the file must win over the default", cfg.Client.RequestTimeout)
	}
	if cfg.Client.MinTrust != "tee-gpu" || cfg.Client.MaxPrice != 900 {
		t.Errorf("min_trust %q, max_price %d: want the flag's tee-gpu and the file's 900", cfg.Client.MinTrust, cfg.Client.MaxPrice)
	}
	if cfg.Client.MinProxyTrust != "tee" || cfg.Attest.Issuer != "none" {
		t.Errorf("min_proxy_trust %q, issuer %q: want the flag's tee and a client's default, none", cfg.Client.MinProxyTrust, cfg.Attest.Issuer)
	}
	if len(cfg.Client.Proxies) != 1 {
		t.Errorf("proxies = %v, from the file", cfg.Client.Proxies)
	}
	if cfg.Client.APIKey != "from-env" || cfg.DataDir != "/data/env" {
		t.Errorf("api key %q, data dir %q: want the environment's", cfg.Client.APIKey, cfg.DataDir)
	}
	cfg, _, err = loadConfig(config.RoleWorker, nil, env(map[string]string{"HOME": "/home/x"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/home/x/.cocoon/worker" {
		t.Errorf("default data dir = %s", cfg.DataDir)
	}
	if _, _, err := loadConfig(config.RoleWorker, []string{"--config", filepath.Join(dir, "missing.toml")}, env(nil), io.Discard); err == nil {
		t.Error("a missing config file must be an error")
	}
}

// TestWorkerIdentityPersists runs the worker command twice on one data
// dir: same peer ID, key file 0600.
func TestWorkerIdentityPersists(t *testing.T) {
	dir := t.TempDir()
	idRe := regexp.MustCompile(`worker (12D3KooW\w+)`)
	start := func() string {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"worker", "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0"}, env(nil), &out, io.Discard)
		}()
		deadline := time.After(20 * time.Second)
		for !idRe.MatchString(out.String()) {
			select {
			case err := <-done:
				t.Fatalf("worker exited: %v (%s)", err, out.String())
			case <-deadline:
				t.Fatalf("worker printed no ID: %q", out.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("worker shutdown: %v", err)
		}
		return idRe.FindStringSubmatch(out.String())[1]
	}
	first, second := start(), start()
	if first != second {
		t.Errorf("peer ID changed across restarts: %s then %s", first, second)
	}
	st, err := os.Stat(filepath.Join(dir, "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("identity.key mode %v, want 0600", st.Mode().Perm())
	}
}

// TestTestnetCommand starts `cocoon testnet`, waits for "ready" and stops
// it as SIGINT would.
func TestTestnetCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"testnet", "--workers", "3", "--api-addr", "127.0.0.1:0"}, env(nil), &out, io.Discard)
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "ready") {
		select {
		case err := <-done:
			t.Fatalf("testnet exited: %v (%s)", err, out.String())
		case <-deadline:
			t.Fatalf("no ready line: %q", out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n := strings.Count(out.String(), "worker "); n < 3 {
		t.Errorf("expected three workers in %q", out.String())
	}
	for _, nd := range []string{"proxy 1", "worker 1", "worker 3", "client 1"} {
		if !regexp.MustCompile(`testnet: dashboard of ` + nd + `: http://127\.0\.0\.1:\d+/\?token=[0-9a-f]{64}\n`).MatchString(out.String()) {
			t.Errorf("no dashboard URL of %s in %q", nd, out.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("testnet did not shut down within 20 s of the signal")
	}
	if !strings.Contains(out.String(), "shutting down") {
		t.Errorf("no shutdown line in %q", out.String())
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestReloadCommand: a worker started from a file takes the file's new
// prices and capacity on `cocoon reload`, and says which changed settings
// wait for a restart.
func TestReloadCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "worker.toml")
	write := func(price, most int, network string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(fmt.Sprintf("network = %q\n[worker]\nmax_concurrent = %d\n[worker.price]\nprompt = %d\ncompletion = %d\n",
			network, most, price, 2*price)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(100, 8, "local")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"worker", "--config", file, "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0"}, env(nil), &out, io.Discard)
	}()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(out.String(), "listening on") {
		select {
		case err := <-done:
			t.Fatalf("worker exited: %v (%s)", err, out.String())
		case <-deadline:
			t.Fatalf("worker did not start: %q", out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	write(300, 2, "testnet")
	var got bytes.Buffer
	if err := run(t.Context(), []string{"reload", "--data-dir", dir}, env(nil), &got, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"applied: worker.max_concurrent, worker.prices", "next start: network"} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("reload printed %q, want %q", got.String(), want)
		}
	}
	got.Reset()
	if err := run(t.Context(), []string{"status", "--data-dir", dir, "--json"}, env(nil), &got, io.Discard); err != nil {
		t.Fatal(err)
	}
	var st admin.Status
	if err := json.Unmarshal(got.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Serving == nil || st.Serving.Capacity != 2 {
		t.Errorf("status after the reload: %+v, want capacity 2", st.Serving)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAPIKeyFile: the client's API key comes from a file only its owner
// reads (--api-key-file or client.api_key_file), or the environment; the
// key on argv, which every user sees in ps, still works with a warning.
// The running client then refuses apps without it.
func TestAPIKeyFile(t *testing.T) {
	dir := t.TempDir()
	secret := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("sk-from-file\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private, open := secret("key", 0o600), secret("open", 0o644)
	toml := filepath.Join(dir, "client.toml")
	if err := os.WriteFile(toml, []byte("[client]\napi_key_file = \""+private+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--data-dir", dir}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		key     string // want, when no error
		err     string // the error names this
		warning bool   // a warning about ps on stderr
	}{
		{"flag", []string{"--api-key-file", private}, nil, "sk-from-file", "", false},
		{"TOML", []string{"--config", toml}, nil, "sk-from-file", "", false},
		{"environment wins", []string{"--api-key-file", private}, map[string]string{"COCOON_API_KEY": "sk-env"}, "sk-env", "", false},
		{"argv, warned", []string{"--api-key", "sk-argv"}, nil, "sk-argv", "", true},
		{"argv and file", []string{"--api-key", "sk-argv", "--api-key-file", private}, nil, "", "--api-key-file", false},
		{"readable by others", []string{"--api-key-file", open}, nil, "", "client.api_key_file", false},
		{"missing", []string{"--api-key-file", filepath.Join(dir, "none")}, nil, "", "client.api_key_file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, _, err := loadConfig(config.RoleClient, append(tt.args, base...), env(tt.env), &stderr)
			if warned := strings.Contains(stderr.String(), "ps"); warned != tt.warning {
				t.Errorf("stderr %q: warning about ps %t, want %t", stderr.String(), warned, tt.warning)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil || cfg.Client.APIKey != tt.key {
				t.Fatalf("key %q, err %v; want %q", cfg.Client.APIKey, err, tt.key)
			}
		})
	}

	// The real client command, keyed from the file.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"client", "--data-dir", filepath.Join(dir, "node"), "--api-addr", "127.0.0.1:0", "--api-key-file", private,
			"--proxy", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWNFpLXoNSakESamyTHGDZ2Ehj6m2SAwiMHyyNnrsHsZwf"}, env(nil), &out, io.Discard)
	}()
	apiRe := regexp.MustCompile(`OpenAI API on (http://\S+)`)
	deadline := time.After(20 * time.Second)
	for !apiRe.MatchString(out.String()) {
		select {
		case err := <-done:
			t.Fatalf("client exited: %v (%s)", err, out.String())
		case <-deadline:
			t.Fatalf("client printed no API address: %q", out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	api := apiRe.FindStringSubmatch(out.String())[1]
	for _, tt := range []struct {
		key     string
		refused bool
	}{{"", true}, {"sk-wrong", true}, {"sk-from-file", false}} {
		req, _ := http.NewRequestWithContext(ctx, "GET", api+"/models", nil)
		if tt.key != "" {
			req.Header.Set("Authorization", "Bearer "+tt.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// With no proxy reachable, the right key gets past the key check
		// to 503.
		if got := resp.StatusCode; tt.refused != (got == http.StatusUnauthorized) {
			t.Errorf("key %q: status %d, refused %t", tt.key, got, tt.refused)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("client shutdown: %v", err)
	}
}
