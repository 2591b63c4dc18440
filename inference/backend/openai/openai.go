// Package openai is an inference backend for any engine that speaks the
// OpenAI HTTP API with server-sent events: vLLM, SGLang, the llama.cpp
// server, Ollama.
//
// Generate forwards the app's JSON body to the engine with streaming and
// usage reporting forced on, and turns the engine's event stream into
// inference chunks as they arrive. A chunk is marked Pending when more of the
// stream is already buffered, so the next hop flushes only when the engine
// falls silent. When the engine reports no usage the backend counts it
// itself, roughly, and says so with Usage.Counted.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cocoon-mesh/cocoon/inference"
)

// Caps on what is read from the engine outside the event stream.
const (
	maxErrorBody    = 64 << 10 // an error answer
	maxModelsBody   = 1 << 20  // the answer to GET /models
	maxErrorMessage = 512      // the engine's error message passed on to the app
	maxErrorParam   = 64       // the request field an engine error names
)

// After [DONE] the backend reads on for at most drainTimeout and
// maxDrainBody bytes to see the response end, so that its connection goes
// back to the pool instead of being closed.
const (
	drainTimeout = 250 * time.Millisecond
	maxDrainBody = 64 << 10
)

// maxIdleConns is how many idle connections the default client keeps to the
// engine: about as many as streams a busy worker runs at once, so that a
// burst of requests does not open new connections.
const maxIdleConns = 256

// Config configures a Backend.
type Config struct {
	// BaseURL is the engine's OpenAI API root, version path included, for
	// example http://127.0.0.1:11434/v1. Required.
	BaseURL string
	// Socket, when set, is the path of a unix socket the engine listens on:
	// every connection goes there, and BaseURL gives only the path (its
	// host names the engine in the Host header).
	Socket string
	// APIKey, when set, is sent to the engine as a bearer token.
	APIKey string
	// Models are the models to announce for chat and completion. When
	// empty, Models asks the engine (GET {BaseURL}/models) each time it is
	// called, and announces what it lists.
	Models []string
	// EmbeddingModels are the models to announce for embeddings
	// (POST /v1/embeddings). One also in Models is announced for all three
	// kinds of request; one the engine lists, while Models is empty, is
	// announced for embeddings only.
	EmbeddingModels []string
	// HTTPClient talks to the engine. When nil, the backend uses a client
	// tuned for many concurrent streams to one host; it has no overall
	// timeout, since a stream lasts as long as the generation, and it uses
	// no proxy from the environment.
	HTTPClient *http.Client
}

// Backend serves inference through an OpenAI-compatible engine. It is safe
// for concurrent use.
type Backend struct {
	baseURL string // without a trailing slash
	apiKey  string
	models  []inference.Model // announced as configured; nil to ask the engine
	embed   map[string]bool   // the models announced for embeddings
	client  *http.Client
	owned   bool // New made client, so Close may close its connections
	log     *slog.Logger

	mu      sync.Mutex        // guards aliases
	aliases map[string]string // a bare name the engine lists as name:latest, to that name
}

var _ inference.Backend = (*Backend)(nil)

// New returns a backend for the engine at cfg.BaseURL. It starts nothing and
// does not contact the engine. A nil log discards.
func New(cfg Config, log *slog.Logger) (*Backend, error) {
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{
		baseURL: base,
		apiKey:  cfg.APIKey,
		client:  cfg.HTTPClient,
		log:     log.With("component", "openai"),
	}
	seen := make(map[string]bool, len(cfg.Models))
	for i, id := range cfg.Models {
		switch {
		case strings.TrimSpace(id) == "":
			return nil, fmt.Errorf("openai: Models[%d] is empty", i)
		case seen[id]:
			return nil, fmt.Errorf("openai: Models[%d] %q is listed twice", i, id)
		}
		seen[id] = true
	}
	b.embed = make(map[string]bool, len(cfg.EmbeddingModels))
	for i, id := range cfg.EmbeddingModels {
		switch {
		case strings.TrimSpace(id) == "":
			return nil, fmt.Errorf("openai: EmbeddingModels[%d] is empty", i)
		case b.embed[id]:
			return nil, fmt.Errorf("openai: EmbeddingModels[%d] %q is listed twice", i, id)
		}
		b.embed[id] = true
	}
	if len(cfg.Models) > 0 {
		for _, id := range cfg.Models {
			m := inference.Model{ID: id}
			if b.embed[id] {
				m.Endpoints = allEndpoints
			}
			b.models = append(b.models, m)
		}
		for _, id := range cfg.EmbeddingModels {
			if !seen[id] {
				b.models = append(b.models, inference.Model{ID: id, Endpoints: embeddingOnly})
			}
		}
	}
	if b.client == nil {
		b.client = newClient(cfg.Socket)
		b.owned = true
	}
	return b, nil
}

func parseBaseURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("openai: BaseURL is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("openai: BaseURL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("openai: BaseURL %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return "", fmt.Errorf("openai: BaseURL %q has no host", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("openai: BaseURL %q must not have a query or fragment", u.Redacted())
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// newClient returns the default engine client: keep-alive connections, many
// of them idle per host, and no compression, which would hold stream bytes
// back until a compressed block fills. With socket set, it dials that unix
// socket whatever the URL's host.
func newClient(socket string) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dial := dialer.DialContext
	if socket != "" {
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		}
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:         dial,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        maxIdleConns,
		MaxIdleConnsPerHost: maxIdleConns,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
	}}
}

// Close drops the idle connections of the client New made; streams in
// flight go on. A client passed in Config is left alone.
func (b *Backend) Close() error {
	if b.owned {
		b.client.CloseIdleConnections()
	}
	return nil
}

var (
	allEndpoints  = []string{inference.KindChat.String(), inference.KindCompletion.String(), inference.KindEmbedding.String()}
	embeddingOnly = []string{inference.KindEmbedding.String()}
)

// Models returns the configured models, or else the models the engine lists
// at GET {BaseURL}/models: those named in EmbeddingModels for embeddings,
// the others for chat and completion. A model the engine lists as
// name:latest, as Ollama does, is announced under name too, which Ollama
// answers to.
func (b *Backend) Models(ctx context.Context) ([]inference.Model, error) {
	if len(b.models) > 0 {
		return slices.Clone(b.models), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.baseURL+"/models", nil)
	if err != nil {
		return nil, fmt.Errorf("listing engine models: %w", err)
	}
	b.setAuth(req)
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("listing engine models: %w", err)
	}
	defer resp.Body.Close()
	if !success(resp.StatusCode) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		msg, _, _ := parseError(body)
		return nil, fmt.Errorf("listing engine models: engine answered %d: %s", resp.StatusCode, msg)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxModelsBody+1))
	if err != nil {
		return nil, fmt.Errorf("listing engine models: %w", err)
	}
	if len(body) > maxModelsBody {
		return nil, fmt.Errorf("listing engine models: answer exceeds %d bytes", maxModelsBody)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("decoding engine models: %w", err)
	}
	models := make([]inference.Model, 0, len(list.Data))
	seen := make(map[string]bool, len(list.Data))
	aliases := make(map[string]string)
	add := func(id, engineID string) {
		if seen[id] {
			return
		}
		seen[id] = true
		m := inference.Model{ID: id}
		if b.embed[id] || b.embed[engineID] {
			m.Endpoints = embeddingOnly
		}
		models = append(models, m)
	}
	for _, m := range list.Data {
		if m.ID != "" {
			add(m.ID, m.ID)
		}
	}
	for _, m := range list.Data {
		if bare, ok := strings.CutSuffix(m.ID, ":latest"); ok && bare != "" && !seen[bare] {
			add(bare, m.ID)
			aliases[bare] = m.ID
		}
	}
	b.mu.Lock()
	b.aliases = aliases
	b.mu.Unlock()
	return models, nil
}

// engineModel is the name the engine knows model by: its name:latest when
// Models announced it by its bare name.
func (b *Backend) engineModel(model string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if full, ok := b.aliases[model]; ok {
		return full
	}
	return model
}

// Generate posts req to the engine with streaming forced on and emits the
// engine's output as it arrives. Cancelling ctx, or emit failing, ends the
// engine request, so the engine stops generating.
func (b *Backend) Generate(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
	var path string
	switch req.Kind {
	case inference.KindChat:
		path = "/chat/completions"
	case inference.KindCompletion:
		path = "/completions"
	case inference.KindEmbedding:
		return b.embedding(ctx, req, emit)
	default:
		return inference.Result{}, inference.Errorf(inference.CodeBadRequest, "unsupported request kind %s", req.Kind)
	}
	body, err := engineBody(req.Body, b.engineModel(req.Model), true)
	if err != nil {
		return inference.Result{}, err
	}

	// The engine request has its own context, cancelled on every way out,
	// so the engine never generates on for nobody.
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := b.post(ctx, reqCtx, req, path, body, "text/event-stream")
	if err != nil {
		return inference.Result{}, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		return inference.Result{}, inference.Errorf(inference.CodeEngine, "engine answered without streaming")
	}

	s := &stream{kind: req.Kind, sse: newSSEReader(resp.Body)}
	if err := s.run(ctx, emit); err != nil {
		b.log.Debug("engine stream failed", "request", req.ID, "model", req.Model, "err", err)
		return inference.Result{}, err
	}
	if s.done {
		drain(resp.Body, cancel)
	}
	res := s.result(req.Body)
	b.log.Debug("engine stream done", "request", req.ID, "model", req.Model,
		"deltas", s.deltas, "finish", res.FinishReason, "counted", res.Usage.Counted)
	return res, nil
}

