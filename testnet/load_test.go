//go:build !race

// The race detector allows 8,128 goroutines, fewer than 1,000 streams take
// through three nodes; `make test` runs this file without it.

package testnet_test

import (
	"runtime"
	"sync"
	"testing"

	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestThousandStreams: 1,000 streamed requests at once through one client
// and one proxy, with payments on, twice: every one is answered, the live
// heap after the second burst is within a quarter of the heap after the
// first (the pools filled once stay filled, nothing accumulates), and every
// answer is paid for exactly.
func TestThousandStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 1,000 concurrent streams")
	}
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	for range 2 {
		h.AddWorker(func(c *node.Config) { c.Worker.MaxConcurrent = 1000; c.Worker.Sim.TokensPerSec = 200 })
	}
	client := h.AddClient(func(c *node.Config) { c.P2P.MaxStreamsPerPeer = 2048 })
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
	// The first burst fills the pools (streams kept for reuse, buffers);
	// the second must find them and take no more.
	first := burst()
	second := burst()
	t.Logf("2 x %d streams: %d answered, %d cut, %d refused, %d hung; live heap %d MiB after the first burst, %d MiB after the second",
		n, counts[streamed], counts[cutShort], counts[refused], counts[hung], first>>20, second>>20)
	if counts[streamed] != 2*n {
		t.Fatalf("%d of %d answered: %q", counts[streamed], 2*n, why)
	}
	if second > first+first/4 {
		t.Errorf("the live heap grew from %d to %d MiB over the same load: not bounded", first>>20, second>>20)
	}
	p2ptest.Eventually(t, "the payments to settle", func() bool {
		_, held := channelOf(p, client)
		return held == uint64(total)
	})
}
