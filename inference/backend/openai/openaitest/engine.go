// Package openaitest runs a fake OpenAI-compatible inference engine over
// real loopback HTTP, for tests of the openai backend and of the mesh.
//
// The engine imitates the public wire shapes of vLLM, SGLang, the llama.cpp
// server and Ollama (see Dialect): their server-sent event streams, their
// whole answers, their error objects and their quirks (vLLM's role-only
// first delta, SGLang's nulls and matched_stop, llama.cpp's timings,
// Ollama's whole tool calls and ":latest" model names).
//
// The model name picks a scripted scenario (see the Model constants); GET
// /v1/models lists them all. Chat and text completions honour n (1 to 8,
// each choice a copy with its index in its text), logprobs (for every
// content token, whatever the model) and stream_options.include_usage.
// Every answer is rendered from one script of pieces, so the whole answer
// to a request is exactly what its streamed answer accumulates to: the
// same content, reasoning, refusal, tool calls, logprobs, finish reasons
// and usage. Answers are deterministic, tool call ids included; only
// response ids change from request to request.
package openaitest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Dialect is whose wire shape the engine imitates.
type Dialect string

// The dialects the engine speaks.
const (
	VLLM     Dialect = "vllm"
	SGLang   Dialect = "sglang"
	LlamaCpp Dialect = "llama.cpp"
	Ollama   Dialect = "ollama"
)

// Dialects returns all four dialects.
func Dialects() []Dialect { return []Dialect{VLLM, SGLang, LlamaCpp, Ollama} }

// created is the fixed creation time of every answer, so that answers do
// not depend on the clock.
const created = 1735689600

// maxBody caps a request body.
const maxBody = 8 << 20

// Engine is a running fake engine: an httptest.Server on 127.0.0.1.
// It is safe for concurrent use.
type Engine struct {
	dialect Dialect
	srv     *httptest.Server
	seq     atomic.Uint64 // numbers responses, for their ids

	mu   sync.Mutex                              // guards reqs
	reqs map[string][]map[string]json.RawMessage // bodies by path below /v1
}

// Start starts an engine speaking dialect d; it is closed by t.Cleanup.
func Start(t testing.TB, d Dialect) *Engine {
	t.Helper()
	switch d {
	case VLLM, SGLang, LlamaCpp, Ollama:
	default:
		t.Fatalf("openaitest: unknown dialect %q", d)
	}
	e := &Engine{dialect: d, reqs: make(map[string][]map[string]json.RawMessage)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", e.serveModels)
	mux.HandleFunc("POST /v1/chat/completions", e.handle("/chat/completions", e.serveGenerate(true)))
	mux.HandleFunc("POST /v1/completions", e.handle("/completions", e.serveGenerate(false)))
	mux.HandleFunc("POST /v1/embeddings", e.handle("/embeddings", e.serveEmbeddings))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// Dialect returns the dialect the engine speaks.
func (e *Engine) Dialect() Dialect { return e.dialect }

// BaseURL returns the engine's OpenAI base URL, http://127.0.0.1:PORT/v1.
func (e *Engine) BaseURL() string { return e.srv.URL + "/v1" }

// Requests returns the bodies received on path ("/chat/completions",
// "/completions" or "/embeddings"), in order, decoded as top-level JSON
// objects. A body that was not a JSON object is recorded as nil.
func (e *Engine) Requests(path string) []map[string]json.RawMessage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]map[string]json.RawMessage(nil), e.reqs[path]...)
}

// request is the part of a request body the engine looks at.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N              *int            `json:"n"`
	Logprobs       json.RawMessage `json:"logprobs"` // bool for chat, int for completions
	TopLogprobs    *int            `json:"top_logprobs"`
	Messages       []message       `json:"messages"`
	Prompt         json.RawMessage `json:"prompt"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

// message is one message of a chat request.
type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// includeUsage reports whether a stream must end with usage.
func (r *request) includeUsage() bool {
	return r.StreamOptions != nil && r.StreamOptions.IncludeUsage
}

// httpError is a request the engine refuses: its status and message.
type httpError struct {
	code int
	msg  string
}

// Error says what was refused and why.
func (e *httpError) Error() string { return fmt.Sprintf("%d: %s", e.code, e.msg) }

// badRequest is a 400 refusal.
func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// handle serves POST /v1+path with h: it reads, records and decodes the
// body, and answers an httpError from h (or from decoding) with the
// engine's error object.
func (e *Engine) handle(path string, h func(http.ResponseWriter, *request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := e.decode(r, path, func(req *request) error { return h(w, req) })
		if he, ok := errors.AsType[*httpError](err); ok {
			e.fail(w, he.code, he.msg)
		}
	}
}

// decode reads, records and decodes the body of a request to path, then
// hands it to h.
func (e *Engine) decode(r *http.Request, path string, h func(*request) error) error {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return badRequest("reading body: %v", err)
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		top = nil
	}
	e.mu.Lock()
	e.reqs[path] = append(e.reqs[path], top)
	e.mu.Unlock()
	if top == nil {
		return badRequest("request body must be a JSON object")
	}
	var req request
	if err := json.Unmarshal(raw, &req); err != nil {
		return badRequest("invalid request: %v", err)
	}
	return h(&req)
}

// resolve maps a requested model name to its scenario and to the name the
// answer echoes, or refuses it with 404 and the engine's message. Ollama
// accepts a ":latest" tag and echoes it.
func (e *Engine) resolve(name string) (model, echo string, err error) {
	model, echo = name, name
	if e.dialect == Ollama {
		model = strings.TrimSuffix(name, ":latest")
		echo = model + ":latest"
	}
	if known(model) {
		return model, echo, nil
	}
	msg := map[Dialect]string{
		VLLM:     "The model `%s` does not exist.",
		SGLang:   "The model `%s` does not exist.",
		LlamaCpp: "model '%s' not found",
		Ollama:   "model %q not found, try pulling it first",
	}[e.dialect]
	return "", "", &httpError{http.StatusNotFound, fmt.Sprintf(msg, name)}
}

// fail answers with status code and the engine's error object.
func (e *Engine) fail(w http.ResponseWriter, code int, msg string) {
	notFound := code == http.StatusNotFound
	var body object
	switch e.dialect {
	case VLLM, SGLang:
		typ := map[bool]string{false: "BadRequestError", true: "NotFoundError"}[notFound]
		body = object{{"object", "error"}, {"message", msg}, {"type", typ}, {"param", nil}, {"code", code}}
	default:
		typ := map[bool]string{false: "invalid_request_error", true: "not_found_error"}[notFound]
		var c any // Ollama leaves the code null, llama.cpp gives the status
		if e.dialect == LlamaCpp {
			c = code
		}
		body = object{{"error", object{{"message", msg}, {"type", typ}, {"param", nil}, {"code", c}}}}
	}
	writeJSON(w, code, body)
}

// writeJSON answers with one JSON value.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf("encoding answer: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b) // a client that went away is not the engine's problem
}

// serveModels lists every model.
func (e *Engine) serveModels(w http.ResponseWriter, _ *http.Request) {
	owner := map[Dialect]string{VLLM: "vllm", SGLang: "sglang", LlamaCpp: "llamacpp", Ollama: "library"}[e.dialect]
	var data []object
	for _, m := range Models() {
		_, echo, _ := e.resolve(m)
		data = append(data, object{{"id", echo}, {"object", "model"}, {"created", created}, {"owned_by", owner}})
	}
	writeJSON(w, http.StatusOK, object{{"object", "list"}, {"data", data}})
}
