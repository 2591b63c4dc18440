package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait on a condition, so a broken test fails
// instead of hanging.
const waitLimit = 10 * time.Second

// fakeEngine is an OpenAI-compatible engine on loopback. Its fields are set
// before start and only read after.
type fakeEngine struct {
	// status and errBody, when status is set, answer every POST.
	status      int
	errBody     string
	contentType string // of a streamed answer; text/event-stream if empty
	// parts is a streamed answer, each part flushed on its own. With gate
	// set, every part after the first waits for a value on gate.
	parts []string
	gate  chan struct{}
	// hold keeps the answer open after its parts until the client goes
	// away, which closes gone.
	hold bool
	gone chan struct{}
	// end, when set, is waited on before the answer ends.
	end chan struct{}
	// modelsStatus and models answer GET /v1/models.
	modelsStatus int
	models       string

	srv      *httptest.Server
	requests chan engineRequest // what the engine received, in order
	conns    atomic.Int32       // connections opened to the engine
	quit     chan struct{}      // closed at cleanup, to free waiting handlers
}

type engineRequest struct {
	method, path string
	header       http.Header
	body         map[string]json.RawMessage
}

// start serves fe and returns its base URL.
func (fe *fakeEngine) start(t *testing.T) string {
	t.Helper()
	fe.requests = make(chan engineRequest, 16)
	fe.quit = make(chan struct{})
	if fe.hold {
		fe.gone = make(chan struct{})
	}
	fe.srv = httptest.NewUnstartedServer(http.HandlerFunc(fe.serve))
	fe.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			fe.conns.Add(1)
		}
	}
	fe.srv.Start()
	t.Cleanup(func() {
		close(fe.quit)
		fe.srv.Close()
	})
	return fe.srv.URL + "/v1"
}

func (fe *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := engineRequest{method: r.Method, path: r.URL.Path, header: r.Header.Clone()}
	_ = json.Unmarshal(body, &rec.body)
	fe.requests <- rec

	if r.Method == http.MethodGet && r.URL.Path == "/v1/models" {
		if fe.modelsStatus != 0 {
			w.WriteHeader(fe.modelsStatus)
		}
		io.WriteString(w, fe.models)
		return
	}
	if fe.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fe.status)
		io.WriteString(w, fe.errBody)
		return
	}
	ct := fe.contentType
	if ct == "" {
		ct = "text/event-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	flusher := w.(http.Flusher)
	flusher.Flush()
	for i, p := range fe.parts {
		if i > 0 && fe.gate != nil {
			select {
			case <-fe.gate:
			case <-r.Context().Done():
				return
			case <-fe.quit:
				return
			}
		}
		io.WriteString(w, p)
		flusher.Flush()
	}
	if fe.hold {
		select {
		case <-r.Context().Done():
			close(fe.gone)
		case <-fe.quit:
		}
	}
	if fe.end != nil {
		select {
		case <-fe.end:
		case <-r.Context().Done():
		case <-fe.quit:
		}
	}
}

// request returns the next request the engine received.
func (fe *fakeEngine) request(t *testing.T) engineRequest {
	t.Helper()
	select {
	case r := <-fe.requests:
		return r
	case <-time.After(waitLimit):
		t.Fatal("engine received no request")
		return engineRequest{}
	}
}

// Events as engines send them.

func chatEvent(content, finish string) string {
	ch := map[string]any{"index": 0, "delta": map[string]any{"content": content}, "finish_reason": nil}
	if finish != "" {
		ch["finish_reason"] = finish
	}
	return event(map[string]any{"object": "chat.completion.chunk", "choices": []any{ch}})
}

func textEvent(text, finish string) string {
	ch := map[string]any{"index": 0, "text": text, "finish_reason": nil}
	if finish != "" {
		ch["finish_reason"] = finish
	}
	return event(map[string]any{"object": "text_completion", "choices": []any{ch}})
}

func usageEvent(prompt, completion, cached int) string {
	return event(map[string]any{"choices": []any{}, "usage": map[string]any{
		"prompt_tokens":         prompt,
		"completion_tokens":     completion,
		"total_tokens":          prompt + completion,
		"prompt_tokens_details": map[string]any{"cached_tokens": cached},
	}})
}

