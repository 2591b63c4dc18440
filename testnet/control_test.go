package testnet_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cocoon-mesh/cocoon/inference/backend/openai/openaitest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestReloadAndDrain: an operator changes a running worker's prices,
// capacity and models with a reload (as SIGHUP or `cocoon reload` does):
// the next answer is billed at the new price, the new model is served and
// the proxy sees the new offer, with no restart. Then `cocoon worker
// drain`: the worker takes no new request (the proxy routes around it),
// finishes the one in flight, and its payer closes their channel, paying
// it out on chain.
func TestReloadAndDrain(t *testing.T) {
	h := testnet.New(t, testnet.WithPayments("sim-small", "sim-new"))
	old := payments.Price{Prompt: 100_000_000, Completion: 200_000_000}
	dear := payments.Price{Prompt: 300_000_000, Completion: 600_000_000}
	var mu sync.Mutex
	var next config.Config // what the worker's configuration says now
	keep := func(c *config.Config) {
		c.Worker.Price = old
		mu.Lock()
		next = *c
		mu.Unlock()
	}
	reload := node.WithReload(func() (config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return next, nil
	})
	p := h.AddProxy()
	w := h.AddNode(config.RoleWorker, []node.Option{reload}, keep)
	other := h.AddWorker(func(c *config.Config) { c.Worker.Price = dear })
	client := h.AddClient()

	ask := func(model string) (int, []byte) {
		resp, body := openaitest.Post(t, testnet.BaseURL(client), "/chat/completions", openaitest.ChatRequest(model, 1, nil))
		return resp.StatusCode, body
	}
	if code, body := ask("sim-small"); code != http.StatusOK || receiptOf(t, body).Price != old {
		t.Fatalf("before the reload: %d %s", code, body)
	}

	// Nothing changed: nothing applied.
	res, err := w.Reload(t.Context())
	if err != nil || len(res.Applied) != 0 {
		t.Fatalf("a reload with nothing changed: %+v, %v", res, err)
	}
	// Prices, capacity and models change; the data dir would need a restart.
	cheaper := payments.Price{Prompt: 50_000_000, Completion: 100_000_000}
	mu.Lock()
	next.Worker.Price = cheaper
	next.Worker.MaxConcurrent = 3
	next.Worker.Sim.Models = append(slices.Clone(next.Worker.Sim.Models), "sim-new")
	next.P2P.MaxStreamsPerPeer = 99
	mu.Unlock()
	if res, err = w.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"worker.prices", "worker.max_concurrent", "worker.models"} {
		if !slices.Contains(res.Applied, want) {
			t.Errorf("reload applied %v, want %s among them", res.Applied, want)
		}
	}
	if !slices.Contains(res.NeedRestart, "p2p") {
		t.Errorf("reload says %v need a restart, want p2p", res.NeedRestart)
	}
	var code int
	var body []byte
	defer func() {
		if t.Failed() {
			t.Logf("last answer for sim-new: %d %s", code, body)
		}
	}()
	p2ptest.Eventually(t, "the new offer to reach the client", func() bool {
		code, body = ask("sim-new")
		return code == http.StatusOK && receiptOf(t, body).Price == cheaper
	})
	if code, body := ask("sim-small"); code != http.StatusOK || receiptOf(t, body).Price != cheaper {
		t.Fatalf("after the reload: %d %s, want billed at %+v", code, body, cheaper)
	}
	if st := w.Status(t.Context()); st.Serving == nil || st.Serving.Capacity != 3 {
		t.Errorf("worker status after the reload: %+v, want capacity 3", st.Serving)
	}

	// Drain: the worker's channel from the proxy is closed and settled;
	// requests go to the other worker, once the proxy can pay it.
	p2ptest.Eventually(t, "the proxy's channel to the other worker to open", func() bool {
		for _, c := range p.Channels().List() {
			if c.Payer && c.Peer == other.ID() && c.State == "open" {
				return true
			}
		}
		return false
	})
	var lines []string
	if err := w.Drain(t.Context(), func(s string) { lines = append(lines, s) }); err != nil {
		t.Fatalf("drain: %v (%s)", err, strings.Join(lines, "; "))
	}
	if !strings.Contains(strings.Join(lines, "\n"), "channels closed") {
		t.Errorf("drain said %q, want the channels closed", lines)
	}
	for range 3 {
		code, body := ask("sim-small")
		if code != http.StatusOK || receiptOf(t, body).Worker != other.ID() {
			t.Fatalf("after the drain: %d %s, want served by the other worker", code, body)
		}
	}
	p2ptest.Eventually(t, "the drained worker's channel to be paid out", func() bool {
		st := w.Status(context.Background())
		return st.Payments != nil && st.Payments.Settled > 0 && st.Payments.Settled == st.Payments.Earned
	})
}
