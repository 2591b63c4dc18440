package testnet_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/chain/sandbox"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/ton"
	"github.com/cocoon-mesh/cocoon/testnet"
)

var crashRuns = flag.Int("crash.runs", 20, "times TestProxyCrash kills the proxy")

// crashChild is the configuration of a node run in a child process (a
// proxy, or a worker for the chaos test); set in the child's environment.
type crashChild struct {
	Role    string `json:"role"` // proxy (the default) or worker
	Dir     string `json:"dir"`
	Listen  string `json:"listen"`
	Worker  string `json:"worker"`
	Sandbox string `json:"sandbox"`
	// SandboxToken is the sidecar's token: a test's child process, whose
	// environment only the test's user can read.
	SandboxToken string `json:"sandbox_token"`
}

const crashEnv = "COCOON_CRASH_PROXY"

// runCrashChild runs a node until it is killed, printing "ready" once it
// is (a proxy: routing to the worker with a channel open).
func runCrashChild(t *testing.T, spec string) {
	var c crashChild
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	if c.Role == "worker" {
		cfg = config.Default(config.RoleWorker)
		// Answers long enough to be cut mid-stream: 20 tokens at 100/s.
		cfg.Worker.Sim.MaxTokens = 20
		cfg.Worker.Sim.TokensPerSec = 100
	} else {
		cfg = config.Default(config.RoleProxy)
		cfg.Proxy.Workers = []string{c.Worker}
		cfg.Proxy.CheckInterval = config.Duration(200 * time.Millisecond)
	}
	cfg.DataDir = c.Dir
	cfg.P2P.Listen = []string{c.Listen}
	cfg.Payments.Enabled = true
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nd, err := node.New(cfg, log, node.WithChain(sandbox.Attach(c.Sandbox, c.SandboxToken, log)))
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := testnet.WaitReady(context.Background(), nd); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

// proxyProcess is a node's child process (a proxy's, or a worker's).
type proxyProcess struct {
	cmd   *exec.Cmd
	ready chan error
}

func startProxyProcess(t *testing.T, spec []byte) *proxyProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyCrash$")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(spec))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proxyProcess{cmd: cmd, ready: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				p.ready <- nil
				io.Copy(io.Discard, stdout)
				return
			}
		}
		p.ready <- fmt.Errorf("the proxy exited before it was ready")
	}()
	return p
}

func (p *proxyProcess) waitReady(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the proxy was not ready within 60 s")
	}
}

func (p *proxyProcess) kill() {
	p.cmd.Process.Kill() // SIGKILL
	p.cmd.Wait()
}

// answered is what the client got: every answer's cost, as the gateway
// reported it.
type answered struct {
	mu     sync.Mutex
	total  int64
	worker int64
	n      int
}

func (a *answered) add(c payments.Bill) {
	a.mu.Lock()
	a.total += c.Total
	a.worker += c.Worker
	a.n++
	a.mu.Unlock()
}

func (a *answered) get() (total, worker int64, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total, a.worker, a.n
}

// TestProxyCrash kills the proxy with SIGKILL under load, crash.runs times
// (20 by default), and restarts it from its data dir. After each restart,
// once the payments in flight have landed, the three ledgers balance to
// the nanoTON: the client paid the proxy exactly what its answers cost, the
// proxy holds exactly that, and the worker holds exactly their worker
// parts from the proxy; what the proxy keeps is exactly the fees. No signed
// state is lost and nothing is paid twice.
func TestProxyCrash(t *testing.T) {
	if spec := os.Getenv(crashEnv); spec != "" {
		runCrashChild(t, spec)
		return
	}
	if testing.Short() {
		t.Skip("-short: the crash test restarts a proxy process many times")
	}
	sb := startChain(t)
	ctx := t.Context()
	log := logtest.NewAt(t, slog.LevelWarn)
	dir := t.TempDir()

	fund := func(d string, nano int64) { fundWallet(t, sb, d, nano) }
	startNode := func(cfg config.Config) *node.Node { return startChainNode(t, sb, log, cfg) }

	// The worker, in this process.
	wcfg := config.Default(config.RoleWorker)
	wcfg.DataDir = filepath.Join(dir, "worker")
	wcfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	wcfg.Payments.Enabled = true
	wcfg.Worker.Sim.MaxTokens = 8
	fund(wcfg.DataDir, 1_000_000_000)
	worker := startNode(wcfg)

	// The proxy, in a child process, at a fixed address and identity.
	pdir := filepath.Join(dir, "proxy")
	key, err := p2p.LoadOrCreateIdentity(pdir)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	fund(pdir, 10_000_000_000)
	listen := "/ip4/127.0.0.1/tcp/" + freePort(t)
	spec, _ := json.Marshal(crashChild{Dir: pdir, Listen: listen, Worker: worker.Addrs()[0], Sandbox: sb.URL(), SandboxToken: sb.Token()})
	proxy := startProxyProcess(t, spec)
	t.Cleanup(func() { proxy.kill() })
	proxy.waitReady(t)

	// The client, in this process.
	ccfg := config.Default(config.RoleClient)
	ccfg.DataDir = filepath.Join(dir, "client")
	ccfg.Client.Proxies = []string{listen + "/p2p/" + pid.String()}
	ccfg.Client.APIAddr = "127.0.0.1:0"
	ccfg.Client.CheckInterval = config.Duration(200 * time.Millisecond)
	ccfg.Payments.Enabled = true
	fund(ccfg.DataDir, 10_000_000_000)
	client := startNode(ccfg)
	if err := waitFor(ctx, 60*time.Second, func() bool { return client.Ready(ctx) }); err != nil {
		t.Fatalf("client: %v", err)
	}

	var got answered
	url := testnet.BaseURL(client) + "/chat/completions"
	load := func(stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if c, ok := ask(url); ok {
						got.add(c)
					}
				}
			})
		}
		return &wg
	}

	for run := range *crashRuns {
		stop := make(chan struct{})
		wg := load(stop)
		// Kill it mid-load: after some answers, at a random moment.
		_, _, before := got.get()
		if err := waitFor(ctx, 30*time.Second, func() bool { _, _, n := got.get(); return n >= before+5 }); err != nil {
			t.Fatalf("run %d: no answers under load: %v; last error: %v", run, err, lastErr.Load())
		}
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond) // the random moment of the crash, not a wait for anything
		proxy.kill()
		close(stop)
		wg.Wait()

		proxy = startProxyProcess(t, spec)
		proxy.waitReady(t)
		total, workerPart, n := got.get()
		var settled string
		if err := waitFor(ctx, 30*time.Second, func() bool {
			settled = balances(t, client, worker, pid, pdir)
			return settled == fmt.Sprintf("client paid %d (0 unacknowledged), proxy holds %d and paid the worker %d, worker holds %d",
				total, total, workerPart, workerPart)
		}); err != nil {
			t.Fatalf("run %d, %d answers costing %d (worker parts %d): %s", run, n, total, workerPart, settled)
		}
		t.Logf("run %d: %d answers, %s", run+1, n, settled)
	}
	total, workerPart, n := got.get()
	if n == 0 || total <= workerPart {
		t.Fatalf("%d answers, total %d, worker parts %d", n, total, workerPart)
	}
}