func event(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return "data: " + string(b) + "\n\n"
}

const doneEvent = "data: [DONE]\n\n"

const chatBody = `{"model":"m","messages":[{"role":"system","content":"be brief"},` +
	`{"role":"user","content":[{"type":"text","text":"hello there"}]}]}`

// chatPromptEstimate is estimatePromptTokens(chatBody): 8+11 bytes.
const chatPromptEstimate = 5

func newBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func chatRequest(body string) *inference.Request {
	return &inference.Request{ID: "r1", Kind: inference.KindChat, Model: "m", Body: []byte(body)}
}

// generate runs req and collects what it emitted.
func generate(ctx context.Context, b *Backend, req *inference.Request) ([]inference.Chunk, inference.Result, error) {
	var chunks []inference.Chunk
	res, err := b.Generate(ctx, req, func(c inference.Chunk) error {
		chunks = append(chunks, c)
		return nil
	})
	return chunks, res, err
}

// text joins the chunks' text, marking each finish reason in brackets.
func text(chunks []inference.Chunk) string {
	var sb strings.Builder
	for _, c := range chunks {
		sb.WriteString(c.Text)
		sb.Write(c.Event)
		if c.FinishReason != "" {
			sb.WriteString("[" + c.FinishReason + "]")
		}
	}
	return sb.String()
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		name      string
		kind      inference.Kind
		body      string
		parts     []string
		wantPath  string
		wantText  string
		wantCount int // chunks
		wantRes   inference.Result
	}{
		{
			name:      "chat with usage",
			kind:      inference.KindChat,
			body:      chatBody,
			parts:     []string{chatEvent("Hel", ""), chatEvent("lo", ""), chatEvent("", "stop"), usageEvent(12, 2, 4), doneEvent},
			wantPath:  "/v1/chat/completions",
			wantText:  "Hello[stop]",
			wantCount: 3,
			wantRes: inference.Result{
				FinishReason: "stop",
				Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: 12, Cached: 4, Completion: 2}},
			},
		},
		{
			name:      "chat without usage is counted",
			kind:      inference.KindChat,
			body:      chatBody,
			parts:     []string{chatEvent("Hel", ""), chatEvent("lo", "stop"), doneEvent},
			wantPath:  "/v1/chat/completions",
			wantText:  "Hello[stop]",
			wantCount: 2,
			wantRes: inference.Result{
				FinishReason: "stop",
				Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: chatPromptEstimate, Completion: 2}, Counted: true},
			},
		},
		{
			name:      "completion",
			kind:      inference.KindCompletion,
			body:      `{"model":"m","prompt":"abcdefgh","max_tokens":2}`,
			parts:     []string{textEvent("Hel", ""), textEvent("lo", "length"), doneEvent},
			wantPath:  "/v1/completions",
			wantText:  "Hello[length]",
			wantCount: 2,
			wantRes: inference.Result{
				FinishReason: "length",
				Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: 2, Completion: 2}, Counted: true},
			},
		},
		{
			name:      "no [DONE] after finish",
			kind:      inference.KindChat,
			body:      chatBody,
			parts:     []string{chatEvent("a", ""), chatEvent("", "stop")},
			wantPath:  "/v1/chat/completions",
			wantText:  "a[stop]",
			wantCount: 2,
			wantRes: inference.Result{
				FinishReason: "stop",
				Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: chatPromptEstimate, Completion: 1}, Counted: true},
			},
		},
		{
			// Another choice's delta is passed on as the engine's
			// event, and counted.
			name:      "other choices are passed on as events",
			kind:      inference.KindChat,
			body:      chatBody,
			parts:     []string{chatEvent("a", ""), `data: {"choices":[{"index":1,"delta":{"content":"x"}}]}` + "\n\n", chatEvent("b", "stop"), doneEvent},
			wantPath:  "/v1/chat/completions",
			wantText:  `a{"choices":[{"index":1,"delta":{"content":"x"}}]}b[stop]`,
			wantCount: 3,
			wantRes: inference.Result{
				FinishReason: "stop",
				Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: chatPromptEstimate, Completion: 3}, Counted: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := &fakeEngine{parts: tt.parts}
			b := newBackend(t, Config{BaseURL: fe.start(t), APIKey: "sk-test"})
			req := &inference.Request{ID: "r1", Kind: tt.kind, Model: "m", Body: []byte(tt.body)}
			chunks, res, err := generate(t.Context(), b, req)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if got := text(chunks); got != tt.wantText || len(chunks) != tt.wantCount {
				t.Errorf("emitted %q in %d chunks, want %q in %d", got, len(chunks), tt.wantText, tt.wantCount)
			}
			if res != tt.wantRes {
				t.Errorf("result %+v, want %+v", res, tt.wantRes)
			}
			got := fe.request(t)
			if got.method != http.MethodPost || got.path != tt.wantPath {
				t.Errorf("engine got %s %s, want POST %s", got.method, got.path, tt.wantPath)
			}
			if auth := got.header.Get("Authorization"); auth != "Bearer sk-test" {
				t.Errorf("Authorization %q", auth)
			}
		})
	}
}

