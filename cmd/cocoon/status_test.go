package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

func TestStatusCommand(t *testing.T) {
	h := testnet.New(t)
	w := h.AddWorker()
	p := h.AddProxy()
	client := h.AddClient()
	chatOnce(t, client)

	// The proxy's status, found through its data dir, names the worker and
	// the request it routed.
	var out bytes.Buffer
	if err := run(t.Context(), []string{"status", "--data-dir", p.DataDir()}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"proxy " + p.ID().String(), "workers routed to", w.ID().String(), "ready: true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	// The worker's, as JSON, counts what it served.
	out.Reset()
	if err := run(t.Context(), []string{"status", "--admin", w.AdminURL(), "--data-dir", w.DataDir(), "--json"}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var s admin.Status
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Role != "worker" || s.Serving == nil || s.Serving.Served != 1 || s.Tier != "dev" {
		t.Fatalf("worker status %+v", s)
	}

	// Prometheus metrics from the proxy.
	req, _ := http.NewRequest("GET", p.AdminURL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+p.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `cocoon_proxy_worker_requests_total{worker="` + w.ID().String() + `"} 1`
	if !strings.Contains(string(metrics), want) || !strings.Contains(string(metrics), "cocoon_ready 1") {
		t.Fatalf("metrics lack %q or cocoon_ready 1:\n%s", want, metrics)
	}

	// No node at all: a clear error.
	if err := run(t.Context(), []string{"status", "--data-dir", t.TempDir()}, env(nil), io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "no running node found") {
		t.Fatalf("status without a node: %v", err)
	}
}

func TestConfigInit(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/worker.toml"
	var out bytes.Buffer
	if err := run(t.Context(), []string{"config", "init", "--role", "worker", "--out", path}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	// The file it wrote is a valid worker configuration...
	cfg, _, err := loadConfig(config.RoleWorker, []string{"--config", path, "--data-dir", dir}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// ...and it is never overwritten.
	if err := run(t.Context(), []string{"config", "init", "--role", "worker", "--out", path}, env(nil), io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "exists") {
		t.Fatalf("second init: %v, want a refusal to overwrite", err)
	}
	for _, args := range [][]string{{"config"}, {"config", "init"}, {"config", "init", "--role", "miner"}} {
		if err := run(t.Context(), args, env(nil), io.Discard, io.Discard); exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

func TestWalletCommand(t *testing.T) {
	dir := t.TempDir()
	address := func(network string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(t.Context(), []string{"wallet", "address", "--data-dir", dir, "--network", network}, env(nil), &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	first := address("mainnet")
	if first != address("mainnet") {
		t.Fatal("the wallet address changed between runs: the seed is not kept")
	}
	if !strings.HasPrefix(first, "UQ") || address("testnet") == first {
		t.Fatalf("mainnet address %q, testnet %q", first, address("testnet"))
	}
	st, err := os.Stat(dir + "/wallet.seed")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v, %v", st, err)
	}
	err = run(t.Context(), []string{"wallet", "balance", "--data-dir", dir, "--global-config", dir + "/missing.json"}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Fatalf("balance with a missing global config: %v", err)
	}
	if err := run(t.Context(), []string{"wallet", "address", "--network", "local", "--data-dir", dir}, env(nil), io.Discard, io.Discard); exitCode(err) != 2 {
		t.Fatalf("local network: %v, want a usage error", err)
	}
	if got := formatTON(big.NewInt(1_500_000_001)); got != "1.500000001" {
		t.Fatalf("formatTON = %s", got)
	}
}

// chatOnce sends one short chat request through client and checks it was
// answered.
func chatOnce(t *testing.T, client *node.Node) {
	t.Helper()
	resp, err := http.Post(testnet.BaseURL(client)+"/chat/completions", "application/json",
		strings.NewReader(`{"model":"sim-small","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("chat: %s", resp.Status)
	}
}

// TestDrainAndReloadCommands: `cocoon worker drain` prints each step and
// ends drained; `cocoon reload` reports a node it cannot reload.
func TestDrainAndReloadCommands(t *testing.T) {
	h := testnet.New(t)
	w := h.AddWorker()
	h.AddProxy()
	client := h.AddClient()
	chatOnce(t, client)

	var out bytes.Buffer
	if err := run(t.Context(), []string{"worker", "drain", "--data-dir", w.DataDir()}, env(nil), &out, io.Discard); err != nil {
		t.Fatalf("drain: %v\n%s", err, out.String())
	}
	for _, want := range []string{"taking no new requests", "no request in flight", "drained"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("drain printed %q, want %q in it", out.String(), want)
		}
	}
	err := run(t.Context(), []string{"reload", "--data-dir", w.DataDir()}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "without a configuration") {
		t.Errorf("reload of a node started without one: %v", err)
	}
	err = run(t.Context(), []string{"worker", "drain", "--data-dir", client.DataDir()}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "only a worker drains") {
		t.Errorf("drain of a client: %v", err)
	}
}