var lastErr atomic.Value

// ask makes one chat request and returns its cost, if it was answered.
func ask(url string) (payments.Bill, bool) {
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"model":"sim-small","max_tokens":8,"messages":[{"role":"user","content":"crash?"}]}`))
	if err != nil {
		return payments.Bill{}, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		lastErr.Store(fmt.Sprintf("%d %s", resp.StatusCode, body))
		return payments.Bill{}, false
	}
	var ext struct {
		Cocoon struct {
			Cost *payments.Bill `json:"cost_nanoton"`
		} `json:"cocoon"`
	}
	if json.Unmarshal(body, &ext) != nil || ext.Cocoon.Cost == nil {
		return payments.Bill{}, false
	}
	return *ext.Cocoon.Cost, true
}

// balances describes the channels as the client, the proxy (through its
// admin API: it runs in another process) and the worker hold them: what
// the client signed and the proxy acknowledged, what the proxy holds from
// the client and signed to the worker, what the worker holds.
func balances(t *testing.T, client, worker *node.Node, proxy peer.ID, proxyDir string) string {
	var paid, unacked, fromClient, toWorker, workerHeld uint64
	for _, c := range client.Channels().List() {
		if c.Peer == proxy {
			paid += c.Sent
			unacked += c.Unsigned
		}
	}
	for _, c := range worker.Channels().List() {
		if c.Peer == proxy {
			workerHeld += c.Received
		}
	}
	ep, err := admin.ReadEndpoint(proxyDir)
	if err != nil {
		return "proxy admin URL: " + err.Error()
	}
	req, err := ep.NewRequest(context.Background(), "GET", "/channels")
	if err != nil {
		return "proxy channels: " + err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "proxy channels: " + err.Error()
	}
	defer resp.Body.Close()
	var ps admin.PaymentsStatus
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		return "proxy channels: " + err.Error()
	}
	for _, c := range ps.Channels {
		switch {
		case c.Role == "payee" && c.Peer == client.ID().String():
			fromClient += uint64(c.Received)
		case c.Role == "payer" && c.Peer == worker.ID().String():
			toWorker += uint64(c.Sent)
		}
	}
	return fmt.Sprintf("client paid %d (%d unacknowledged), proxy holds %d and paid the worker %d, worker holds %d",
		paid, unacked, fromClient, toWorker, workerHeld)
}

func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
	return nil
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func startChain(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the sandbox chain runs @ton/sandbox in Node.js")
	}
	sb := sandbox.New(sandbox.Config{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := sb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// fundWallet sends nano from the sandbox's faucet to the wallet whose seed
// is (or is created) in dir.
func fundWallet(t *testing.T, sb *sandbox.Sandbox, dir string, nano int64) {
	t.Helper()
	key, err := ton.LoadKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ton.NewWallet(key, sb, ton.WalletConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Fund(t.Context(), w.Address(), big.NewInt(nano)); err != nil {
		t.Fatal(err)
	}
}

// startChainNode starts a node on the sandbox chain in this process,
// closed when the test ends.
func startChainNode(t *testing.T, sb *sandbox.Sandbox, log *slog.Logger, cfg config.Config) *node.Node {
	t.Helper()
	nd, err := node.New(cfg, log.With("node", cfg.Role.String()), node.WithChain(sb))
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close() })
	return nd
}