func TestGenerateForwardsBody(t *testing.T) {
	fe := &fakeEngine{parts: []string{chatEvent("a", "stop"), doneEvent}}
	b := newBackend(t, Config{BaseURL: fe.start(t)})
	body := `{"model":"m","messages":[{"role":"user","content":"<hi> & bye"}],"temperature":0.5,` +
		`"stream":false,"stream_options":{"include_usage":false,"continuous_usage_stats":true},"extra":{"a":[1,2]}}`
	if _, _, err := generate(t.Context(), b, chatRequest(body)); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	got := fe.request(t)
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if auth, ok := got.header["Authorization"]; ok {
		t.Errorf("Authorization %q sent without an API key", auth)
	}
	want := map[string]string{
		"model":          `"m"`,
		"messages":       `[{"role":"user","content":"<hi> & bye"}]`,
		"temperature":    `0.5`,
		"stream":         `true`,
		"stream_options": `{"continuous_usage_stats":true,"include_usage":true}`,
		"extra":          `{"a":[1,2]}`,
	}
	if len(got.body) != len(want) {
		t.Errorf("engine got fields %v, want %d", slices.Sorted(maps.Keys(got.body)), len(want))
	}
	for k, v := range want {
		if string(got.body[k]) != v {
			t.Errorf("engine got %s = %s, want %s", k, got.body[k], v)
		}
	}
}

func TestGenerateSSE(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{
			name: "no space after colon",
			body: `data:{"choices":[{"delta":{"content":"a"}}]}` + "\n\n" + `data:{"choices":[{"delta":{},"finish_reason":"stop"}]}` + "\n\ndata:[DONE]\n\n",
			want: "a[stop]",
		},
		{
			name: "comments",
			body: ": keep-alive\n\n" + chatEvent("a", "") + ":ping\n" + chatEvent("b", "stop") + ": bye\n\n" + doneEvent,
			want: "ab[stop]",
		},
		{
			name: "CRLF",
			body: strings.ReplaceAll(chatEvent("a", "")+chatEvent("b", "stop")+doneEvent, "\n", "\r\n"),
			want: "ab[stop]",
		},
		{
			name: "multi-line data",
			body: "data: {\"choices\":\ndata: [{\"delta\":{\"content\":\"a\"},\ndata: \"finish_reason\":\"stop\"}]}\n\n" + doneEvent,
			want: "a[stop]",
		},
		{
			name: "other fields",
			body: "event: message\nid: 1\nretry: 10\n" + chatEvent("a", "") + "id: 2\n" + chatEvent("b", "stop") + "event: done\n" + doneEvent,
			want: "ab[stop]",
		},
		{
			name: "byte order mark",
			body: "\xEF\xBB\xBF" + chatEvent("a", "stop") + doneEvent,
			want: "a[stop]",
		},
		{
			name: "[DONE] without line end",
			body: chatEvent("a", "stop") + "data: [DONE]",
			want: "a[stop]",
		},
		{
			name: "output after [DONE] is ignored",
			body: chatEvent("a", "stop") + doneEvent + chatEvent("b", ""),
			want: "a[stop]",
		},
		{
			name: "events without data",
			body: "event: ping\n\n\n\ndata\n\n" + chatEvent("a", "stop") + doneEvent,
			want: "a[stop]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := &fakeEngine{parts: []string{tt.body}}
			b := newBackend(t, Config{BaseURL: fe.start(t)})
			chunks, res, err := generate(t.Context(), b, chatRequest(chatBody))
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if got := text(chunks); got != tt.want {
				t.Errorf("emitted %q, want %q", got, tt.want)
			}
			if res.FinishReason != "stop" {
				t.Errorf("finish reason %q", res.FinishReason)
			}
		})
	}
}

