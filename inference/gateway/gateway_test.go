package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		kind   inference.Kind
		body   string
		param  string // "" means accepted
		stream bool
		usage  bool
	}{
		{"minimal chat", inference.KindChat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "", false, false},
		{"streaming with usage", inference.KindChat, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, "", true, true},
		{"content parts", inference.KindChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, "", false, false},
		{"assistant without content", inference.KindChat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[]},{"role":"user","content":"x"}]}`, "", false, false},
		{"stream_options without stream", inference.KindChat, `{"model":"m","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, "stream_options", false, false},
		{"null model", inference.KindChat, `{"model":null,"messages":[{"role":"user","content":"hi"}]}`, "model", false, false},
		{"empty model", inference.KindChat, `{"model":"","messages":[{"role":"user","content":"hi"}]}`, "model", false, false},
		{"messages not array", inference.KindChat, `{"model":"m","messages":"hi"}`, "messages", false, false},
		{"message not object", inference.KindChat, `{"model":"m","messages":[7]}`, "messages", false, false},
		{"user without content", inference.KindChat, `{"model":"m","messages":[{"role":"user"}]}`, "messages[0].content", false, false},
		{"content a number", inference.KindChat, `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages[0].content", false, false},
		{"n of 2", inference.KindChat, `{"model":"m","n":2,"messages":[{"role":"user","content":"hi"}]}`, "", false, false},
		{"n of 0", inference.KindChat, `{"model":"m","n":0,"messages":[{"role":"user","content":"hi"}]}`, "n", false, false},
		{"n over 128", inference.KindChat, `{"model":"m","n":129,"messages":[{"role":"user","content":"hi"}]}`, "n", false, false},
		{"embedding input", inference.KindEmbedding, `{"model":"m","input":["a",[1,2],3]}`, "", false, false},
		{"embedding without input", inference.KindEmbedding, `{"model":"m"}`, "input", false, false},
		{"embedding input empty", inference.KindEmbedding, `{"model":"m","input":[]}`, "input", false, false},
		{"embedding input a bool", inference.KindEmbedding, `{"model":"m","input":[true]}`, "input[0]", false, false},
		{"embedding dimensions", inference.KindEmbedding, `{"model":"m","input":"a","dimensions":"8"}`, "dimensions", false, false},
		{"top_p over 1 is the engine's to judge", inference.KindChat, `{"model":"m","top_p":1.5,"messages":[{"role":"user","content":"hi"}]}`, "", false, false},
		{"temperature a string", inference.KindChat, `{"model":"m","temperature":"hot","messages":[{"role":"user","content":"hi"}]}`, "temperature", false, false},
		{"max_tokens fraction", inference.KindChat, `{"model":"m","max_tokens":1.5,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens", false, false},
		{"prompt string", inference.KindCompletion, `{"model":"m","prompt":"once"}`, "", false, false},
		{"prompt array", inference.KindCompletion, `{"model":"m","prompt":["a","b"]}`, "", false, false},
		{"prompt empty array", inference.KindCompletion, `{"model":"m","prompt":[]}`, "prompt", false, false},
		{"prompt number", inference.KindCompletion, `{"model":"m","prompt":3}`, "prompt", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := check(tt.kind, []byte(tt.body))
			if tt.param == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if p.model != "m" || p.stream != tt.stream || p.includeUsage != tt.usage {
					t.Fatalf("parsed %+v", p)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want a 400 naming %q", tt.param)
			}
			if err.Code != inference.CodeBadRequest || err.Param != tt.param {
				t.Fatalf("got %v (param %q), want bad request naming %q", err, err.Param, tt.param)
			}
		})
	}
}

func FuzzCheck(f *testing.F) {
	f.Add(uint8(1), []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	f.Add(uint8(2), []byte(`{"model":"m","prompt":["a"],"stream":true,"stream_options":{}}`))
	f.Add(uint8(1), []byte(`[`))
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		k := inference.Kind(kind%2 + 1)
		p, err := check(k, body)
		if err != nil {
			if err.Code != inference.CodeBadRequest || err.Message == "" {
				t.Fatalf("rejection %+v is not a described bad request", err)
			}
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) != nil || p.model == "" {
			t.Fatalf("accepted %q, which is not an object with a model", body)
		}
	})
}

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "\n\t\r\x00\x1f", "\u2028\u2029", "héllo 世界", "\xff\xfe bad", "emoji 🚀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %q: %v", s, enc, err)
		}
		// encoding/json replaces each invalid byte with U+FFFD, as we do.
		std, _ := json.Marshal(s)
		var want string
		json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("%q decodes to %q, encoding/json gives %q", s, got, want)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("valid %q decodes to %q", s, got)
		}
	})
}

