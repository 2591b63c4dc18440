package testnet_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// costOf reads the cost the gateway reports beside usage.
func costOf(t *testing.T, raw string) payments.Bill {
	t.Helper()
	var ext struct {
		Cocoon struct {
			Cost *payments.Bill `json:"cost_nanoton"`
		} `json:"cocoon"`
	}
	if err := json.Unmarshal([]byte(raw), &ext); err != nil {
		t.Fatal(err)
	}
	if ext.Cocoon.Cost == nil {
		t.Fatalf("no cost in %s", raw)
	}
	return *ext.Cocoon.Cost
}

// channelOf is nd's open channel with peer, as nd's ledger holds it.
func channelOf(nd, peer *node.Node) (sent, received uint64) {
	for _, c := range nd.Channels().List() {
		if c.Peer == peer.ID() && c.State == "open" {
			return c.Sent, c.Received
		}
	}
	return 0, 0
}

// TestPaymentsEndToEnd: on the sandbox chain with funded wallets, the
// client and the proxy open channels on their own; every answer's cost is
// paid by the client to the proxy and its worker part by the proxy to the
// worker, and all three ledgers agree to the nanoTON. A client whose wallet
// cannot fund a channel gets 402 saying so.
func TestPaymentsEndToEnd(t *testing.T) {
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	w := h.AddWorker()
	client := h.AddClient() // ready once its channel to the proxy is open

	c := sdk(client)
	var total, worker, fees int64
	for i := range 5 {
		resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "pay for this", int64(3+i)))
		if err != nil {
			t.Fatal(err)
		}
		cost := costOf(t, resp.RawJSON())
		if cost.Total != cost.Worker+cost.Fee || cost.Worker <= 0 || cost.Fee <= 0 {
			t.Fatalf("cost %+v", cost)
		}
		total += cost.Total
		worker += cost.Worker
		fees += cost.Fee
	}
	p2ptest.Eventually(t, "the payments to settle", func() bool {
		_, fromClient := channelOf(p, client)
		_, toWorker := channelOf(w, p)
		return fromClient == uint64(total) && toWorker == uint64(worker)
	})
	if sent, _ := channelOf(client, p); sent != uint64(total) {
		t.Errorf("client's ledger: paid %d, the answers cost %d", sent, total)
	}
	if sent, _ := channelOf(p, w); sent != uint64(worker) {
		t.Errorf("proxy's ledger: paid the worker %d, its part was %d", sent, worker)
	}
	spent, earned := p.Channels().Totals()
	if int64(earned-spent) != fees {
		t.Errorf("proxy kept %d, the fees were %d", earned-spent, fees)
	}
	st := client.Status(t.Context())
	if st.Payments == nil || st.Payments.Spent != total {
		t.Errorf("client status payments = %+v, want spent %d", st.Payments, total)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", client.AdminURL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+client.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("cocoon_payments_spent_nanoton %d", total); !strings.Contains(string(metrics), want) {
		t.Errorf("client metrics lack %q", want)
	}
	if !strings.Contains(string(metrics), `cocoon_channel_signed_nanoton{channel=`) {
		t.Error("client metrics lack its channel")
	}
	if got := h.Net.Payments(); !strings.Contains(got, "workers earned") {
		t.Errorf("Payments() = %q", got)
	}

	// A client whose wallet cannot fund a channel: 402, saying why.
	poor, err := h.Net.AddClient(t.Context(), func(c *config.Config) { c.Payments.Deposit = 1_000_000_000_000 })
	if err != nil {
		t.Fatal(err)
	}
	var apiErr *openai.Error
	pc := sdk(poor)
	if waitFor(t.Context(), 20*time.Second, func() bool { // the failed open signals nothing
		_, err = pc.Chat.Completions.New(t.Context(), chatParams("sim-small", "free?", 2))
		return errors.As(err, &apiErr) && apiErr.StatusCode == 402 && strings.Contains(apiErr.Message, "insufficient funds")
	}) != nil {
		t.Fatalf("unfunded client: %v, want 402 naming insufficient funds", err)
	}
}

