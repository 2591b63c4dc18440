//go:build !race

package testnet_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

var soakRequests = flag.Int("soak.n", 5000, "requests TestMoneySoak sends")

// TestMoneySoak: thousands of paid requests, whole, streamed and hung up
// part way, in steady load and bursts, on channels small enough to roll
// over many times, with workers asking to settle as they go. At the end
// every ledger balances to the nanoTON over all channels: what the client
// signed is what the proxy holds, what the proxy signed to each worker is
// what that worker holds, the proxy kept exactly what was left, and the
// workers' settled earnings reached their wallets on chain.
func TestMoneySoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not in -short")
	}
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	small := func(c *config.Config) {
		// The root contract's minimum deposit (1 TON), renewed with 0.75
		// TON left: at these prices a few hundred answers.
		c.Payments.Deposit, c.Payments.RenewBelow = 1_000_000_000, 750_000_000
	}
	p := h.AddProxy(small)
	price := payments.Price{Prompt: 3_000_000_000, Completion: 12_000_000_000}
	var workers []*node.Node
	for range 2 {
		workers = append(workers, h.AddWorker(func(c *config.Config) {
			c.Worker.Price = price
			c.Worker.Sim.TokensPerSec = 0 // as fast as it goes
			c.Payments.SettleAbove = 100_000_000
		}))
	}
	client := h.AddClient(small)

	var whole, streamed, hungUp, refused, failed atomic.Int64
	one := func(rng *rand.Rand) {
		stream := rng.IntN(10) < 3
		body := fmt.Sprintf(`{"model":"sim-small","stream":%t,"max_tokens":%d,"messages":[{"role":"user","content":"soak"}]}`, stream, 4+rng.IntN(20))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", testnet.BaseURL(client)+"/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			failed.Add(1)
			return
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusPaymentRequired:
			refused.Add(1)
			return
		case resp.StatusCode != http.StatusOK:
			failed.Add(1)
			return
		case !stream:
			whole.Add(1)
			return
		}
		hangUpAt := -1
		if rng.IntN(2) == 0 {
			hangUpAt = 1 + rng.IntN(3)
		}
		sc := bufio.NewScanner(resp.Body)
		chunks := 0
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: {") {
				chunks++
				if chunks == hangUpAt {
					hungUp.Add(1)
					return // the deferred cancel hangs up
				}
			}
		}
		streamed.Add(1)
	}

	n := *soakRequests
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if i%500 == 0 { // a burst beside the steady load
					var burst sync.WaitGroup
					for b := range 6 {
						burst.Go(func() { one(rand.New(rand.NewPCG(uint64(i), uint64(b)))) })
					}
					burst.Wait()
				}
				one(rng)
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests: %d whole, %d streamed, %d hung up, %d refused (402), %d failed",
		n, whole.Load(), streamed.Load(), hungUp.Load(), refused.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
	if refused.Load() > int64(n)/100 {
		t.Errorf("%d of %d requests refused for payment: the channels did not keep up", refused.Load(), n)
	}

	// sum is what nd signed to (payer) or holds from other, over all
	// their channels, and how many of them there were.
	sum := func(nd *node.Node, other peer.ID, payer bool) (amount uint64, chans int) {
		for _, c := range nd.Channels().List() {
			if c.Peer != other || c.Payer != payer {
				continue
			}
			chans++
			if payer {
				amount += c.Sent
			} else {
				amount += c.Received
			}
		}
		return amount, chans
	}
	var clientChans int
	var state string
	defer func() {
		if t.Failed() {
			t.Logf("last seen: %s", state)
			for _, nd := range append([]*node.Node{client, p}, workers...) {
				for _, c := range nd.Channels().List() {
					t.Logf("%s: %+v", nd.ID(), c)
				}
			}
		}
	}()
	p2ptest.Eventually(t, "every payment to land", func() bool {
		sent, chans := sum(client, p.ID(), true)
		held, _ := sum(p, client.ID(), false)
		clientChans = chans
		state = fmt.Sprintf("client signed %d, proxy holds %d", sent, held)
		if sent == 0 || sent != held {
			return false
		}
		for _, w := range workers {
			paid, _ := sum(p, w.ID(), true)
			got, _ := sum(w, p.ID(), false)
			state += fmt.Sprintf("; proxy signed %d to a worker, which holds %d", paid, got)
			if paid != got {
				return false
			}
		}
		st := client.Status(context.Background())
		state += fmt.Sprintf("; client in flight %+v", st.Payments)
		return st.Payments != nil && st.Payments.InFlight == 0
	})
	// A close a payer sent lands on chain before its payee sees it (within
	// a second): wait until no worker has a channel still closing.
	p2ptest.Eventually(t, "the workers to see their payouts", func() bool {
		for _, w := range workers {
			for _, c := range w.Channels().List() {
				if c.State == "closing" {
					return false
				}
			}
		}
		return true
	})
	spent, _ := sum(client, p.ID(), true)
	var toWorkers, settled uint64
	workerChans := 0
	for _, w := range workers {
		paid, chans := sum(p, w.ID(), true)
		toWorkers += paid
		workerChans += chans
		// Each payout pays its forward fee (0.0004 TON in the emulator).
		st := w.Status(context.Background())
		if st.Payments == nil || st.Payments.Withdrawable == nil {
			t.Fatalf("worker %s: no wallet balance in its status", w.ID())
		}
		ws := uint64(st.Payments.Settled)
		settled += ws
		funded := testnet.Funding[config.RoleWorker]
		gain := *st.Payments.Withdrawable - funded
		if gain > int64(ws) || gain < int64(ws)-int64(chans)*500_000 {
			t.Errorf("worker %s settled %d on chain; its wallet gained %d", w.ID(), ws, gain)
		}
	}
	pSpent, pEarned := p.Channels().Totals()
	if pEarned != spent || pSpent != toWorkers || pEarned < pSpent {
		t.Errorf("proxy earned %d (client signed %d), spent %d (workers hold %d)", pEarned, spent, pSpent, toWorkers)
	}
	if clientChans < 3 || workerChans < 4 {
		t.Errorf("%d client and %d worker channels: want rollovers", clientChans, workerChans)
	}
	if settled == 0 {
		t.Error("no worker earnings settled on chain")
	}
	t.Logf("client paid %d nanoTON over %d channels; workers got %d over %d channels, %d of it settled on chain; the proxy kept %d",
		spent, clientChans, toWorkers, workerChans, settled, pEarned-pSpent)
}
