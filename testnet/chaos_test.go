package testnet_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// outcome is how one streamed request ended, as the app saw it.
type outcome int

const (
	streamed outcome = iota // every chunk, then the usage and [DONE]
	cutShort                // chunks, then an error event: the worker died mid-stream
	refused                 // an error before any chunk
	hung                    // nothing conclusive within the request's deadline
)

// streamOnce sends one streamed chat request and classifies its ending;
// for an answer it returns the cost the usage chunk reported.
func streamOnce(ctx context.Context, url string) (outcome, payments.Bill, string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body := `{"model":"sim-small","max_tokens":20,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"chaos"}]}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return hung, payments.Bill{}, err.Error()
		}
		return refused, payments.Bill{}, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return refused, payments.Bill{}, fmt.Sprintf("%d %s", resp.StatusCode, b.String())
	}
	sc := bufio.NewScanner(resp.Body)
	chunks := 0
	var cost *payments.Bill
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			if cost == nil {
				return cutShort, payments.Bill{}, "no usage before [DONE]"
			}
			return streamed, *cost, ""
		}
		var ev struct {
			Error  *struct{ Message string } `json:"error"`
			Cocoon *struct {
				Cost *payments.Bill `json:"cost_nanoton"`
			} `json:"cocoon"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return cutShort, payments.Bill{}, "unreadable event: " + line
		}
		switch {
		case ev.Error != nil && chunks == 0:
			return refused, payments.Bill{}, ev.Error.Message
		case ev.Error != nil:
			return cutShort, payments.Bill{}, ev.Error.Message
		case ev.Cocoon != nil && ev.Cocoon.Cost != nil:
			cost = ev.Cocoon.Cost
		default:
			chunks++
		}
	}
	if ctx.Err() != nil {
		return hung, payments.Bill{}, "deadline"
	}
	return cutShort, payments.Bill{}, "stream ended without [DONE] or an error"
}

// TestWorkersKilledUnderLoad: three workers run as child processes behind
// one proxy, with payments on; while 8 requesters stream answers through
// the client, a random worker is killed with SIGKILL every 700 ms (or as
// soon as the proxy routes to all three again) and restarted. No request hangs; a request whose worker dies before its
// first chunk is served by another worker (none is refused); one cut
// mid-stream ends with an error event; and once all workers are back, the
// client paid exactly what its answers cost, the proxy holds exactly that,
// and the workers together hold exactly their parts.
func TestWorkersKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the chaos test kills and restarts worker processes")
	}
	sb := startChain(t)
	ctx := t.Context()
	log := logtest.NewAt(t, slog.LevelWarn)
	dir := t.TempDir()
	fund := func(d string, nano int64) { fundWallet(t, sb, d, nano) }

	// The workers, each a child process at a fixed address and identity.
	type workerProc struct {
		id   peer.ID
		dir  string
		spec []byte
		proc *proxyProcess // nil while dead
	}
	var workers []*workerProc
	var addrs []string
	for i := range 3 {
		wdir := filepath.Join(dir, fmt.Sprintf("worker-%d", i))
		key, err := p2p.LoadOrCreateIdentity(wdir)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		fund(wdir, 1_000_000_000)
		listen := "/ip4/127.0.0.1/tcp/" + freePort(t)
		spec, _ := json.Marshal(crashChild{Role: "worker", Dir: wdir, Listen: listen, Sandbox: sb.URL(), SandboxToken: sb.Token()})
		w := &workerProc{id: id, dir: wdir, spec: spec, proc: startProxyProcess(t, spec)}
		workers = append(workers, w)
		addrs = append(addrs, listen+"/p2p/"+id.String())
	}
	t.Cleanup(func() {
		for _, w := range workers {
			if w.proc != nil {
				w.proc.kill()
			}
		}
	})
	for _, w := range workers {
		w.proc.waitReady(t)
	}

	startNode := func(cfg config.Config) *node.Node { return startChainNode(t, sb, log, cfg) }
	pcfg := config.Default(config.RoleProxy)
	pcfg.DataDir = filepath.Join(dir, "proxy")
	pcfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	pcfg.Proxy.Workers = addrs
	pcfg.Proxy.CheckInterval = config.Duration(200 * time.Millisecond)
	pcfg.Payments.Enabled = true
	fund(pcfg.DataDir, 10_000_000_000)
	proxy := startNode(pcfg)

	ccfg := config.Default(config.RoleClient)
	ccfg.DataDir = filepath.Join(dir, "client")
	ccfg.Client.Proxies = proxy.Addrs()
	ccfg.Client.APIAddr = "127.0.0.1:0"
	ccfg.Client.CheckInterval = config.Duration(200 * time.Millisecond)
	ccfg.Payments.Enabled = true
	fund(ccfg.DataDir, 10_000_000_000)
	client := startNode(ccfg)
	if err := waitFor(ctx, 60*time.Second, func() bool {
		if !client.Ready(ctx) {
			return false
		}
		payable := 0
		for _, c := range proxy.Channels().List() {
			if c.Payer && c.State == "open" {
				payable++
			}
		}
		return payable == len(workers) // every worker can be paid
	}); err != nil {
		t.Fatalf("network: %v", err)
	}

	// Load and chaos.
	url := testnet.BaseURL(client) + "/chat/completions"
	load := startLoad(t.Context(), url, 8)
	kills := 0
	tick := time.NewTicker(700 * time.Millisecond)
	for range 12 {
		<-tick.C
		// Bring back the dead, and once the proxy routes to all three
		// again, kill one at random: two are always there to fail over to.
		for _, w := range workers {
			if w.proc == nil {
				w.proc = startProxyProcess(t, w.spec)
				w.proc.waitReady(t)
			}
		}
		if err := waitFor(ctx, 30*time.Second, func() bool { return len(proxy.PeersUp()) == len(workers) }); err != nil {
			t.Fatalf("the proxy did not route to the restarted workers: %v", err)
		}
		victim := workers[rand.IntN(len(workers))]
		victim.proc.kill()
		victim.proc = nil
		kills++
	}
	tick.Stop()
	load.stop()
	for _, w := range workers {
		if w.proc == nil {
			w.proc = startProxyProcess(t, w.spec)
			w.proc.waitReady(t)
		}
	}

	counts, total, workerPart := load.counts, load.total, load.worker
	t.Logf("%d workers killed; %d answered, %d cut mid-stream, %d refused, %d hung",
		kills, counts[streamed], counts[cutShort], counts[refused], counts[hung])
	if counts[hung] > 0 || counts[refused] > 0 {
		t.Errorf("%d hung, %d refused: %q", counts[hung], counts[refused], load.why)
	}
	if counts[streamed] == 0 {
		t.Fatal("nothing answered")
	}

	// Payments: settled exactly, whatever was cut.
	var got string
	if err := waitFor(ctx, 60*time.Second, func() bool {
		got = chaosBalances(t, client, proxy, workers[0].dir, workers[1].dir, workers[2].dir)
		return got == fmt.Sprintf("client paid %d, proxy holds %d and paid workers %d, workers hold %d", total, total, workerPart, workerPart)
	}); err != nil {
		t.Fatalf("answers cost %d (worker parts %d); %s", total, workerPart, got)
	}
	t.Logf("settled: %s", got)
}