// TestHangUpPaysWhatWasStreamed: ten apps read half of a streamed answer
// and hang up. Each answer is stopped, not abandoned: the worker signs a
// receipt for what it streamed, the client pays it, and the proxy pays the
// worker its part; the ledgers agree. An app that hangs up before the
// first chunk pays nothing.
func TestHangUpPaysWhatWasStreamed(t *testing.T) {
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	w := h.AddWorker(func(c *config.Config) { c.Worker.Sim.TokensPerSec = 100 })
	client := h.AddClient()

	body := `{"model":"sim-small","stream":true,"max_tokens":40,"messages":[{"role":"user","content":"a long answer"}]}`
	for range 10 {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, "POST", testnet.BaseURL(client)+"/chat/completions", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		chunks := 0
		for chunks < 20 && sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: {") {
				chunks++
			}
		}
		cancel() // half of the 40 tokens read: hang up
		resp.Body.Close()
		if chunks != 20 {
			t.Fatalf("read %d chunks before hanging up", chunks)
		}
	}
	// What a whole 40-token answer costs, for comparison.
	c := sdk(client)
	full, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "a long answer", 40))
	if err != nil {
		t.Fatal(err)
	}
	whole := costOf(t, full.RawJSON())
	p2ptest.Eventually(t, "the cut answers to be paid", func() bool {
		st := client.Status(t.Context())
		return st.Payments != nil && st.Payments.Spent > whole.Total
	})
	// Settled through: the proxy has what the client sent, the worker its
	// part.
	p2ptest.Eventually(t, "the payments to settle", func() bool {
		sent, _ := channelOf(client, p)
		_, fromClient := channelOf(p, client)
		paid, _ := channelOf(p, w)
		_, toWorker := channelOf(w, p)
		return sent > uint64(whole.Total) && fromClient == sent && paid > uint64(whole.Worker) && toWorker == paid
	})
	spent := client.Status(t.Context()).Payments.Spent - whole.Total
	// Ten halves cost about five wholes: more than two (the stops may
	// come a few tokens late), less than ten.
	if spent < 2*whole.Total || spent >= 10*whole.Total {
		t.Errorf("ten answers cut halfway cost %d nanoTON, a whole one %d: want about five wholes", spent, whole.Total)
	}
	t.Logf("ten answers cut halfway cost %d nanoTON; a whole one %d", spent, whole.Total)
}

// TestClientDebtDoesNotStopWorker: a client that pays late (its payments
// batched for an hour) runs up a debt with the proxy far above the
// worker's own credit with the proxy. The proxy pays the worker ahead of
// that client, so the worker keeps serving it and another client, and
// holds every part of the answers it served but the last quarter of its
// credit.
func TestClientDebtDoesNotStopWorker(t *testing.T) {
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	w := h.AddWorker(func(c *config.Config) {
		c.Worker.Price = payments.Price{Prompt: 3_000_000_000, Completion: 12_000_000_000}
		c.Payments.MaxCredit = 1_000_000 // about seven answers
	})
	late := h.AddNode(config.RoleClient, []node.Option{node.WithPaymentsLate(time.Hour)})
	other := h.AddClient()

	var parts int64
	ask := func(client *node.Node, i int) {
		t.Helper()
		c := sdk(client)
		resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "owe for this", int64(8+i%4)))
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		parts += costOf(t, resp.RawJSON()).Worker
	}
	for i := range 30 {
		ask(late, i)
	}
	ask(other, 0)
	if sent, _ := channelOf(late, p); sent != 0 {
		t.Fatalf("the late client paid %d already: it was to owe", sent)
	}
	// The proxy pays ahead once a quarter of the worker's credit is due:
	// what is due below that waits for the clients' payments.
	var held uint64
	p2ptest.Eventually(t, "the worker to hold all but a quarter of its credit", func() bool {
		_, held = channelOf(w, p)
		return held <= uint64(parts) && uint64(parts)-held <= 250_000
	})
	t.Logf("31 answers, 30 of them unpaid by their client: %d nanoTON of worker parts against the worker's credit of 1,000,000; the worker holds %d", parts, held)
}
