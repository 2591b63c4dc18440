package testnet_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/backend/openai/openaitest"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// simNet is the network most tests share the shape of: two sim workers, a
// proxy and a client.
func simNet(t *testing.T, mods ...testnet.Modify) (*testnet.Harness, *node.Node) {
	t.Helper()
	h := testnet.New(t)
	h.AddWorker(mods...)
	h.AddWorker(mods...)
	h.AddProxy()
	return h, h.AddClient()
}

func sdk(client *node.Node, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(testnet.BaseURL(client)), option.WithAPIKey("unused"), option.WithMaxRetries(0),
	}, opts...)...)
}

func chatParams(model, prompt string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:     model,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens: openai.Int(maxTokens),
	}
}

func TestModels(t *testing.T) {
	_, client := simNet(t)
	resp, err := http.Get(testnet.BaseURL(client) + "/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	c := sdk(client)
	page, err := c.Models.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != "sim-small" {
		t.Fatalf("models = %+v, want just sim-small", page.Data)
	}
	var extra struct {
		Simulated bool `json:"simulated"`
		Workers   int  `json:"workers"`
	}
	if err := json.Unmarshal([]byte(page.Data[0].RawJSON()), &extra); err != nil {
		t.Fatal(err)
	}
	if !extra.Simulated || extra.Workers != 2 || page.Data[0].OwnedBy != "cocoon-sim" {
		t.Errorf("sim-small: simulated=%v workers=%d owned_by=%q, want labelled simulated with 2 workers", extra.Simulated, extra.Workers, page.Data[0].OwnedBy)
	}
}

func TestChat(t *testing.T) {
	_, client := simNet(t)
	c := sdk(client)
	ctx := t.Context()

	whole, err := c.Chat.Completions.New(ctx, chatParams("sim-small", "tell me about cocoons", 7))
	if err != nil {
		t.Fatal(err)
	}
	if len(whole.Choices) != 1 || whole.Choices[0].Message.Content == "" {
		t.Fatalf("no answer: %+v", whole)
	}
	if whole.Usage.CompletionTokens != 7 || whole.Usage.PromptTokens < 1 || whole.Usage.TotalTokens != whole.Usage.PromptTokens+7 {
		t.Errorf("usage = %+v, want 7 completion tokens", whole.Usage)
	}
	if whole.Choices[0].FinishReason != "length" {
		t.Errorf("finish_reason = %q, want length", whole.Choices[0].FinishReason)
	}

	p := chatParams("sim-small", "tell me about cocoons", 7)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, p)
	var text strings.Builder
	var chunks int
	var usage openai.CompletionUsage
	var raw string
	for stream.Next() {
		ch := stream.Current()
		for _, choice := range ch.Choices {
			text.WriteString(choice.Delta.Content)
			chunks++
		}
		if ch.Usage.TotalTokens > 0 {
			usage, raw = ch.Usage, ch.RawJSON()
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	stream.Close()
	if text.String() != whole.Choices[0].Message.Content {
		t.Errorf("streamed %q, whole answer %q: the sim is deterministic, they must match", text.String(), whole.Choices[0].Message.Content)
	}
	if chunks != 7 {
		t.Errorf("got %d content chunks, want 7", chunks)
	}
	if usage.CompletionTokens != 7 || usage.PromptTokens != whole.Usage.PromptTokens {
		t.Errorf("streamed usage = %+v, want the same as the whole answer's %+v", usage, whole.Usage)
	}
	var ext struct {
		Cocoon struct {
			Worker    string `json:"worker"`
			Tier      string `json:"tier"`
			Simulated bool   `json:"simulated"`
		} `json:"cocoon"`
	}
	if err := json.Unmarshal([]byte(raw), &ext); err != nil {
		t.Fatal(err)
	}
	if ext.Cocoon.Worker == "" || ext.Cocoon.Tier != "dev" || !ext.Cocoon.Simulated {
		t.Errorf("usage chunk says %+v, want the worker, tier dev, simulated", ext.Cocoon)
	}
}

func TestCompletions(t *testing.T) {
	_, client := simNet(t)
	c := sdk(client)
	params := openai.CompletionNewParams{
		Model:     "sim-small",
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(5),
	}
	whole, err := c.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if whole.Usage.CompletionTokens != 5 || len(whole.Choices) != 1 || whole.Choices[0].Text == "" {
		t.Fatalf("completion = %+v", whole)
	}
	stream := c.Completions.NewStreaming(t.Context(), params)
	var text strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			text.WriteString(ch.Text)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != whole.Choices[0].Text {
		t.Errorf("streamed %q, whole %q", text.String(), whole.Choices[0].Text)
	}
}

// TestStreamEndsWithDone checks the SSE framing byte for byte at the end.
func TestStreamEndsWithDone(t *testing.T) {
	_, client := simNet(t)
	body := `{"model":"sim-small","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(testnet.BaseURL(client)+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !bytes.HasSuffix(b, []byte("\n\ndata: [DONE]\n\n")) || bytes.Count(b, []byte("data: {")) != 3 {
		t.Errorf("stream = %q, want 3 data events then data: [DONE]", b)
	}
	if bytes.Contains(b, []byte(`"usage"`)) {
		t.Errorf("usage sent without stream_options.include_usage")
	}
}

func TestErrors(t *testing.T) {
	h := testnet.New(t)
	h.AddWorker()
	h.AddWorker(func(c *config.Config) {
		c.Worker.Sim.Models = []string{"slow"}
		c.Worker.Sim.TTFT = config.Duration(time.Minute)
	})
	doomed := h.AddWorker(func(c *config.Config) { c.Worker.Sim.Models = []string{"doomed"} })
	h.AddWorkerWith(&inferencetest.Backend{Served: inferencetest.Models("broken"), Err: errors.New("engine on fire")})
	proxy := h.AddProxy()
	client := h.AddClient(func(c *config.Config) { c.Client.RequestTimeout = config.Duration(300 * time.Millisecond) })

	// "doomed" becomes a model the network knows but no worker serves.
	doomed.Close()
	if err := waitFor(t.Context(), 20*time.Second, func() bool {
		if !hasModel(t, client, "doomed") {
			return true
		}
		proxy.Poke()
		return false
	}); err != nil {
		t.Fatal("the proxy never noticed the worker left")
	}

	big := `{"model":"sim-small","messages":[{"role":"user","content":"` + strings.Repeat("a", inference.MaxBodyBytes) + `"}]}`
	tests := []struct {
		name   string
		path   string
		body   string
		status int
		param  string
		code   string
	}{
		{"malformed JSON", "/chat/completions", `{"model": "sim-small",`, 400, "", ""},
		{"not an object", "/chat/completions", `[1,2]`, 400, "", ""},
		{"missing model", "/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "model", ""},
		{"model not a string", "/chat/completions", `{"model":7,"messages":[{"role":"user","content":"hi"}]}`, 400, "model", ""},
		{"missing messages", "/chat/completions", `{"model":"sim-small"}`, 400, "messages", ""},
		{"empty messages", "/chat/completions", `{"model":"sim-small","messages":[]}`, 400, "messages", ""},
		{"bad role", "/chat/completions", `{"model":"sim-small","messages":[{"role":"wizard","content":"hi"}]}`, 400, "messages[0].role", ""},
		{"bad temperature", "/chat/completions", `{"model":"sim-small","temperature":"hot","messages":[{"role":"user","content":"hi"}]}`, 400, "temperature", ""},
		{"bad max_tokens", "/chat/completions", `{"model":"sim-small","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, 400, "max_tokens", ""},
		{"bad stream", "/chat/completions", `{"model":"sim-small","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "stream", ""},
		{"missing prompt", "/completions", `{"model":"sim-small"}`, 400, "prompt", ""},
		{"unknown model", "/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, 404, "", "model_not_found"},
		{"body too large", "/chat/completions", big, 413, "", "request_too_large"},
		{"no worker for the model", "/chat/completions", `{"model":"doomed","messages":[{"role":"user","content":"hi"}]}`, 503, "", "no_worker_available"},
		{"worker failure", "/chat/completions", `{"model":"broken","messages":[{"role":"user","content":"hi"}]}`, 502, "", "engine_error"},
		{"upstream timeout", "/chat/completions", `{"model":"slow","messages":[{"role":"user","content":"hi"}]}`, 504, "", "upstream_timeout"},
		{"unknown path", "/audio/speech", `{}`, 404, "", "unknown_url"},
		{"embeddings without input", "/embeddings", `{"model":"sim-small"}`, 400, "input", ""},
		{"embeddings from a chat model", "/embeddings", `{"model":"sim-small","input":"x"}`, 400, "model", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(testnet.BaseURL(client)+tt.path, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("status %d, body is not an OpenAI error object: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d (%s)", resp.StatusCode, tt.status, e.Error.Message)
			}
			if e.Error.Message == "" || e.Error.Type == "" {
				t.Errorf("error object lacks message or type: %+v", e.Error)
			}
			if tt.param != "" && (e.Error.Param == nil || *e.Error.Param != tt.param) {
				t.Errorf("param = %v, want %q", e.Error.Param, tt.param)
			}
			if tt.code != "" && (e.Error.Code == nil || *e.Error.Code != tt.code) {
				t.Errorf("code = %v, want %q", e.Error.Code, tt.code)
			}
		})
	}

	// The SDK sees the same errors as typed errors.
	c := sdk(client)
	_, err := c.Chat.Completions.New(t.Context(), chatParams("gpt-9", "hi", 3))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("SDK error = %v, want a 404 model_not_found", err)
	}
}

func hasModel(t *testing.T, client *node.Node, id string) bool {
	t.Helper()
	c := sdk(client)
	page, err := c.Models.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range page.Data {
		if m.ID == id {
			return true
		}
	}
	return false
}

func TestAPIKey(t *testing.T) {
	h := testnet.New(t)
	h.AddWorker()
	h.AddProxy()
	client := h.AddClient(func(c *config.Config) { c.Client.APIKey = "s3cret" })

	wrong := sdk(client, option.WithAPIKey("wrong"))
	_, err := wrong.Chat.Completions.New(t.Context(), chatParams("sim-small", "hi", 2))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Fatalf("wrong key: err = %v, want 401", err)
	}
	right := sdk(client, option.WithAPIKey("s3cret"))
	if _, err := right.Chat.Completions.New(t.Context(), chatParams("sim-small", "hi", 2)); err != nil {
		t.Fatalf("right key: %v", err)
	}
}

// TestNonLoopbackNeedsKey: the client refuses to expose its API beyond
// loopback without a key.
func TestNonLoopbackNeedsKey(t *testing.T) {
	cfg := config.Default(config.RoleClient)
	cfg.DataDir = t.TempDir()
	cfg.Client.Proxies = []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWNFpLXoNSakESamyTHGDZ2Ehj6m2SAwiMHyyNnrsHsZwf"}
	cfg.Client.APIAddr = "0.0.0.0:10000"
	if _, err := node.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "api_addr") {
		t.Fatalf("err = %v, want a refusal naming client.api_addr", err)
	}
}

// TestOffersGossiped: workers and proxies announce signed offers over
// gossipsub, and each keeps the other's in its offer book.
func TestOffersGossiped(t *testing.T) {
	h := testnet.New(t)
	w := h.AddWorker(func(c *config.Config) {
		c.Worker.Price = payments.Price{Prompt: 7, Cached: 1, Completion: 21}
		c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond)
	})
	p := h.AddProxy(func(c *config.Config) {
		c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond)
		c.Proxy.FeePPM = 30_000
	})
	find := func(in *node.Node, id string) *offers.Offer {
		for _, o := range in.Offers() {
			if o.Peer == id {
				return o
			}
		}
		return nil
	}
	p2ptest.Eventually(t, "the worker's offer in the proxy's book", func() bool { return find(p, w.ID().String()) != nil })
	o := find(p, w.ID().String())
	if o.Role != offers.RoleWorker || len(o.Models) != 1 || o.Models[0].ID != "sim-small" ||
		o.Models[0].Price != (payments.Price{Prompt: 7, Cached: 1, Completion: 21}) || o.Tier != "dev" || o.MaxConcurrent != 64 ||
		len(o.Attestation) != 32 {
		t.Fatalf("worker offer as the proxy holds it: %+v", o)
	}
	p2ptest.Eventually(t, "the proxy's offer in the worker's book", func() bool { return find(w, p.ID().String()) != nil })
	if po := find(w, p.ID().String()); po.Role != offers.RoleProxy || len(po.Addrs) == 0 || po.FeePPM != 30_000 {
		t.Fatalf("proxy offer: %+v", po)
	}

	// Once it has served, the worker announces what it measured.
	client := h.AddClient()
	c := sdk(client)
	if _, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "measure me", 8)); err != nil {
		t.Fatal(err)
	}
	p2ptest.Eventually(t, "measured speed in the worker's offer", func() bool {
		o := find(p, w.ID().String())
		return o != nil && o.TokensPerSec > 0
	})
}

// TestCheapestWorkerServes: of two idle workers, the proxy routes to the
// one whose offer asks less.
func TestCheapestWorkerServes(t *testing.T) {
	fast := func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond) }
	h := testnet.New(t)
	dear := h.AddWorker(fast, func(c *config.Config) { c.Worker.Price = payments.Price{Prompt: 900, Completion: 900} })
	cheap := h.AddWorker(fast, func(c *config.Config) { c.Worker.Price = payments.Price{Prompt: 100, Completion: 100} })
	p := h.AddProxy(fast)
	client := h.AddClient()
	waitWorkerOffers(t, p, 2)

	c := sdk(client)
	for i := range 3 {
		resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", fmt.Sprintf("price %d", i), 2))
		if err != nil {
			t.Fatal(err)
		}
		served := servedBy(t, resp.RawJSON())
		if served != cheap.ID().String() {
			t.Fatalf("request %d served by %s, want the cheaper worker %s (not %s)", i, served, cheap.ID(), dear.ID())
		}
	}
}

// servedBy is the worker a response names in its "cocoon" extension.
func servedBy(t *testing.T, raw string) string {
	t.Helper()
	var ext struct {
		Cocoon struct {
			Worker string `json:"worker"`
		} `json:"cocoon"`
	}
	if err := json.Unmarshal([]byte(raw), &ext); err != nil {
		t.Fatal(err)
	}
	return ext.Cocoon.Worker
}

// A client's maximum price, its proxy's fee included, keeps dearer
// workers out; under every offer the client gets 503 price_too_high.
func TestMaxPrice(t *testing.T) {
	fast := func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond) }
	h := testnet.New(t)
	h.AddWorker(fast, func(c *config.Config) { c.Worker.Price = payments.Price{Prompt: 100, Completion: 100} })
	p := h.AddProxy(fast, func(c *config.Config) { c.Proxy.FeePPM = 100_000 }) // 10%: the worker costs 220
	p2ptest.Eventually(t, "the worker's offer at the proxy", func() bool { return len(p.Offers()) >= 2 })
	client := h.AddClient(func(c *config.Config) { c.Client.MaxPrice = 220 })
	c := sdk(client)
	if _, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "within", 2)); err != nil {
		t.Fatalf("at the maximum: %v", err)
	}
	_, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "too dear", 2),
		option.WithHeader("X-Cocoon-Max-Price", "219"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != "price_too_high" {
		t.Fatalf("under the price with the fee: %v, want 503 price_too_high", err)
	}
}

// A client's minimum trust tier keeps its prompts from workers below it:
// with only dev workers, a client that wants tee gets 503 trust_too_low;
// one that accepts dev gets an answer naming the tier that served it.
func TestMinTrust(t *testing.T) {
	fast := func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond) }
	h := testnet.New(t)
	h.AddWorker(fast)
	p := h.AddProxy(fast)
	p2ptest.Eventually(t, "the worker's offer at the proxy", func() bool {
		for _, o := range p.Offers() {
			if o.Role == offers.RoleWorker {
				return o.Tier == "dev" // the tier of the worker's own evidence
			}
		}
		return false
	})

	strict := sdk(h.AddClient(func(c *config.Config) { c.Client.MinTrust = "tee" }))
	_, err := strict.Chat.Completions.New(t.Context(), chatParams("sim-small", "only tee", 2))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != "trust_too_low" ||
		!strings.Contains(apiErr.Message, "tee") || !strings.Contains(apiErr.Message, "best available: dev") {
		t.Fatalf("client with min_trust tee: %v, want 503 trust_too_low naming tee and dev", err)
	}

	lax := sdk(h.AddClient(func(c *config.Config) { c.Client.MinTrust = "dev" }))
	var httpResp *http.Response
	resp, err := lax.Chat.Completions.New(t.Context(), chatParams("sim-small", "dev is fine", 2), option.WithResponseInto(&httpResp))
	if err != nil {
		t.Fatalf("client with min_trust dev: %v", err)
	}
	var ext struct {
		Cocoon struct {
			Tier string `json:"tier"`
		} `json:"cocoon"`
	}
	if err := json.Unmarshal([]byte(resp.RawJSON()), &ext); err != nil || ext.Cocoon.Tier != "dev" {
		t.Fatalf("cocoon.tier %q (%v), want dev", ext.Cocoon.Tier, err)
	}
	if got := httpResp.Header.Get("X-Cocoon-Tier"); got != "dev" {
		t.Fatalf("X-Cocoon-Tier %q, want dev", got)
	}
	// The app may ask for more than the node's minimum, per request.
	_, err = lax.Chat.Completions.New(t.Context(), chatParams("sim-small", "tee now", 2),
		option.WithHeader("X-Cocoon-Min-Trust", "tee-gpu"))
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != "trust_too_low" {
		t.Fatalf("X-Cocoon-Min-Trust tee-gpu: %v, want 503 trust_too_low", err)
	}
}

// The response's usage says what the answer cost: the worker's offered
// prices times the tokens, plus the proxy's fee.
func TestCostInUsage(t *testing.T) {
	fast := func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(100 * time.Millisecond) }
	h := testnet.New(t)
	h.AddWorker(fast, func(c *config.Config) {
		c.Worker.Price = payments.Price{Prompt: 1_000_000_000, Cached: 1, Completion: 2_000_000_000} // 1000 and 2000 nanoTON a token
	})
	p := h.AddProxy(fast, func(c *config.Config) { c.Proxy.FeePPM = 50_000 }) // 5%
	waitWorkerOffers(t, p, 1)
	client := h.AddClient()
	c := sdk(client)
	resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "what does this cost?", 4))
	if err != nil {
		t.Fatal(err)
	}
	var ext struct {
		Cocoon struct {
			Cost    *payments.Bill `json:"cost_nanoton"`
			Worker  string         `json:"worker"`
			Receipt []byte         `json:"receipt"`
		} `json:"cocoon"`
	}
	if err := json.Unmarshal([]byte(resp.RawJSON()), &ext); err != nil {
		t.Fatal(err)
	}
	worker := 1000*resp.Usage.PromptTokens + 2000*resp.Usage.CompletionTokens
	want := payments.Bill{Worker: worker, Fee: worker / 20, Total: worker + worker/20}
	if ext.Cocoon.Cost == nil || *ext.Cocoon.Cost != want || worker == 0 {
		t.Fatalf("cost %+v for %d prompt and %d completion tokens, want %+v", ext.Cocoon.Cost, resp.Usage.PromptTokens, resp.Usage.CompletionTokens, want)
	}
	// The worker's signed receipt comes with the answer: its tokens, its
	// price, and the proxy it answered through.
	workerID, err := peer.Decode(ext.Cocoon.Worker)
	if err != nil {
		t.Fatal(err)
	}
	r, err := payments.Verify(ext.Cocoon.Receipt, workerID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Proxy != p.ID() || r.Tokens.Completion != resp.Usage.CompletionTokens || r.Price.Completion != 2_000_000_000 ||
		r.ResponseHash != payments.Hash([]byte(resp.Choices[0].Message.Content)) {
		t.Fatalf("receipt %+v does not describe this answer through %s", r, p.ID())
	}
}

// TestPricePerModel: a worker asks worker.prices for the models named
// there and worker.price for the others; its receipts bill each model at
// its own price, and the proxy accepts them (it checks them against the
// offer).
func TestPricePerModel(t *testing.T) {
	h := testnet.New(t)
	base := payments.Price{Prompt: 100_000_000, Completion: 200_000_000}
	dear := payments.Price{Prompt: 900_000_000, Cached: 1, Completion: 1_800_000_000}
	h.AddWorker(func(c *config.Config) {
		c.Worker.Sim.Models = []string{"cheap-model", "dear-model"}
		c.Worker.Price = base
		c.Worker.Prices = map[string]payments.Price{"dear-model": dear}
	})
	h.AddProxy()
	client := h.AddClient()
	for model, want := range map[string]payments.Price{"cheap-model": base, "dear-model": dear} {
		resp, body := openaitest.Post(t, testnet.BaseURL(client), "/chat/completions", openaitest.ChatRequest(model, 1, nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", model, resp.StatusCode, body)
		}
		r := receiptOf(t, body)
		if r.Price != want {
			t.Errorf("%s billed at %+v, want %+v", model, r.Price, want)
		}
	}
}

// waitWorkerOffers waits until proxy p holds n workers' offers.
func waitWorkerOffers(t *testing.T, p *node.Node, n int) {
	t.Helper()
	p2ptest.Eventually(t, fmt.Sprintf("%d workers' offers at the proxy", n), func() bool {
		got := 0
		for _, o := range p.Offers() {
			if o.Role == offers.RoleWorker {
				got++
			}
		}
		return got == n
	})
}
