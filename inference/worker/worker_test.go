package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// served is what the tests' backends serve.
var served = []inference.Model{{ID: "m", Simulated: true}}

var proto = p2p.ProtocolID("local", inference.ProtocolName, inference.ProtocolVersion)

// settler is a fake Settler: it admits proxies unless refuse is set, and
// calls served with each amount it is told of.
type settler struct {
	mu     sync.Mutex // guards refuse
	refuse error
	served func(proxy peer.ID, amount uint64)
}

func (s *settler) Admit(peer.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refuse
}

func (s *settler) Served(p peer.ID, amount uint64) {
	if s.served != nil {
		s.served(p, amount)
	}
}

// flatPrice is a worker's price for every model.
type flatPrice payments.Price

func (p flatPrice) Price(string) payments.Price { return payments.Price(p) }

// serve starts a worker for b on a fresh host and returns a connected
// requester host.
func serve(t *testing.T, b inference.Backend, maxConc int) (server host.Host, requester host.Host) {
	t.Helper()
	server, requester = p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	w := worker.New(worker.Config{Network: "local", MaxConcurrent: maxConc}, server.ID(), b, nil, slog.New(slog.DiscardHandler))
	w.Register(sv)
	p2ptest.Connect(t, requester, server)
	return server, requester
}

func send(t *testing.T, requester host.Host, to peer.ID, body string) (network.Stream, *inference.ResponseReader) {
	t.Helper()
	return sendReq(t, requester, to, &inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", Body: []byte(body)})
}

// sendReq sends req to to on a new stream, reset at cleanup.
func sendReq(t *testing.T, requester host.Host, to peer.ID, req *inference.Request) (network.Stream, *inference.ResponseReader) {
	t.Helper()
	s, err := requester.NewStream(t.Context(), to, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	if err := inference.WriteRequest(s, req); err != nil {
		t.Fatal(err)
	}
	return s, inference.NewResponseReader(s)
}

func TestServe(t *testing.T) {
	b := &inferencetest.Backend{Served: served, Chunks: []string{"a", "b"},
		Result: inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 1, Completion: 2}}, FinishReason: "stop"}}
	w, r := serve(t, b, 4)
	_, rr := send(t, r, w.ID(), `{}`)
	var text string
	for {
		ev, err := rr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == inference.FrameChunk {
			text += string(ev.Text)
			continue
		}
		if ev.Type != inference.FrameEnd {
			t.Fatalf("event %+v", ev)
		}
		if text != "ab" || ev.End.Usage.Completion != 2 || ev.End.FinishReason != "stop" || ev.End.Worker != w.ID().String() {
			t.Fatalf("text %q, end %+v", text, ev.End)
		}
		return
	}
}