// fakeUpstream hands the gateway events from a channel, so a test decides
// when each arrives.
type fakeUpstream struct {
	events chan inference.Event
	closed chan struct{}
	opened chan *inference.Request // if not nil, gets each request sent
	listed *payments.Price         // if not nil, the price listed for every worker
}

// listedUpstream is a fakeUpstream whose responses know the listed price.
type listedUpstream struct{ *fakeUpstream }

func (f listedUpstream) Open(ctx context.Context, req *inference.Request) (Response, error) {
	f.fakeUpstream.Open(ctx, req)
	return f, nil
}

func (f listedUpstream) Listed(string) (payments.Price, bool) { return *f.listed, true }

func (f *fakeUpstream) Catalog(context.Context) (*inference.Catalog, error) {
	return &inference.Catalog{Models: []inference.Model{{ID: "m", Simulated: true}}}, nil
}

func (f *fakeUpstream) Open(_ context.Context, req *inference.Request) (Response, error) {
	if f.opened != nil {
		f.opened <- req
	}
	return f, nil
}

func (f *fakeUpstream) Next() (inference.Event, error) {
	ev, ok := <-f.events
	if !ok {
		return inference.Event{}, io.ErrUnexpectedEOF
	}
	return ev, nil
}

func (f *fakeUpstream) Buffered() bool { return len(f.events) > 0 }

func (f *fakeUpstream) Close() { close(f.closed) }

// fakeProxy is the proxy a fakeUpstream's responses name.
const fakeProxy = peer.ID("fake-proxy")

func (f *fakeUpstream) Proxy() peer.ID { return fakeProxy }

// fakePayer is a fake Payer: it admits requests unless refuse is set, and
// records each payment as "proxy:total" (total -1 for an answer without a
// cost).
type fakePayer struct {
	mu     sync.Mutex
	refuse *inference.Error
	paid   []string
}

func (f *fakePayer) Admit() *inference.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refuse
}

func (f *fakePayer) Pay(proxy peer.ID, end *inference.End) {
	f.mu.Lock()
	defer f.mu.Unlock()
	total := int64(-1)
	if end.Cost != nil {
		total = end.Cost.Total
	}
	f.paid = append(f.paid, fmt.Sprintf("%s:%d", string(proxy), total))
}

func (f *fakePayer) payments() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.paid)
}

// feeCap is a fake FeeCap.
type feeCap int64

func (c feeCap) MaxFeePPM() int64 { return int64(c) }

