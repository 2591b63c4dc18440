package router_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// limitMesh is a proxy routing with cfg to one worker of workerMax slots
// answering with be, each on a loopback host.
func limitMesh(t *testing.T, cfg router.Config, be *inferencetest.Backend, workerMax int) (host.Host, *router.Router) {
	t.Helper()
	proxy := p2ptest.NewHost(t)
	r := router.New(cfg, proxy, &router.FakeVerdicts{Default: attest.TierDev}, nil, nil, logtest.Discard)
	sv := p2p.NewService(proxy, logtest.Discard)
	r.Register(sv)
	wh := p2ptest.NewHost(t)
	wsv := p2p.NewService(wh, logtest.Discard)
	w := worker.New(worker.Config{Network: "local", MaxConcurrent: workerMax}, wh.ID(), be, nil, logtest.Discard)
	w.Register(wsv)
	t.Cleanup(func() {
		wsv.Close()
		sv.Close()
		r.Close()
	})
	p2ptest.Connect(t, proxy, wh)
	c, err := w.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r.SetWorker(wh.ID(), c)
	return proxy, r
}

// newClient is a client host connected to proxy, with its pool.
func newClient(t *testing.T, proxy host.Host) *inference.Pool {
	t.Helper()
	h := p2ptest.NewHost(t)
	p2ptest.Connect(t, h, proxy)
	pool := inference.NewPool(h, "local", inference.DefaultPoolConfig())
	t.Cleanup(pool.Close)
	return pool
}

// ask sends one request for model "m" and reads its answer: nil when it
// ends with End, else the error frame's.
func ask(ctx context.Context, pool *inference.Pool, proxy peer.ID, id string) *inference.Error {
	call, err := pool.Send(ctx, proxy, &inference.Request{ID: id, Kind: inference.KindChat, Model: "m", Body: []byte(`{}`)})
	if err != nil {
		return inference.Errorf(inference.CodeInternal, "sending: %v", err)
	}
	defer call.Done()
	for {
		typ, p, err := call.Next()
		if err != nil {
			return inference.Errorf(inference.CodeInternal, "reading: %v", err)
		}
		ev, err := inference.DecodeEvent(typ, p)
		if err != nil {
			return inference.Errorf(inference.CodeInternal, "decoding: %v", err)
		}
		switch ev.Type {
		case inference.FrameEnd:
			return nil
		case inference.FrameError:
			return ev.Err
		}
	}
}

// TestPerClientLimits: one client cannot hold every slot of a worker, nor
// more than MaxPerClient requests (issue 17, item 6). A greedy client
// sends 4 requests the worker holds; it gets 3, the 4th is refused as
// overloaded, and another client is still served.
func TestPerClientLimits(t *testing.T) {
	tests := []struct {
		name         string
		maxPerClient int
		workerMax    int
		wantRefusal  string
	}{
		{"its share of the worker's slots (75% of 4)", 0, 4, "share"},
		{"requests in flight (3)", 3, 8, "requests in flight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := make(chan struct{})
			be := &inferencetest.Backend{Served: []inference.Model{{ID: "m", Simulated: true}}, Gate: gate, Chunks: []string{"hi"}}
			cfg := router.DefaultConfig("local")
			cfg.MaxPerClient = tt.maxPerClient
			cfg.FirstChunkTimeout = 10 * time.Second // before the limits, the 4th waited for it
			proxy, _ := limitMesh(t, cfg, be, tt.workerMax)
			greedy, honest := newClient(t, proxy), newClient(t, proxy)
			ctx := t.Context()

			held := make(chan *inference.Error, 3)
			for i := range 3 {
				go func() { held <- ask(ctx, greedy, proxy.ID(), fmt.Sprint("greedy-", i)) }()
			}
			p2ptest.Eventually(t, "the greedy client's 3 requests at the worker", func() bool { return be.Calls() == 3 })
			e := ask(ctx, greedy, proxy.ID(), "greedy-4")
			if e == nil || e.Code != inference.CodeOverloaded || !strings.Contains(e.Message, tt.wantRefusal) {
				t.Fatalf("the greedy client's 4th request: %v, want overloaded (%s)", e, tt.wantRefusal)
			}
			if n := be.Calls(); n != 3 {
				t.Fatalf("the worker got %d requests, want the greedy client's 3", n)
			}
			honestDone := make(chan *inference.Error, 1)
			go func() { honestDone <- ask(ctx, honest, proxy.ID(), "honest") }()
			p2ptest.Eventually(t, "the honest client's request at the worker", func() bool { return be.Calls() == 4 })
			close(gate)
			if e := p2ptest.WaitFor(t, honestDone, "the honest answer"); e != nil {
				t.Fatalf("the honest client: %v", e)
			}
			for range 3 {
				if e := p2ptest.WaitFor(t, held, "a greedy answer"); e != nil {
					t.Fatalf("a greedy request within its share: %v", e)
				}
			}
		})
	}
}

// TestClientThatStopsReading: a client that sends a request and stops
// reading its answer is cut off after WriteTimeout, and its worker's
// request is stopped and the worker's slot freed (issue 17, item 6);
// before, the worker stayed busy until MaxDuration (30 min).
func TestClientThatStopsReading(t *testing.T) {
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	chunk := strings.Repeat("x", 16<<10)
	be := &inferencetest.Backend{Served: []inference.Model{{ID: "m", Simulated: true}},
		Func: func(ctx context.Context, _ *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
			started <- struct{}{}
			for ctx.Err() == nil {
				if err := emit(inference.Chunk{Text: chunk}); err != nil {
					ended <- err
					return inference.Result{}, err
				}
			}
			ended <- ctx.Err()
			return inference.Result{}, ctx.Err()
		}}
	cfg := router.DefaultConfig("local")
	cfg.WriteTimeout = 300 * time.Millisecond
	proxy, r := limitMesh(t, cfg, be, 4)
	pool := newClient(t, proxy)

	call, err := pool.Send(t.Context(), proxy.ID(), &inference.Request{ID: "stalled", Kind: inference.KindChat, Model: "m", Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Done()
	p2ptest.WaitFor(t, started, "the worker to start")
	// The client reads nothing more.
	stopped := time.Now()
	p2ptest.WaitFor(t, ended, "the worker's request to end")
	p2ptest.Eventually(t, "the worker's slot freed at the proxy", func() bool {
		ws := r.Workers()
		return len(ws) == 1 && ws[0].Active == 0
	})
	t.Logf("a client that stopped reading held the worker for %s (write timeout %s)", time.Since(stopped).Round(time.Millisecond), cfg.WriteTimeout)
}