// chaosBalances sums the channels: the client's signed and acknowledged
// payments, the proxy's, and what the workers (child processes: their
// admin APIs) hold.
func chaosBalances(t *testing.T, client, proxy *node.Node, workerDirs ...string) string {
	var paid, unacked, held, paidOn, workersHold uint64
	for _, c := range client.Channels().List() {
		paid += c.Sent
		unacked += c.Unsigned
	}
	for _, c := range proxy.Channels().List() {
		if c.Payer {
			paidOn += c.Sent
		} else {
			held += c.Received
		}
	}
	for _, d := range workerDirs {
		ep, err := admin.ReadEndpoint(d)
		if err != nil {
			return err.Error()
		}
		req, err := ep.NewRequest(context.Background(), "GET", "/channels")
		if err != nil {
			return err.Error()
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		var ps admin.PaymentsStatus
		err = json.NewDecoder(resp.Body).Decode(&ps)
		resp.Body.Close()
		if err != nil {
			return err.Error()
		}
		for _, c := range ps.Channels {
			workersHold += uint64(c.Received)
		}
	}
	if unacked > 0 {
		return fmt.Sprintf("client has %d nanoTON not acknowledged yet", unacked)
	}
	return fmt.Sprintf("client paid %d, proxy holds %d and paid workers %d, workers hold %d", paid, held, paidOn, workersHold)
}

// TestProxyCutOff: a client keeps two proxies; while 8 requesters stream
// answers through it, one proxy is cut off (closed without notice to its
// peers). Requests in flight through it end with an error event, none
// hangs, and every request that had not started streaming is served
// through the other proxy: none is refused.
func TestProxyCutOff(t *testing.T) {
	h := testnet.New(t)
	h.AddWorker(func(c *config.Config) { c.Worker.Sim.TokensPerSec = 100 })
	h.AddWorker(func(c *config.Config) { c.Worker.Sim.TokensPerSec = 100 })
	a := h.AddProxy()
	h.AddProxy()
	client := h.AddClient()
	p2ptest.Eventually(t, "the client to keep both proxies", func() bool { return len(client.PeersUp()) == 2 })

	url := testnet.BaseURL(client) + "/chat/completions"
	load := startLoad(t.Context(), url, 8)
	total := load.done
	if err := waitFor(t.Context(), 30*time.Second, func() bool { return total() >= 20 }); err != nil {
		t.Fatal("no load before the cut")
	}
	a.Close() // cut off
	before := total()
	if err := waitFor(t.Context(), 30*time.Second, func() bool { return total() >= before+40 }); err != nil {
		t.Fatal("no answers after the cut")
	}
	load.stop()
	counts := load.counts
	t.Logf("%d answered, %d cut mid-stream, %d refused, %d hung", counts[streamed], counts[cutShort], counts[refused], counts[hung])
	if counts[refused] > 0 || counts[hung] > 0 {
		t.Errorf("%d refused, %d hung: %q", counts[refused], counts[hung], load.why)
	}
}

// streamLoad is requesters streaming answers from a client's API over and
// over, counting how each request ended.
type streamLoad struct {
	quit chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex // guards the fields below until stop returns
	counts map[outcome]int
	total  int64    // the cost of the answers, as the usage reported it
	worker int64    // their worker parts
	why    []string // what refused or hung requests said
}

// startLoad starts n requesters on url; stop ends them.
func startLoad(ctx context.Context, url string, n int) *streamLoad {
	l := &streamLoad{quit: make(chan struct{}), counts: map[outcome]int{}}
	for range n {
		l.wg.Go(func() {
			for {
				select {
				case <-l.quit:
					return
				default:
				}
				o, cost, why := streamOnce(ctx, url)
				l.mu.Lock()
				l.counts[o]++
				if o == streamed {
					l.total += cost.Total
					l.worker += cost.Worker
				}
				if o == refused || o == hung {
					l.why = append(l.why, why)
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// done is how many requests have ended so far.
func (l *streamLoad) done() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.counts {
		n += c
	}
	return n
}

// stop ends the requesters and waits for them.
func (l *streamLoad) stop() {
	close(l.quit)
	l.wg.Wait()
}