// TestGeneratePending checks that a chunk is not marked Pending while the
// engine has sent nothing more.
func TestGeneratePending(t *testing.T) {
	gate := make(chan struct{})
	fe := &fakeEngine{parts: []string{chatEvent("a", ""), chatEvent("b", "stop"), usageEvent(1, 2, 0) + doneEvent}, gate: gate}
	b := newBackend(t, Config{BaseURL: fe.start(t)})
	var chunks []inference.Chunk
	_, err := b.Generate(t.Context(), chatRequest(chatBody), func(c inference.Chunk) error {
		chunks = append(chunks, c)
		select {
		case gate <- struct{}{}: // let the engine send its next part
		case <-time.After(waitLimit):
			t.Error("engine did not take the gate")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	want := []inference.Chunk{{Text: "a"}, {Text: "b", FinishReason: "stop"}}
	if !reflect.DeepEqual(chunks, want) {
		t.Errorf("chunks %+v, want %+v", chunks, want)
	}
}

func TestGenerateErrors(t *testing.T) {
	tests := []struct {
		name      string
		engine    *fakeEngine // nil for an engine that is not to be asked
		body      string
		wantCode  inference.Code
		wantMsg   string
		wantParam string
		wantSent  bool // the engine saw the request
	}{
		{
			name:      "400",
			engine:    &fakeEngine{status: 400, errBody: `{"error":{"message":"max_tokens is too large","type":"invalid_request_error","param":"max_tokens","code":null}}`},
			wantCode:  inference.CodeBadRequest,
			wantMsg:   "max_tokens is too large",
			wantParam: "max_tokens",
			wantSent:  true,
		},
		{
			name:     "400 vLLM",
			engine:   &fakeEngine{status: 400, errBody: `{"object":"error","message":"context too long","type":"BadRequestError","param":null,"code":400}`},
			wantCode: inference.CodeBadRequest,
			wantMsg:  "context too long",
			wantSent: true,
		},
		{
			name:     "422",
			engine:   &fakeEngine{status: 422, errBody: `{"detail":[{"loc":["body","messages"],"msg":"field required"}]}`},
			wantCode: inference.CodeBadRequest,
			wantMsg:  "Unprocessable Entity",
			wantSent: true,
		},
		{
			name:     "404 model",
			engine:   &fakeEngine{status: 404, errBody: `{"error":{"message":"The model 'x' does not exist","type":"NotFoundError"}}`},
			wantCode: inference.CodeUnknownModel,
			wantMsg:  "The model 'x' does not exist",
			wantSent: true,
		},
		{
			name:     "404",
			engine:   &fakeEngine{status: 404, errBody: `404 page not found`},
			wantCode: inference.CodeBadRequest,
			wantMsg:  "Not Found",
			wantSent: true,
		},
		{
			name:     "429",
			engine:   &fakeEngine{status: 429, errBody: `{"error":"too many requests"}`},
			wantCode: inference.CodeOverloaded,
			wantMsg:  "engine overloaded: too many requests",
			wantSent: true,
		},
		{
			name:     "503",
			engine:   &fakeEngine{status: 503, errBody: `{"error":{"message":"Loading model","code":503}}`},
			wantCode: inference.CodeOverloaded,
			wantMsg:  "engine overloaded: Loading model",
			wantSent: true,
		},
		{
			name:     "500",
			engine:   &fakeEngine{status: 500, errBody: "\x00\x01"},
			wantCode: inference.CodeEngine,
			wantMsg:  "engine answered 500: Internal Server Error",
			wantSent: true,
		},
		{
			name:     "401",
			engine:   &fakeEngine{status: 401, errBody: `{"error":{"message":"bad key"}}`},
			wantCode: inference.CodeEngine,
			wantMsg:  "engine answered 401: bad key",
			wantSent: true,
		},
		{
			name:     "stream ended early",
			engine:   &fakeEngine{parts: []string{chatEvent("a", "")}},
			wantCode: inference.CodeEngine,
			wantMsg:  "engine stream ended early",
			wantSent: true,
		},
		{
			name:     "unfinished event",
			engine:   &fakeEngine{parts: []string{chatEvent("a", ""), strings.TrimSuffix(chatEvent("", "stop"), "\n")}},
			wantCode: inference.CodeEngine,
			wantMsg:  "engine stream ended early",
			wantSent: true,
		},
		{
			name:     "error event",
			engine:   &fakeEngine{parts: []string{chatEvent("a", ""), `data: {"error":{"message":"out of memory"}}` + "\n\n"}},
			wantCode: inference.CodeEngine,
			wantMsg:  "engine failed: out of memory",
			wantSent: true,
		},
		{
			name:     "error event with status",
			engine:   &fakeEngine{parts: []string{`data: {"error":{"object":"error","message":"prompt too long","code":400}}` + "\n\n"}},
			wantCode: inference.CodeBadRequest,
			wantMsg:  "prompt too long",
			wantSent: true,
		},
		{
			name:     "malformed chunk",
			engine:   &fakeEngine{parts: []string{"data: {\"choices\":\n\n"}},
			wantCode: inference.CodeEngine,
			wantMsg:  "engine sent a malformed chunk",
			wantSent: true,
		},
		{
			name:     "line too long",
			engine:   &fakeEngine{parts: []string{"data: " + strings.Repeat("x", maxLineBytes) + "\n\n"}},
			wantCode: inference.CodeEngine,
			wantMsg:  errLineTooLong.Error(),
			wantSent: true,
		},
		{
			name:     "not streamed",
			engine:   &fakeEngine{contentType: "application/json; charset=utf-8", parts: []string{`{"choices":[]}`}},
			wantCode: inference.CodeEngine,
			wantMsg:  "engine answered without streaming",
			wantSent: true,
		},
		{
			name:     "body not an object",
			body:     `["x"]`,
			wantCode: inference.CodeBadRequest,
			wantMsg:  "request body is not a JSON object",
		},
		{
			name:      "stream_options not an object",
			body:      `{"model":"m","stream_options":true}`,
			wantCode:  inference.CodeBadRequest,
			wantMsg:   "stream_options must be an object",
			wantParam: "stream_options",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := tt.engine
			if fe == nil {
				fe = &fakeEngine{}
			}
			b := newBackend(t, Config{BaseURL: fe.start(t)})
			body := tt.body
			if body == "" {
				body = chatBody
			}
			_, _, err := generate(t.Context(), b, chatRequest(body))
			var e *inference.Error
			if !errors.As(err, &e) {
				t.Fatalf("Generate error %v, want an *inference.Error", err)
			}
			if e.Code != tt.wantCode || e.Message != tt.wantMsg || e.Param != tt.wantParam {
				t.Errorf("error %+v, want code %v, message %q, param %q", e, tt.wantCode, tt.wantMsg, tt.wantParam)
			}
			if sent := len(fe.requests) > 0; sent != tt.wantSent {
				t.Errorf("engine saw the request: %v, want %v", sent, tt.wantSent)
			}
		})
	}
}

func TestGenerateConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b := newBackend(t, Config{BaseURL: "http://" + addr + "/v1"})
	_, _, err = generate(t.Context(), b, chatRequest(chatBody))
	var e *inference.Error
	if !errors.As(err, &e) || e.Code != inference.CodeEngine || !e.Code.Retryable() {
		t.Fatalf("Generate error %v, want retryable %v", err, inference.CodeEngine)
	}
}

// TestGenerateStops checks that cancelling ctx, or emit failing, ends the
// engine's request.
func TestGenerateStops(t *testing.T) {
	errStop := errors.New("requester went away")
	tests := []struct {
		name    string
		emitErr error // returned by emit; nil to cancel ctx instead
		want    error
	}{
		{name: "cancel", want: context.Canceled},
		{name: "emit error", emitErr: errStop, want: errStop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := &fakeEngine{parts: []string{chatEvent("a", ""), chatEvent("b", "")}, hold: true}
			b := newBackend(t, Config{BaseURL: fe.start(t)})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			calls := 0
			_, err := b.Generate(ctx, chatRequest(chatBody), func(inference.Chunk) error {
				calls++
				if tt.emitErr != nil {
					return tt.emitErr
				}
				cancel()
				return nil
			})
			if !errors.Is(err, tt.want) {
				t.Errorf("Generate error %v, want %v", err, tt.want)
			}
			if calls != 1 {
				t.Errorf("emit called %d times after stopping, want 1", calls)
			}
			select {
			case <-fe.gone:
			case <-time.After(waitLimit):
				t.Fatal("the engine's request did not end")
			}
		})
	}
}