// TestPaymentHooks: a client that cannot pay gets 402 and nothing goes
// upstream; an answer the app gets is handed to the Payer with its proxy,
// once, streamed or whole.
func TestPaymentHooks(t *testing.T) {
	up := &fakeUpstream{events: make(chan inference.Event, 4), closed: make(chan struct{}), opened: make(chan *inference.Request, 4)}
	payer := &fakePayer{refuse: inference.Errorf(inference.CodePaymentRequired, "no funded payment channel: wallet holds 0 nanoTON")}
	srv := httptest.NewServer(New(Config{}, up, payer, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	post := func(body string) (int, apiError) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/completions", strings.NewReader(body))
		return do(t, req)
	}
	status, e := post(`{"model":"m","prompt":"x"}`)
	if status != http.StatusPaymentRequired || e.Code == nil || *e.Code != "payment_required" {
		t.Fatalf("unfunded client: %d %+v, want 402 payment_required", status, e)
	}
	if len(up.opened) != 0 {
		t.Fatal("an unfunded client's request went upstream")
	}
	payer.mu.Lock()
	payer.refuse = nil
	payer.mu.Unlock()
	for i, stream := range []bool{false, true} {
		up.closed = make(chan struct{})
		up.events <- inference.Event{Type: inference.FrameChunk, Text: []byte("hi")}
		up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{Cost: &payments.Bill{Worker: 10, Fee: 1, Total: 11 + int64(i)}}}
		body := `{"model":"m","prompt":"x"}`
		if stream {
			body = `{"model":"m","prompt":"x","stream":true}`
		}
		req, _ := http.NewRequest("POST", srv.URL+"/v1/completions", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		<-up.opened
	}
	if paid, want := payer.payments(), []string{"fake-proxy:11", "fake-proxy:12"}; !slices.Equal(paid, want) {
		t.Errorf("paid %q, want %q", paid, want)
	}
}

// TestStreamFlushesEachChunk: a chunk reaches the app while the next one
// has not been produced yet; nothing is held back waiting for more.
func TestStreamFlushesEachChunk(t *testing.T) {
	up := &fakeUpstream{events: make(chan inference.Event, 4), closed: make(chan struct{})}
	srv := httptest.NewServer(New(Config{}, up, nil, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	up.events <- inference.Event{Type: inference.FrameChunk, Text: []byte("first")}
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line := readEvent(t, r)
	if !strings.Contains(line, `"content":"first"`) || !strings.Contains(line, `"role":"assistant"`) {
		t.Fatalf("first event %q", line)
	}
	// Only now is the second chunk produced.
	up.events <- inference.Event{Type: inference.FrameChunk, Text: []byte("second"), Finish: []byte("stop")}
	if line := readEvent(t, r); !strings.Contains(line, `"content":"second"`) || !strings.Contains(line, `"finish_reason":"stop"`) {
		t.Fatalf("second event %q", line)
	}
	up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 3, Completion: 2}}, Worker: "w", Tier: "dev"}}
	line = readEvent(t, r)
	var u struct {
		Choices []any `json:"choices"`
		Usage   usage `json:"usage"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &u); err != nil {
		t.Fatalf("usage event %q: %v", line, err)
	}
	if len(u.Choices) != 0 || u.Usage.TotalTokens != 5 {
		t.Fatalf("usage event %+v", u)
	}
	if line := readEvent(t, r); line != "data: [DONE]" {
		t.Fatalf("last event %q", line)
	}
	select {
	case <-up.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the response was never closed")
	}
}

func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if blank, err := r.ReadString('\n'); err != nil || blank != "\n" {
		t.Fatalf("event %q not followed by a blank line: %q %v", line, blank, err)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestMethodAndKey(t *testing.T) {
	up := &fakeUpstream{events: make(chan inference.Event), closed: make(chan struct{})}
	srv := httptest.NewServer(New(Config{APIKey: "k"}, up, nil, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	for _, tt := range []struct {
		method, path, key string
		status            int
	}{
		{"GET", "/v1/models", "", 401},
		{"GET", "/v1/models", "k", 200},
		{"POST", "/v1/models", "k", 405},
		{"GET", "/v1/chat/completions", "k", 405},
		{"GET", "/v2/nothing", "k", 404},
	} {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		if tt.key != "" {
			req.Header.Set("Authorization", "Bearer "+tt.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s key=%q: status %d, want %d", tt.method, tt.path, tt.key, resp.StatusCode, tt.status)
		}
	}
}

func TestMaxPriceHeader(t *testing.T) {
	tests := []struct {
		name     string
		config   int64
		header   []string // values of X-Cocoon-Max-Price; none: absent
		want     int64    // the request's MaxPrice
		rejected bool     // 400 naming the header
	}{
		{"no header, no default", 0, nil, 0, false},
		{"no header takes the default", 700, nil, 700, false},
		{"header", 0, []string{"250000"}, 250000, false},
		{"header overrides the default", 700, []string{"900"}, 900, false},
		{"zero lifts the default", 700, []string{"0"}, 0, false},
		{"empty counts as absent", 700, []string{""}, 700, false},
		{"largest", 0, []string{"9223372036854775807"}, 1<<63 - 1, false},
		{"negative default counts as none", -5, nil, 0, false},
		{"negative", 700, []string{"-1"}, 0, true},
		{"garbage", 0, []string{"cheap"}, 0, true},
		{"fraction", 0, []string{"1.5"}, 0, true},
		{"with a unit", 0, []string{"100 nanoTON"}, 0, true},
		{"overflows", 0, []string{"9223372036854775808"}, 0, true},
		{"given twice", 0, []string{"1", "2"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sendWithHeader(t, Config{MaxPrice: tt.config}, MaxPriceHeader, tt.header, tt.rejected)
			if r != nil && r.MaxPrice != tt.want {
				t.Fatalf("MaxPrice %d, want %d", r.MaxPrice, tt.want)
			}
		})
	}
}

// sendWithHeader sends one chat request with the given values of header
// through a gateway with cfg and a fake upstream. If rejected, it checks
// the answer is a 400 naming the header and nothing went upstream, and
// returns nil; otherwise it checks the answer is 200 and returns the
// request as the upstream got it.
func sendWithHeader(t *testing.T, cfg Config, header string, values []string, rejected bool) *inference.Request {
	t.Helper()
	up := &fakeUpstream{events: make(chan inference.Event, 1), closed: make(chan struct{}), opened: make(chan *inference.Request, 1)}
	up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{Tier: "tee-gpu"}}
	srv := httptest.NewServer(New(cfg, up, nil, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	for _, v := range values {
		req.Header.Add(header, v)
	}
	status, e := do(t, req)
	if rejected {
		if status != http.StatusBadRequest || e.Param == nil || *e.Param != header || e.Type != "invalid_request_error" ||
			!strings.Contains(e.Message, header) {
			t.Fatalf("got %d %+v, want 400 naming %s", status, e, header)
		}
		select {
		case r := <-up.opened:
			t.Fatalf("a rejected request went upstream: %+v", r)
		default:
		}
		return nil
	}
	if status != http.StatusOK {
		t.Fatalf("status %d: %+v", status, e)
	}
	return <-up.opened
}

// TestTooExpensive: no worker within the max price is a 503 that says so.
func TestTooExpensive(t *testing.T) {
	up := &fakeUpstream{events: make(chan inference.Event, 1), closed: make(chan struct{})}
	msg := `no worker offers model "m" at or under 50 nanoTON per million tokens (cheapest: 100)`
	up.events <- inference.Event{Type: inference.FrameError, Err: inference.Errorf(inference.CodeTooExpensive, "%s", msg)}
	srv := httptest.NewServer(New(Config{}, up, nil, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/completions", strings.NewReader(`{"model":"m","prompt":"x"}`))
	req.Header.Set("X-Cocoon-Max-Price", "50")
	status, e := do(t, req)
	if status != http.StatusServiceUnavailable || e.Code == nil || *e.Code != "price_too_high" || e.Message != msg {
		t.Fatalf("got %d %+v, want 503 price_too_high", status, e)
	}
}

func TestMinTrustHeader(t *testing.T) {
	tests := []struct {
		name     string
		config   attest.Tier
		header   []string // values of X-Cocoon-Min-Trust; none: absent
		want     attest.Tier
		rejected bool // 400 naming the header
	}{
		{"no header, no default", 0, nil, 0, false},
		{"no header takes the default", attest.TierTEE, nil, attest.TierTEE, false},
		{"header", 0, []string{"tee-gpu"}, attest.TierTEEGPU, false},
		{"dev", 0, []string{"dev"}, attest.TierDev, false},
		{"header raises the default", attest.TierDev, []string{"tee"}, attest.TierTEE, false},
		{"header cannot lower the default", attest.TierTEE, []string{"dev"}, attest.TierTEE, false},
		{"empty counts as absent", attest.TierTEE, []string{""}, attest.TierTEE, false},
		{"unknown", 0, []string{"tdx"}, 0, true},
		{"any is not a tier", 0, []string{"any"}, 0, true},
		{"case matters", 0, []string{"TEE"}, 0, true},
		{"a number", 0, []string{"2"}, 0, true},
		{"given twice", 0, []string{"tee", "tee"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sendWithHeader(t, Config{MinTier: tt.config}, MinTrustHeader, tt.header, tt.rejected)
			if r != nil && r.MinTier != tt.want {
				t.Fatalf("MinTier %v, want %v", r.MinTier, tt.want)
			}
		})
	}
}

// TestUntrusted: a proxy with no worker trusted enough is a 503 that says
// so.
func TestUntrusted(t *testing.T) {
	up := &fakeUpstream{events: make(chan inference.Event, 1), closed: make(chan struct{})}
	msg := `no worker serves model "m" at trust tier tee or above (best available: dev)`
	up.events <- inference.Event{Type: inference.FrameError, Err: inference.Errorf(inference.CodeUntrusted, "%s", msg)}
	srv := httptest.NewServer(New(Config{}, up, nil, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/completions", strings.NewReader(`{"model":"m","prompt":"x"}`))
	req.Header.Set("X-Cocoon-Min-Trust", "tee")
	status, e := do(t, req)
	if status != http.StatusServiceUnavailable || e.Code == nil || *e.Code != "trust_too_low" || e.Message != msg {
		t.Fatalf("got %d %+v, want 503 trust_too_low", status, e)
	}
}

// TestTierRecheck: the gateway checks the tier the proxy names for the
// worker that served against the request's minimum. A whole answer from
// below it is withheld (502 trust_too_low, no content); a streamed one
// ends with that error instead of [DONE]. The tier that served is named in
// X-Cocoon-Tier, a header or a trailer.
func TestTierRecheck(t *testing.T) {
	tests := []struct {
		name   string
		min    string // X-Cocoon-Min-Trust
		tier   string // the End's tier
		stream bool
		ok     bool
	}{
		{"at the minimum", "tee", "tee", false, true},
		{"above the minimum", "tee", "tee-gpu", false, true},
		{"no minimum", "", "dev", false, true},
		{"below the minimum", "tee", "dev", false, false},
		{"no tier named", "dev", "", false, false},
		{"unknown tier named", "dev", "tier(9)", false, false},
		{"streamed at the minimum", "dev", "dev", true, true},
		{"streamed below the minimum", "tee-gpu", "tee", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &fakeUpstream{events: make(chan inference.Event, 2), closed: make(chan struct{})}
			up.events <- inference.Event{Type: inference.FrameChunk, Text: []byte("secret answer")}
			up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 1, Completion: 2}},
				Worker: "w", Tier: tt.tier}}
			srv := httptest.NewServer(New(Config{}, up, nil, nil, slog.New(slog.DiscardHandler)))
			defer srv.Close()
			body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
			if tt.stream {
				body = `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
			}
			req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(body))
			if tt.min != "" {
				req.Header.Set("X-Cocoon-Min-Trust", tt.min)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			named := resp.Header.Get(TierHeader)
			if tt.stream {
				named = resp.Trailer.Get(TierHeader)
			}
			if named != tt.tier {
				t.Errorf("%s = %q, want %q", TierHeader, named, tt.tier)
			}
			if tt.stream {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				events := strings.Split(strings.TrimSpace(string(raw)), "\n\n")
				lastEv := events[len(events)-1]
				if tt.ok {
					if lastEv != "data: [DONE]" || !strings.Contains(events[len(events)-2], `"tier":"`+tt.tier+`"`) {
						t.Fatalf("stream %q, want usage naming the tier, then [DONE]", raw)
					}
					return
				}
				if strings.Contains(string(raw), "[DONE]") || !strings.Contains(lastEv, `"code":"trust_too_low"`) {
					t.Fatalf("stream %q, want it to end with trust_too_low and no [DONE]", raw)
				}
				return
			}
			if tt.ok {
				var got struct {
					Cocoon struct {
						Tier string `json:"tier"`
					} `json:"cocoon"`
				}
				if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &got) != nil || got.Cocoon.Tier != tt.tier {
					t.Fatalf("got %d %s, want 200 naming tier %q", resp.StatusCode, raw, tt.tier)
				}
				return
			}
			var e struct {
				Error apiError `json:"error"`
			}
			if resp.StatusCode != http.StatusBadGateway || json.Unmarshal(raw, &e) != nil || e.Error.Code == nil || *e.Error.Code != "trust_too_low" {
				t.Fatalf("got %d %s, want 502 trust_too_low", resp.StatusCode, raw)
			}
			if strings.Contains(string(raw), "secret answer") {
				t.Fatalf("the withheld answer reached the app: %s", raw)
			}
		})
	}
}

