package testnet_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/openai/openai-go/v3"

	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestCancellation: an app that hangs up mid-stream makes the engine's
// request end, through client, proxy and worker.
func TestCancellation(t *testing.T) {
	engineDone := make(chan struct{})
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			fmt.Fprint(w, `{"data":[{"id":"endless"}]}`)
			return
		}
		defer close(engineDone)
		w.Header().Set("Content-Type", "text/event-stream")
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			fmt.Fprint(w, `data: {"choices":[{"index":0,"delta":{"content":"more "}}]}`+"\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}))
	defer engine.Close()

	h := testnet.New(t)
	h.AddWorker(func(c *config.Config) {
		c.Worker.Backend = "openai"
		c.Worker.OpenAI.URL = engine.URL + "/v1"
	})
	h.AddProxy()
	client := h.AddClient()

	ctx, cancel := context.WithCancel(t.Context())
	body := `{"model":"endless","stream":true,"messages":[{"role":"user","content":"go on"}]}`
	req, _ := http.NewRequestWithContext(ctx, "POST", testnet.BaseURL(client)+"/chat/completions", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	for events := 0; events < 3; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.HasPrefix(line, "data: {") {
			events++
		}
	}
	cancel()
	resp.Body.Close()
	p2ptest.WaitFor(t, engineDone, "the engine's request to end after the app hung up")
}

// TestFailover: a worker that dies before its first chunk does not fail
// the request; the next worker answers it.
func TestFailover(t *testing.T) {
	h := testnet.New(t)
	var dying *node.Node
	died := make(chan struct{})
	fake := &inferencetest.Backend{Served: inferencetest.Models("sim-small"), Func: func(ctx context.Context, _ *inference.Request, _ func(inference.Chunk) error) (inference.Result, error) {
		close(died)
		go dying.Close() // the whole node goes away mid-request
		<-ctx.Done()
		return inference.Result{}, ctx.Err()
	}}
	// The dying worker is the cheaper: the proxy tries it first, once it
	// holds both offers.
	fast := func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond) }
	dying = h.AddWorkerWith(fake, fast, func(c *config.Config) { c.Worker.Price = payments.Price{Prompt: 100, Completion: 100} })
	healthy := h.AddWorker(fast, func(c *config.Config) { c.Worker.Price = payments.Price{Prompt: 900, Completion: 900} })
	p := h.AddProxy(fast)
	client := h.AddClient()
	waitWorkerOffers(t, p, 2)

	c := sdk(client)
	resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "are you there?", 4))
	if err != nil {
		t.Fatalf("request failed although a healthy worker was left: %v", err)
	}
	select {
	case <-died:
	default:
		t.Fatal("the dying worker was never tried, so failover was not exercised")
	}
	if resp.Usage.CompletionTokens != 4 {
		t.Errorf("usage = %+v, want 4 completion tokens", resp.Usage)
	}
	served := servedBy(t, resp.RawJSON())
	if served != healthy.ID().String() {
		t.Errorf("served by %q, want the healthy worker %s", served, healthy.ID())
	}
}

