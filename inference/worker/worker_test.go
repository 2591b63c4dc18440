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
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend runs the test's generate function.
type fakeBackend struct {
	generate func(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error)
}

func (f *fakeBackend) Models(context.Context) ([]inference.Model, error) {
	return []inference.Model{{ID: "m", Simulated: true}}, nil
}

func (f *fakeBackend) Generate(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
	return f.generate(ctx, req, emit)
}

var proto = p2p.ProtocolID("local", inference.ProtocolName, inference.ProtocolVersion)

// serve starts a worker for b on a fresh host and returns a connected
// requester host.
func serve(t *testing.T, b inference.Backend, maxConc int, allow func(peer.ID) bool) (server host.Host, requester host.Host) {
	t.Helper()
	server, requester = p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	w := worker.New(worker.Config{Network: "local", MaxConcurrent: maxConc}, server.ID(), b, allow, slog.New(slog.DiscardHandler))
	w.Register(sv)
	p2ptest.Connect(t, requester, server)
	return server, requester
}

func send(t *testing.T, requester host.Host, to peer.ID, body string) (network.Stream, *inference.ResponseReader) {
	t.Helper()
	s, err := requester.NewStream(t.Context(), to, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	req := &inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", Body: []byte(body)}
	if err := inference.WriteRequest(s, req); err != nil {
		t.Fatal(err)
	}
	return s, inference.NewResponseReader(s)
}

func allowAll(peer.ID) bool { return true }

func TestServe(t *testing.T) {
	b := &fakeBackend{generate: func(_ context.Context, _ *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
		for _, w := range []string{"a", "b"} {
			if err := emit(inference.Chunk{Text: w}); err != nil {
				return inference.Result{}, err
			}
		}
		return inference.Result{Usage: inference.Usage{PromptTokens: 1, CompletionTokens: 2}, FinishReason: "stop"}, nil
	}}
	w, r := serve(t, b, 4, allowAll)
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
		if text != "ab" || ev.End.Usage.CompletionTokens != 2 || ev.End.FinishReason != "stop" || ev.End.Worker != w.ID().String() {
			t.Fatalf("text %q, end %+v", text, ev.End)
		}
		return
	}
}

func TestRefusals(t *testing.T) {
	blocked := make(chan struct{})
	t.Cleanup(func() { close(blocked) })
	started := make(chan struct{}, 1)
	b := &fakeBackend{generate: func(ctx context.Context, req *inference.Request, _ func(inference.Chunk) error) (inference.Result, error) {
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

	t.Run("unattested", func(t *testing.T) {
		w, r := serve(t, b, 1, func(peer.ID) bool { return false })
		_, rr := send(t, r, w.ID(), "x")
		expectError(t, rr, inference.CodeUnattested)
	})
	t.Run("backend errors keep their code", func(t *testing.T) {
		w, r := serve(t, b, 1, allowAll)
		_, rr := send(t, r, w.ID(), "bad")
		expectError(t, rr, inference.CodeBadRequest)
		_, rr = send(t, r, w.ID(), "other")
		expectError(t, rr, inference.CodeEngine)
	})
	t.Run("overloaded", func(t *testing.T) {
		w, r := serve(t, b, 1, allowAll)
		send(t, r, w.ID(), "block")
		p2ptest.WaitFor(t, started, "the first request to start")
		_, rr := send(t, r, w.ID(), "x")
		expectError(t, rr, inference.CodeOverloaded)
	})
	t.Run("malformed request", func(t *testing.T) {
		w, r := serve(t, b, 1, allowAll)
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
	b := &fakeBackend{generate: func(ctx context.Context, _ *inference.Request, _ func(inference.Chunk) error) (inference.Result, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return inference.Result{}, ctx.Err()
	}}
	w, r := serve(t, b, 1, allowAll)
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
	var mu sync.Mutex
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ttfts := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}
	call := 0
	b := &fakeBackend{generate: func(_ context.Context, _ *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
		advance(ttfts[call])
		call++
		if err := emit(inference.Chunk{Text: "a"}); err != nil {
			return inference.Result{}, err
		}
		advance(time.Second) // 10 more tokens in a second
		return inference.Result{Usage: inference.Usage{CompletionTokens: 11}, FinishReason: "stop"}, nil
	}}
	server, requester := p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	w := worker.New(worker.Config{Network: "local", Now: clock}, server.ID(), b, allowAll, slog.New(slog.DiscardHandler))
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
	b := &fakeBackend{generate: func(_ context.Context, _ *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
		for _, w := range []string{"a", "b"} {
			if err := emit(inference.Chunk{Text: w}); err != nil {
				return inference.Result{}, err
			}
		}
		return inference.Result{Usage: inference.Usage{PromptTokens: 5, CachedTokens: 2, CompletionTokens: 2}, FinishReason: "stop"}, nil
	}}
	server, requester := p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	price := payments.Price{Prompt: 100, Cached: 10, Completion: 400}
	w := worker.New(worker.Config{Network: "local", Receipts: &worker.Receipts{
		Key:   server.Peerstore().PrivKey(server.ID()),
		Price: func(string) payments.Price { return price },
	}}, server.ID(), b, allowAll, slog.New(slog.DiscardHandler))
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
	b := &fakeBackend{generate: func(context.Context, *inference.Request, func(inference.Chunk) error) (inference.Result, error) {
		return inference.Result{FinishReason: "stop"}, nil
	}}
	server, requester := p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	var w *worker.Server
	activeAtEnd := make(chan int, 1)
	w = worker.New(worker.Config{Network: "local", MaxConcurrent: 1,
		Receipts: &worker.Receipts{Key: server.Peerstore().PrivKey(server.ID()), Price: func(string) payments.Price { return payments.Price{} }},
		// Served runs just before the End frame is written.
		Served: func(peer.ID, *payments.Receipt) { activeAtEnd <- w.Active() },
	}, server.ID(), b, allowAll, slog.New(slog.DiscardHandler))
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