type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// do sends req and returns the status and, for an error, its error object.
func do(t *testing.T, req *http.Request) (int, apiError) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error apiError `json:"error"`
	}
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("status %d with a body that is not an error object: %v", resp.StatusCode, err)
		}
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, body.Error
}

// TestReceiptCheck: the client checks the worker's signed receipt against
// the request it sent and the content it got, and its price against what
// the proxy listed for the worker and the request's max price; it
// withholds an answer whose receipt disagrees, and hands a good receipt to
// the app.
func TestReceiptCheck(t *testing.T) {
	workerKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	workerID, _ := peer.IDFromPrivateKey(workerKey)
	otherKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	listed := payments.Price{Prompt: 100, Completion: 200}
	tests := []struct {
		name     string
		key      crypto.PrivKey // signs the receipt
		text     string         // the receipt says this was streamed
		tokens   int64          // completion tokens it names
		stream   bool
		price    payments.Price // the receipt's
		maxPrice string         // the request's X-Cocoon-Max-Price
		ok       bool
	}{
		{name: "good", key: workerKey, text: "the answer", tokens: 2, ok: true},
		{name: "good, streamed", key: workerKey, text: "the answer", tokens: 2, stream: true, ok: true},
		{name: "other content", key: workerKey, text: "another answer", tokens: 2},
		{name: "more tokens", key: workerKey, text: "the answer", tokens: 3},
		{name: "signed by another peer", key: otherKey, text: "the answer", tokens: 2},
		{name: "other content, streamed", key: workerKey, text: "another answer", tokens: 2, stream: true},
		{name: "at the listed price", key: workerKey, text: "the answer", tokens: 2, price: listed, maxPrice: "300", ok: true},
		{name: "above the listed price", key: workerKey, text: "the answer", tokens: 2, price: payments.Price{Prompt: 100, Completion: 201}},
		{name: "over the max price", key: workerKey, text: "the answer", tokens: 2, price: listed, maxPrice: "299"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := listedUpstream{&fakeUpstream{events: make(chan inference.Event, 2), closed: make(chan struct{}), opened: make(chan *inference.Request, 1), listed: &listed}}
			srv := httptest.NewServer(New(Config{}, up, nil, nil, slog.New(slog.DiscardHandler)))
			defer srv.Close()
			body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
			if tt.stream {
				body = `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
			}
			type result struct {
				status int
				raw    []byte
			}
			done := make(chan result, 1)
			go func() {
				hreq, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(body))
				if tt.maxPrice != "" {
					hreq.Header.Set(MaxPriceHeader, tt.maxPrice)
				}
				resp, err := http.DefaultClient.Do(hreq)
				if err != nil {
					done <- result{}
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- result{resp.StatusCode, raw}
			}()
			req := <-up.opened
			signed, err := payments.Sign(&payments.Receipt{RequestID: req.ID, RequestHash: payments.Hash(req.Body),
				ResponseHash: payments.Hash([]byte(tt.text)), Model: "m", Tokens: payments.Tokens{Prompt: 1, Completion: tt.tokens},
				Price: tt.price, Worker: workerID, Proxy: workerID}, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			up.events <- inference.Event{Type: inference.FrameChunk, Text: []byte("the answer")}
			up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 1, Completion: 2}},
				Worker: workerID.String(), Tier: "dev", Receipt: signed}}
			res := <-done
			refused := strings.Contains(string(res.raw), "receipt_invalid")
			switch {
			case tt.ok && (res.status != 200 || refused || !strings.Contains(string(res.raw), `"receipt":"`)):
				t.Fatalf("got %d %s, want the answer with its receipt", res.status, res.raw)
			case !tt.ok && !tt.stream && (res.status != 502 || !refused || strings.Contains(string(res.raw), "the answer\"")):
				t.Fatalf("got %d %s, want 502 receipt_invalid without the answer", res.status, res.raw)
			case !tt.ok && tt.stream && (!refused || strings.Contains(string(res.raw), "[DONE]")):
				t.Fatalf("got %s, want the stream to end in receipt_invalid, not [DONE]", res.raw)
			}
		})
	}
}

// TestMaxTokensHeader: the request's completion cap, from the body's
// max_tokens or max_completion_tokens (the smaller) times n, goes to the
// upstream in its header; a body without a cap sends none.
func TestMaxTokensHeader(t *testing.T) {
	for _, tt := range []struct {
		body string
		want int64
	}{
		{`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, 0},
		{`{"model":"m","max_tokens":40,"messages":[{"role":"user","content":"hi"}]}`, 40},
		{`{"model":"m","max_tokens":40,"max_completion_tokens":30,"n":3,"messages":[{"role":"user","content":"hi"}]}`, 90},
	} {
		up := &fakeUpstream{events: make(chan inference.Event, 1), closed: make(chan struct{}), opened: make(chan *inference.Request, 1)}
		up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{Tier: "tee-gpu"}}
		srv := httptest.NewServer(New(Config{}, up, nil, nil, slog.New(slog.DiscardHandler)))
		req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(tt.body))
		if status, e := do(t, req); status != http.StatusOK {
			t.Fatalf("%s: %d %+v", tt.body, status, e)
		}
		if got := (<-up.opened).MaxTokens; got != tt.want {
			t.Errorf("%s: MaxTokens %d, want %d", tt.body, got, tt.want)
		}
		srv.Close()
	}
}