// TestMidStreamFailure: a worker that fails after its first chunk ends the
// response with an error event, not a silent truncation or a [DONE].
func TestMidStreamFailure(t *testing.T) {
	h := testnet.New(t)
	h.AddWorkerWith(&inferencetest.Backend{Served: inferencetest.Models("flaky"), Chunks: []string{"one ", "two "},
		Err: errors.New("GPU fell off the bus")})
	h.AddProxy()
	client := h.AddClient()

	body := `{"model":"flaky","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(testnet.BaseURL(client)+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	s := string(b)
	if resp.StatusCode != 200 || !strings.Contains(s, `"content":"one "`) || !strings.Contains(s, `"content":"two "`) {
		t.Fatalf("status %d, stream %q: want both chunks", resp.StatusCode, s)
	}
	if !strings.Contains(s, `data: {"error":`) || strings.Contains(s, "[DONE]") {
		t.Errorf("stream %q: want an error event and no [DONE]", s)
	}

	// The SDK surfaces it as a stream error.
	c := sdk(client)
	p := chatParams("flaky", "hi", 5)
	stream := c.Chat.Completions.NewStreaming(t.Context(), p)
	for stream.Next() {
	}
	if stream.Err() == nil {
		t.Error("SDK stream ended without an error")
	}
	stream.Close()
}

// TestPeerWithoutEvidenceServed: a peer that presents no evidence, and
// skipped even the handshake, is served by a worker and a proxy on a
// network without payments (on one with payments, it must open a channel:
// TestPaymentsEndToEnd); what it asks in the clear it gets in the clear,
// and a proxy needs no verdict on it to route.
func TestPeerWithoutEvidenceServed(t *testing.T) {
	h := testnet.New(t)
	w := h.AddWorker()
	p := h.AddProxy()
	h.AddClient() // the proxy routes once it has a worker; the client waits for that

	cfg := p2p.DefaultHostConfig()
	cfg.Listen = nil
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := p2p.NewHost(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	proto := p2p.ProtocolID("local", inference.ProtocolName, inference.ProtocolVersion)
	for _, target := range []*node.Node{w, p} {
		infos, err := discovery.ParseAddrs(target.Addrs())
		if err != nil {
			t.Fatal(err)
		}
		if err := stranger.Connect(t.Context(), infos[0]); err != nil {
			t.Fatal(err)
		}
		s, err := stranger.NewStream(t.Context(), target.ID(), proto)
		if err != nil {
			t.Fatal(err)
		}
		req := &inference.Request{ID: "x", Kind: inference.KindChat, Model: "sim-small",
			Body: []byte(`{"model":"sim-small","max_tokens":2,"messages":[{"role":"user","content":"hello"}]}`)}
		if err := inference.WriteRequest(s, req); err != nil {
			t.Fatal(err)
		}
		ev, err := inference.NewResponseReader(s).Next()
		if err != nil {
			t.Fatalf("%s: %v", target.ID(), err)
		}
		if ev.Type != inference.FrameChunk || len(ev.Text) == 0 {
			t.Errorf("%s answered a peer without evidence with %+v, want a chunk", target.ID(), ev)
		}
		if _, ok := target.Verified(stranger.ID()); ok {
			t.Errorf("%s holds a verdict on a peer that presented no evidence", target.ID())
		}
		s.Reset()
	}
}

// TestProxyFailover: a client that knows two proxies keeps serving when
// one of them goes away.
func TestProxyFailover(t *testing.T) {
	h := testnet.New(t)
	h.AddWorker()
	first := h.AddProxy()
	h.AddProxy()
	client := h.AddClient()

	c := sdk(client)
	for i := range 4 { // both proxies carry requests and hold pooled streams
		if _, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", fmt.Sprintf("warm %d", i), 2)); err != nil {
			t.Fatal(err)
		}
	}
	first.Close()
	for i := range 6 {
		resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", fmt.Sprintf("after %d", i), 3))
		if err != nil {
			t.Fatalf("request %d after a proxy left: %v", i, err)
		}
		if resp.Usage.CompletionTokens != 3 {
			t.Fatalf("usage %+v", resp.Usage)
		}
	}
}

// TestLateWorker: a worker that joins a running proxy gets traffic once
// its offer arrives, and one that leaves stops getting it when its offer
// expires.
func TestLateWorker(t *testing.T) {
	fast := func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond) }
	h := testnet.New(t)
	p := h.AddProxyAlone(fast)
	w := h.AddWorker(fast, testnet.Joining(p))
	client := h.AddClient() // ready once the proxy serves a model: from w's offer

	c := sdk(client)
	resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "late", 2))
	if err != nil {
		t.Fatal(err)
	}
	served := servedBy(t, resp.RawJSON())
	if served != w.ID().String() {
		t.Fatalf("served by %q, want the late worker %s", served, w.ID())
	}

	w.Close()
	p2ptest.Eventually(t, "the gone worker's model to leave the catalog", func() bool { return !hasModel(t, client, "sim-small") })
	_, err = c.Chat.Completions.New(t.Context(), chatParams("sim-small", "anyone?", 2))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
		t.Fatalf("after the worker left: %v, want 503 (model known, nobody serving it)", err)
	}
}
