//go:build !race

// The race detector allows 8,128 goroutines, fewer than 1,000 streams take
// through three nodes; `make test` runs this file without it.

package testnet_test

import (
	"runtime"
	"sync"
	"testing"

	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestThousandStreams: 1,000 streamed requests at once through one client
// and one proxy, with payments on, four times: every one is answered, the
// live heap stays under 200 MiB after each burst (nothing accumulates),
// and every answer is paid for exactly.
func TestThousandStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 1,000 concurrent streams")
	}
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	for range 2 {
		h.AddWorker(func(c *config.Config) { c.Worker.MaxConcurrent = 1000; c.Worker.Sim.TokensPerSec = 200 })
	}
	// Each request in flight reserves its worst case (4,096 completion
	// tokens at the worker's price) against the client's deposit: 1,000
	// at once need about 1.8 TON.
	client := h.AddClient(func(c *config.Config) {
		c.P2P.MaxStreamsPerPeer = 2048
		c.Payments.Deposit = 3_000_000_000
	})
	p2ptest.Eventually(t, "both workers payable", func() bool {
		n := 0
		for _, c := range p.Channels().List() {
			if c.Payer && c.State == "open" {
				n++
			}
		}
		return n == 2
	})
	url := testnet.BaseURL(client) + "/chat/completions"
	const n = 1000
	var mu sync.Mutex
	counts := map[outcome]int{}
	var total int64
	var why []string
	burst := func() uint64 {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				o, cost, w := streamOnce(t.Context(), url)
				mu.Lock()
				counts[o]++
				total += cost.Total
				if o != streamed && len(why) < 5 {
					why = append(why, w)
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// The live heap after a burst depends on how many streams and
	// buffers the pools still keep at that moment, which varies from 17 to
	// 127 MiB between runs here; what bounds it is that the pools keep no
	// more than one burst's worth. Four bursts must each leave it under
	// 200 MiB: a leak of 50 MiB a burst (50 KiB a stream) would pass that
	// by the fourth.
	const limit = 200 << 20
	var heaps []uint64
	for range 4 {
		heaps = append(heaps, burst())
	}
	t.Logf("4 x %d streams: %d answered, %d cut, %d refused, %d hung; live heap after each burst %d, %d, %d, %d MiB",
		n, counts[streamed], counts[cutShort], counts[refused], counts[hung], heaps[0]>>20, heaps[1]>>20, heaps[2]>>20, heaps[3]>>20)
	if counts[streamed] != 4*n {
		t.Fatalf("%d of %d answered: %q", counts[streamed], 4*n, why)
	}
	for i, h := range heaps {
		if h > limit {
			t.Errorf("live heap %d MiB after burst %d, over %d MiB: not bounded", h>>20, i+1, limit>>20)
		}
	}
	p2ptest.Eventually(t, "the payments to settle", func() bool {
		_, held := channelOf(p, client)
		return held == uint64(total)
	})
}
