package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/cocoon-mesh/cocoon/inference/backend/sim"
)

// mockEngine is a stand-in for an OpenAI-compatible inference engine (vLLM,
// SGLang, llama.cpp server): every chat request gets the benchmark answer,
// chunks events of chunkBytes bytes of text each, as chat.completion.chunk
// server-sent events ending in "data: [DONE]", with a final usage event when
// the request sets stream_options.include_usage. It also lists its one
// model at GET /v1/models, which is all a worker's openai backend needs.
//
// It never holds bytes back and never flushes more than it must: unpaced
// (gap 0) it has the whole answer at once, so it writes it all and flushes
// once; paced it writes and flushes each event, then waits gap before the
// next. Like a real engine it does not know the length ahead, so answers go
// out chunked.
type mockEngine struct {
	gap    time.Duration
	events [][]byte     // the content events, each a whole "data: ...\n\n"
	usage  []byte       // the usage event
	whole  []byte       // every content event and [DONE]: the unpaced answer
	wholeU []byte       // the same with the usage event before [DONE]
	models []byte       // the answer to GET /v1/models
	rec    *gapRecorder // the gaps between the events it flushed, paced

	srv *http.Server
	ln  net.Listener
	err chan error // Serve's result
}

const (
	mockModel = "bench"
	mockID    = "chatcmpl-bench"
	done      = "data: [DONE]\n\n"
)

// newMockEngine prepares an engine; Start starts it.
func newMockEngine(chunks, chunkBytes int, gap time.Duration) *mockEngine {
	e := &mockEngine{gap: gap, rec: &gapRecorder{}}
	text := sim.ChunkText(chunkBytes)
	created := time.Now().Unix()
	for i := range chunks {
		delta, finish := `{"content":"`+text+`"}`, "null"
		if i == 0 {
			delta = `{"role":"assistant","content":"` + text + `"}`
		}
		if i == chunks-1 {
			finish = `"length"`
		}
		ev := fmt.Sprintf(`data: {"id":%q,"object":"chat.completion.chunk","created":%d,"model":%q,"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}`+"\n\n",
			mockID, created, mockModel, delta, finish)
		e.events = append(e.events, []byte(ev))
	}
	e.usage = fmt.Appendf(nil, `data: {"id":%q,"object":"chat.completion.chunk","created":%d,"model":%q,"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n",
		mockID, created, mockModel, chunks, chunks+1)
	for _, ev := range e.events {
		e.whole = append(e.whole, ev...)
	}
	e.wholeU = append(append([]byte{}, e.whole...), e.usage...)
	e.whole = append(e.whole, done...)
	e.wholeU = append(e.wholeU, done...)
	e.models = []byte(`{"object":"list","data":[{"id":"` + mockModel + `","object":"model","created":0,"owned_by":"cocoon-bench"}]}` + "\n")
	return e
}

// Start listens on a free loopback port and serves until Close.
func (e *mockEngine) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("mock engine: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", e.serveModels)
	mux.HandleFunc("POST /v1/chat/completions", e.serveChat)
	e.ln = ln
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	e.err = make(chan error, 1)
	go func() { e.err <- e.srv.Serve(ln) }()
	return nil
}

// URL is the engine's root, without the /v1 of its API.
func (e *mockEngine) URL() string { return "http://" + e.ln.Addr().String() }

// Close stops the engine and waits for it.
func (e *mockEngine) Close() error {
	if e.srv == nil {
		return nil
	}
	e.srv.Close()
	if err := <-e.err; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (e *mockEngine) serveModels(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(e.models)
}

func (e *mockEngine) serveChat(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Stream        bool `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"the mock engine only streams: send a JSON body with \"stream\": true","type":"invalid_request_error","param":"stream","code":null}}`+"\n")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	if e.gap <= 0 {
		answer := e.whole
		if req.StreamOptions.IncludeUsage {
			answer = e.wholeU
		}
		w.Write(answer)
		rc.Flush()
		return
	}
	t := time.NewTimer(0) // Reset before each wait; since Go 1.23 no stale tick survives a Reset
	defer t.Stop()
	gaps := make([]time.Duration, 0, len(e.events))
	defer func() { e.rec.add(gaps) }()
	var last time.Time
	for i, ev := range e.events {
		if i > 0 {
			t.Reset(e.gap)
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
		w.Write(ev)
		if i == len(e.events)-1 {
			// The rest is ready at once: it goes with the last event.
			if req.StreamOptions.IncludeUsage {
				w.Write(e.usage)
			}
			io.WriteString(w, done)
		}
		if err := rc.Flush(); err != nil {
			return
		}
		now := time.Now()
		if i > 0 {
			gaps = append(gaps, now.Sub(last))
		}
		last = now
	}
}