// post sends body to the engine's path in reqCtx (ctx is the request's
// own, to tell its cancellation from the engine's failure) and returns the
// engine's successful answer; an error is ctx's, or an *inference.Error.
func (b *Backend) post(ctx, reqCtx context.Context, req *inference.Request, path string, body []byte, accept string) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(reqCtx, http.MethodPost, b.baseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building engine request: %w", err)
	}
	b.setAuth(hreq)
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", accept)
	resp, err := b.client.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b.log.Warn("engine unreachable", "request", req.ID, "model", req.Model, "err", err)
		return nil, inference.Errorf(inference.CodeEngine, "engine unreachable")
	}
	if !success(resp.StatusCode) {
		e := engineError(resp)
		resp.Body.Close()
		b.log.Debug("engine refused request", "request", req.ID, "model", req.Model, "status", resp.StatusCode, "err", e)
		return nil, e
	}
	return resp, nil
}

func (b *Backend) setAuth(req *http.Request) {
	if b.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+b.apiKey)
	}
}

func success(status int) bool { return status >= 200 && status < 300 }

// drain reads what is left of a response after [DONE], so that the
// connection can be reused. An engine slower than drainTimeout to end the
// response has its connection closed instead.
func drain(body io.Reader, cancel context.CancelFunc) {
	t := time.AfterFunc(drainTimeout, cancel)
	defer t.Stop()
	_, _ = io.CopyN(io.Discard, body, maxDrainBody)
}

var jsonTrue = json.RawMessage("true")

// engineBody returns the app's JSON body as the engine gets it: every field
// kept as the app sent it, but the model named as the engine knows it, and,
// when streaming, "stream" and "stream_options.include_usage" set to true.
func engineBody(body []byte, model string, streaming bool) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, inference.Errorf(inference.CodeBadRequest, "request body is not a JSON object")
	}
	if jsonString(fields["model"]) != model {
		raw, err := marshal(model)
		if err != nil {
			return nil, fmt.Errorf("encoding model: %w", err)
		}
		fields["model"] = raw
	}
	if !streaming {
		out, err := marshal(fields)
		if err != nil {
			return nil, fmt.Errorf("encoding engine request: %w", err)
		}
		return out, nil
	}
	opts := make(map[string]json.RawMessage)
	if raw, ok := fields["stream_options"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &opts); err != nil || opts == nil {
			return nil, &inference.Error{Code: inference.CodeBadRequest, Message: "stream_options must be an object", Param: "stream_options"}
		}
	}
	opts["include_usage"] = jsonTrue
	rawOpts, err := marshal(opts)
	if err != nil {
		return nil, fmt.Errorf("encoding stream_options: %w", err)
	}
	fields["stream_options"] = rawOpts
	fields["stream"] = jsonTrue
	out, err := marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("encoding engine request: %w", err)
	}
	return out, nil
}

// marshal encodes v without escaping HTML characters, which the engine does
// not need.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// engineError turns an engine's error answer into an inference error. The
// engine's message is passed on, cleaned and capped, since it usually says
// what was wrong with the request.
func engineError(resp *http.Response) *inference.Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg, param, _ := parseError(body)
	return statusError(resp.StatusCode, msg, param)
}

// statusError maps an engine status to an inference error: the request's
// fault for 400, 404 and 422, overload for 429 and 503, and any other
// status the engine's own failure.
func statusError(status int, msg, param string) *inference.Error {
	if msg == "" {
		msg = http.StatusText(status)
		if msg == "" {
			msg = "no message"
		}
	}
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return &inference.Error{Code: inference.CodeBadRequest, Message: msg, Param: param}
	case http.StatusNotFound:
		if strings.Contains(strings.ToLower(msg), "model") {
			return &inference.Error{Code: inference.CodeUnknownModel, Message: msg}
		}
		return &inference.Error{Code: inference.CodeBadRequest, Message: msg, Param: param}
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return inference.Errorf(inference.CodeOverloaded, "engine overloaded: %s", msg)
	}
	return inference.Errorf(inference.CodeEngine, "engine answered %d: %s", status, msg)
}

// parseError reads an error answer in the shapes engines use:
// {"error": {"message", "param", "code"}} (OpenAI, llama.cpp, Ollama),
// {"error": "..."}, {"message", "param", "code"} (vLLM) and
// {"detail": "..."} (FastAPI). Status is the numeric code in the body, if
// any. Anything else gives no message.
func parseError(body []byte) (msg, param string, status int) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return "", "", 0
	}
	obj := top
	if raw, ok := top["error"]; ok {
		if s := jsonString(raw); s != "" {
			return clean(s, maxErrorMessage), "", 0
		}
		var inner map[string]json.RawMessage
		if json.Unmarshal(raw, &inner) == nil && inner != nil {
			obj = inner
		}
	}
	msg = jsonString(obj["message"])
	if msg == "" {
		msg = jsonString(top["detail"])
	}
	var code int
	if json.Unmarshal(obj["code"], &code) == nil && code >= 400 && code < 600 {
		status = code
	}
	return clean(msg, maxErrorMessage), clean(jsonString(obj["param"]), maxErrorParam), status
}

// jsonString returns raw as a string, or "" if it is not one.
func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// clean makes an engine's text fit to pass on: valid UTF-8, no control
// characters, at most max bytes.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