func TestGenerateCancelledBefore(t *testing.T) {
	fe := &fakeEngine{parts: []string{chatEvent("a", "stop"), doneEvent}}
	b := newBackend(t, Config{BaseURL: fe.start(t)})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := generate(ctx, b, chatRequest(chatBody)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate error %v, want %v", err, context.Canceled)
	}
}

// TestGenerateReusesConnection checks that a connection goes back to the
// pool even when the engine ends its answer only after the backend read
// [DONE].
func TestGenerateReusesConnection(t *testing.T) {
	end := make(chan struct{}, 1)
	fe := &fakeEngine{parts: []string{chatEvent("a", "stop"), usageEvent(1, 1, 0), doneEvent}, end: end}
	base := fe.start(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := tr.RoundTrip(r)
		if err == nil {
			resp.Body = &doneWatcher{ReadCloser: resp.Body, end: end}
		}
		return resp, err
	})}
	b := newBackend(t, Config{BaseURL: base, HTTPClient: client})
	for i := range 3 {
		if _, _, err := generate(t.Context(), b, chatRequest(chatBody)); err != nil {
			t.Fatalf("Generate %d: %v", i, err)
		}
	}
	if n := fe.conns.Load(); n != 1 {
		t.Errorf("engine saw %d connections for 3 requests, want 1", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// doneWatcher lets the engine end its answer once [DONE] was read.
type doneWatcher struct {
	io.ReadCloser
	end  chan<- struct{}
	seen bool
}

func (d *doneWatcher) Read(p []byte) (int, error) {
	n, err := d.ReadCloser.Read(p)
	if !d.seen && bytes.Contains(p[:n], []byte("[DONE]")) {
		d.seen = true
		d.end <- struct{}{}
	}
	return n, err
}

func TestGenerateKind(t *testing.T) {
	b := newBackend(t, Config{BaseURL: "http://127.0.0.1:1/v1"})
	req := &inference.Request{Kind: 0, Model: "m", Body: []byte(chatBody)}
	var e *inference.Error
	if _, _, err := generate(t.Context(), b, req); !errors.As(err, &e) || e.Code != inference.CodeBadRequest {
		t.Fatalf("Generate error %v, want %v", err, inference.CodeBadRequest)
	}
}

func TestModels(t *testing.T) {
	tests := []struct {
		name    string
		models  []string // configured
		engine  *fakeEngine
		want    []string
		wantErr string
		asked   bool // the engine was asked
	}{
		{
			name:   "from engine",
			engine: &fakeEngine{models: `{"object":"list","data":[{"id":"llama3","object":"model"},{"id":"qwen"},{"id":""},{"id":"llama3"}]}`},
			want:   []string{"llama3", "qwen"},
			asked:  true,
		},
		{
			name:   "from config",
			models: []string{"a", "b"},
			want:   []string{"a", "b"},
		},
		{
			name:    "engine error",
			engine:  &fakeEngine{modelsStatus: 500, models: `{"error":{"message":"down"}}`},
			wantErr: "listing engine models: engine answered 500: down",
			asked:   true,
		},
		{
			name:    "malformed",
			engine:  &fakeEngine{models: `{"data":`},
			wantErr: "decoding engine models",
			asked:   true,
		},
		{
			name:    "too large",
			engine:  &fakeEngine{models: `{"data":[` + strings.Repeat(" ", maxModelsBody) + `]}`},
			wantErr: "exceeds",
			asked:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := tt.engine
			if fe == nil {
				fe = &fakeEngine{}
			}
			b := newBackend(t, Config{BaseURL: fe.start(t), APIKey: "k", Models: tt.models})
			models, err := b.Models(t.Context())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Models error %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Models: %v", err)
			}
			var ids []string
			for _, m := range models {
				if m.Simulated || m.Workers != 0 {
					t.Errorf("model %+v, want only an ID", m)
				}
				ids = append(ids, m.ID)
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("models %q, want %q", ids, tt.want)
			}
			if asked := len(fe.requests) > 0; asked != tt.asked {
				t.Fatalf("engine asked: %v, want %v", asked, tt.asked)
			}
			if tt.asked {
				got := fe.request(t)
				if got.method != http.MethodGet || got.path != "/v1/models" || got.header.Get("Authorization") != "Bearer k" {
					t.Errorf("engine got %s %s with Authorization %q", got.method, got.path, got.header.Get("Authorization"))
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // empty for success
		wantURL string
	}{
		{name: "ok", cfg: Config{BaseURL: "http://127.0.0.1:11434/v1"}, wantURL: "http://127.0.0.1:11434/v1"},
		{name: "trailing slash", cfg: Config{BaseURL: "https://engine.local/v1/"}, wantURL: "https://engine.local/v1"},
		{name: "empty", cfg: Config{}, wantErr: "openai: BaseURL is required"},
		{name: "scheme", cfg: Config{BaseURL: "ftp://x/v1"}, wantErr: `openai: BaseURL "ftp://x/v1": scheme must be http or https`},
		{name: "relative", cfg: Config{BaseURL: "127.0.0.1:8000/v1"}, wantErr: "openai: BaseURL"},
		{name: "no host", cfg: Config{BaseURL: "http:///v1"}, wantErr: `openai: BaseURL "http:///v1" has no host`},
		{name: "query", cfg: Config{BaseURL: "http://x/v1?a=b"}, wantErr: "must not have a query or fragment"},
		{name: "password hidden", cfg: Config{BaseURL: "ftp://u:secret@x/v1"}, wantErr: `openai: BaseURL "ftp://u:xxxxx@x/v1"`},
		{name: "empty model", cfg: Config{BaseURL: "http://x/v1", Models: []string{"a", ""}}, wantErr: "openai: Models[1] is empty"},
		{name: "duplicate model", cfg: Config{BaseURL: "http://x/v1", Models: []string{"a", "a"}}, wantErr: `openai: Models[1] "a" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.cfg, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer b.Close()
			if b.baseURL != tt.wantURL {
				t.Errorf("base URL %q, want %q", b.baseURL, tt.wantURL)
			}
		})
	}
}

func TestNewKeepsClient(t *testing.T) {
	client := &http.Client{}
	b, err := New(Config{BaseURL: "http://x/v1", HTTPClient: client}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.client != client || b.owned {
		t.Error("New did not use the configured client")
	}
}

func TestCleanMessage(t *testing.T) {
	long := strings.Repeat("é", maxErrorMessage)
	got := clean(long, maxErrorMessage)
	if len(got) > maxErrorMessage || !strings.HasSuffix(got, "…") {
		t.Errorf("clean kept %d bytes, ending %q", len(got), got[len(got)-4:])
	}
	if got := clean("a\nb\x00\xff", 100); got != "a b \uFFFD" {
		t.Errorf("clean = %q", got)
	}
}

func ExampleNew() {
	b, err := New(Config{BaseURL: "http://127.0.0.1:11434/v1", Models: []string{"llama3.2"}}, nil)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	models, _ := b.Models(context.Background())
	fmt.Println(models[0].ID)
	// Output: llama3.2
}

// TestUnixSocket: with Socket set, the backend reaches an engine that
// listens only on a unix socket, whatever host the base URL names.
func TestUnixSocket(t *testing.T) {
	fe := &fakeEngine{models: `{"object":"list","data":[{"id":"on-a-socket"}]}`, requests: make(chan engineRequest, 16), quit: make(chan struct{})}
	sock := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no unix sockets here: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(fe.serve)}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { close(fe.quit); srv.Close(); <-done })

	b, err := New(Config{BaseURL: "http://engine.invalid/v1", Socket: sock}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	models, err := b.Models(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 || models[0].ID != "on-a-socket" {
		t.Fatalf("models %+v, want on-a-socket", models)
	}
	if r := <-fe.requests; r.path != "/v1/models" {
		t.Errorf("engine asked for %s", r.path)
	}
}