func TestRefusals(t *testing.T) {
	blocked := make(chan struct{})
	t.Cleanup(func() { close(blocked) })
	started := make(chan struct{}, 1)
	b := &inferencetest.Backend{Served: served, Func: func(ctx context.Context, req *inference.Request, _ func(inference.Chunk) error) (inference.Result, error) {
		switch string(req.Body) {
		case "block":
			started <- struct{}{}
			select {
			case <-blocked:
			case <-ctx.Done():
			}
			return inference.Result{}, ctx.Err()
		case "bad":
			return inference.Result{}, inference.Errorf(inference.CodeBadRequest, "no")
		}
		return inference.Result{}, errors.New("engine down")
	}}

	t.Run("backend errors keep their code", func(t *testing.T) {
		w, r := serve(t, b, 1)
		_, rr := send(t, r, w.ID(), "bad")
		expectError(t, rr, inference.CodeBadRequest)
		_, rr = send(t, r, w.ID(), "other")
		expectError(t, rr, inference.CodeEngine)
	})
	t.Run("overloaded", func(t *testing.T) {
		w, r := serve(t, b, 1)
		send(t, r, w.ID(), "block")
		p2ptest.WaitFor(t, started, "the first request to start")
		_, rr := send(t, r, w.ID(), "x")
		expectError(t, rr, inference.CodeOverloaded)
	})
	t.Run("a body asking more than its header's max tokens", func(t *testing.T) {
		w, r := serve(t, b, 1)
		for _, body := range []string{`{"max_tokens":11}`, `{"max_tokens":6,"n":2}`, `{}`} {
			_, rr := sendReq(t, r, w.ID(), &inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", MaxTokens: 10, Body: []byte(body)})
			expectError(t, rr, inference.CodeBadRequest)
		}
		// Within it, the request reaches the backend (which fails it here).
		_, rr := sendReq(t, r, w.ID(), &inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", MaxTokens: 10, Body: []byte(`{"max_tokens":5,"n":2}`)})
		expectError(t, rr, inference.CodeEngine)
	})
	t.Run("malformed request", func(t *testing.T) {
		w, r := serve(t, b, 1)
		s, err := r.NewStream(t.Context(), w.ID(), proto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		if err := p2p.WriteFrame(s, inference.FrameRequest, []byte{9}); err != nil {
			t.Fatal(err)
		}
		expectError(t, inference.NewResponseReader(s), inference.CodeBadRequest)
	})
}

// TestCancel: a requester that resets its stream cancels the backend.
func TestCancel(t *testing.T) {
	cancelled := make(chan struct{})
	started := make(chan struct{})
	b := &inferencetest.Backend{Served: served, Func: func(ctx context.Context, _ *inference.Request, _ func(inference.Chunk) error) (inference.Result, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return inference.Result{}, ctx.Err()
	}}
	w, r := serve(t, b, 1)
	s, _ := send(t, r, w.ID(), "x")
	p2ptest.WaitFor(t, started, "the backend to start")
	s.Reset()
	p2ptest.WaitFor(t, cancelled, "the backend to see the cancellation")
}

func expectError(t *testing.T, rr *inference.ResponseReader, code inference.Code) {
	t.Helper()
	ev, err := rr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != inference.FrameError || ev.Err.Code != code {
		t.Fatalf("got %+v (%+v), want error %v", ev, ev.Err, code)
	}
}

// The worker measures time to first chunk and generation speed on its own
// clock, as moving averages over successful requests.
func TestStats(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	ttfts := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}
	call := 0
	b := &inferencetest.Backend{Served: served, Func: func(_ context.Context, _ *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
		clock.Advance(ttfts[call])
		call++
		if err := emit(inference.Chunk{Text: "a"}); err != nil {
			return inference.Result{}, err
		}
		clock.Advance(time.Second) // 10 more tokens in a second
		return inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Completion: 11}}, FinishReason: "stop"}, nil
	}}
	server, requester := p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	w := worker.New(worker.Config{Network: "local", Now: clock.Now}, server.ID(), b, nil, slog.New(slog.DiscardHandler))
	w.Register(sv)
	p2ptest.Connect(t, requester, server)
	if s := w.Stats(); s != (worker.Stats{}) {
		t.Fatalf("stats before any request: %+v", s)
	}
	for i := range ttfts {
		_, rr := send(t, requester, server.ID(), `{}`)
		for {
			ev, err := rr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type == inference.FrameEnd {
				break
			}
		}
		p2ptest.Eventually(t, "the request to be measured", func() bool { return w.Stats().Served == int64(i+1) })
	}
	s := w.Stats()
	if s.TTFT != 140*time.Millisecond { // 0.8*100ms + 0.2*300ms
		t.Errorf("TTFT = %v, want 140ms", s.TTFT)
	}
	if s.TokensPerSec < 9.99 || s.TokensPerSec > 10.01 {
		t.Errorf("TokensPerSec = %v, want 10", s.TokensPerSec)
	}
}

// A worker with receipts signs one for each answer: what it was asked,
// what it streamed, the tokens and its price, for the proxy it answered.
func TestReceipt(t *testing.T) {
	b := &inferencetest.Backend{Served: served, Chunks: []string{"a", "b"},
		Result: inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 5, Cached: 2, Completion: 2}}, FinishReason: "stop"}}
	server, requester := p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	price := payments.Price{Prompt: 100, Cached: 10, Completion: 400}
	w := worker.New(worker.Config{Network: "local", Receipts: &worker.Receipts{
		Key:    server.Peerstore().PrivKey(server.ID()),
		Prices: flatPrice(price),
	}}, server.ID(), b, nil, slog.New(slog.DiscardHandler))
	w.Register(sv)
	p2ptest.Connect(t, requester, server)
	_, rr := send(t, requester, server.ID(), `{"q":1}`)
	for {
		ev, err := rr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != inference.FrameEnd {
			continue
		}
		r, err := payments.Verify(ev.End.Receipt, server.ID())
		if err != nil {
			t.Fatal(err)
		}
		want := &payments.Receipt{RequestID: "r", RequestHash: payments.Hash([]byte(`{"q":1}`)), ResponseHash: payments.Hash([]byte("ab")),
			Model: "m", Tokens: payments.Tokens{Prompt: 5, Cached: 2, Completion: 2}, Price: price, Worker: server.ID(), Proxy: requester.ID()}
		if err := payments.Check(r, want); err != nil {
			t.Fatal(err)
		}
		if r.Time == 0 {
			t.Fatal("receipt without a time")
		}
		return
	}
}

// A worker frees a request's slot before its final frame goes out, so a
// requester that reads the answer and sends its next request straight away
// is never refused as overloaded by a slot its last request still held.
func TestSlotFreedBeforeEnd(t *testing.T) {
	b := &inferencetest.Backend{Served: served,
		Result: inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Completion: 1}}, FinishReason: "stop"}}
	server, requester := p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	var w *worker.Server
	activeAtEnd := make(chan int, 1)
	// The settler is told of the answer just before the End frame is
	// written: the answer is paid for, so that it is told.
	s := &settler{served: func(peer.ID, uint64) { activeAtEnd <- w.Active() }}
	w = worker.New(worker.Config{Network: "local", MaxConcurrent: 1,
		Receipts: &worker.Receipts{Key: server.Peerstore().PrivKey(server.ID()), Prices: flatPrice{Completion: 1}},
	}, server.ID(), b, s, slog.New(slog.DiscardHandler))
	w.Register(sv)
	p2ptest.Connect(t, requester, server)
	_, rr := send(t, requester, server.ID(), `{}`)
	if ev, err := rr.Next(); err != nil || ev.Type != inference.FrameEnd {
		t.Fatalf("got %+v, %v; want the end", ev, err)
	}
	if n := <-activeAtEnd; n != 0 {
		t.Fatalf("%d slot(s) still held as the end was written", n)
	}
}

// TestPayments: a proxy the settler refuses gets payment_required, saying
// why, and its request never reaches the backend; a proxy served owes the
// worker's amount of each answer: its receipt's tokens at its price.
func TestPayments(t *testing.T) {
	var mu sync.Mutex // guards owed
	var owed []uint64
	b := &inferencetest.Backend{Served: served, Chunks: []string{"a"},
		Result: inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 5, Cached: 2, Completion: 2}}, FinishReason: "stop"}}
	server, requester := p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	s := &settler{refuse: errors.New("proxy owes 5 nanoTON beyond credit"), served: func(p peer.ID, amount uint64) {
		if p != requester.ID() {
			t.Errorf("served %s, want the requester", p)
		}
		mu.Lock()
		owed = append(owed, amount)
		mu.Unlock()
	}}
	price := payments.Price{Prompt: 1_000_000, Cached: 500_000, Completion: 2_000_000} // 3 + 1 + 4 = 8 nanoTON
	w := worker.New(worker.Config{Network: "local", Receipts: &worker.Receipts{
		Key: server.Peerstore().PrivKey(server.ID()), Prices: flatPrice(price)},
	}, server.ID(), b, s, slog.New(slog.DiscardHandler))
	w.Register(sv)
	p2ptest.Connect(t, requester, server)

	_, rr := send(t, requester, server.ID(), `{}`)
	ev, err := rr.Next()
	if err != nil || ev.Type != inference.FrameError || ev.Err.Code != inference.CodePaymentRequired ||
		ev.Err.Message != "payment required: proxy owes 5 nanoTON beyond credit" {
		t.Fatalf("got %+v (%+v), %v; want payment_required saying why", ev, ev.Err, err)
	}
	mu.Lock()
	if generated := b.Calls(); generated != 0 || len(owed) != 0 {
		t.Fatalf("a refused proxy's request was generated %d times, owed %v", generated, owed)
	}
	mu.Unlock()
	s.mu.Lock()
	s.refuse = nil
	s.mu.Unlock()
	_, rr = send(t, requester, server.ID(), `{}`)
	for {
		ev, err := rr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == inference.FrameEnd {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(owed) != 1 || owed[0] != 8 {
		t.Fatalf("owed %v, want one answer of 8 nanoTON", owed)
	}
}
