package openaitest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// What follows is a client's side, for tests: sending a request to an
// OpenAI-compatible API (this engine, or a Cocoon client node in front of
// it) and reconstructing the answer as an app would, so that the same
// request asked of both can be compared.

// post sends body as JSON to the engine's path and returns the answer.
func Post(t testing.TB, baseURL string, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatalf("encoding request: %v", err)
		}
	}
	resp, err := http.Post(baseURL+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading answer: %v", err)
	}
	return resp, out
}

// Chunk is a chunk or a whole answer, as far as the tests read it.
type Chunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Model             string          `json:"model"`
	SystemFingerprint *string         `json:"system_fingerprint"`
	Choices           []ChunkChoice   `json:"choices"`
	Usage             json.RawMessage `json:"usage"`
	Timings           json.RawMessage `json:"timings"`
}

type ChunkChoice struct {
	Index        int                        `json:"index"`
	Delta        *Message                   `json:"delta"`
	Message      *Message                   `json:"message"`
	Text         *string                    `json:"text"`
	Logprobs     map[string]json.RawMessage `json:"logprobs"`
	FinishReason *string                    `json:"finish_reason"`
	MatchedStop  json.RawMessage            `json:"matched_stop"`
	StopReason   json.RawMessage            `json:"stop_reason"`
}

type Message struct {
	Role             *string    `json:"role"`
	Content          *string    `json:"content"`
	ReasoningContent *string    `json:"reasoning_content"`
	Reasoning        *string    `json:"reasoning"`
	Refusal          *string    `json:"refusal"`
	ToolCalls        []ToolCall `json:"tool_calls"`
}

type ToolCall struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// choice is one choice as a client reconstructs it.
type Choice struct {
	Content, Reasoning, Refusal, Finish string
	Calls                               []Call
	Logprobs                            map[string][]json.RawMessage // nil when every chunk had none
}

type Call struct{ ID, Name, Args string }

// answer is a reconstructed answer.
type Answer struct {
	Model   string
	Choices []Choice
	Usage   map[string]any
}

// add folds one chunk's or one whole answer's choice into the answer.
func (a *Answer) add(t testing.TB, c ChunkChoice) {
	t.Helper()
	for len(a.Choices) <= c.Index {
		a.Choices = append(a.Choices, Choice{})
	}
	ch := &a.Choices[c.Index]
	if c.FinishReason != nil {
		ch.Finish = *c.FinishReason
	}
	if c.Text != nil {
		ch.Content += *c.Text
	}
	for k, v := range c.Logprobs {
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			t.Fatalf("logprobs.%s: %v", k, err)
		}
		if ch.Logprobs == nil {
			ch.Logprobs = make(map[string][]json.RawMessage)
		}
		ch.Logprobs[k] = append(ch.Logprobs[k], list...)
	}
	m := c.Delta
	if m == nil {
		m = c.Message
	}
	if m == nil {
		return
	}
	for _, p := range []struct {
		dst *string
		src *string
	}{{&ch.Content, m.Content}, {&ch.Reasoning, m.ReasoningContent}, {&ch.Reasoning, m.Reasoning}, {&ch.Refusal, m.Refusal}} {
		if p.src != nil {
			*p.dst += *p.src
		}
	}
	for i, tc := range m.ToolCalls {
		k := i
		if tc.Index != nil {
			k = *tc.Index
		}
		for len(ch.Calls) <= k {
			ch.Calls = append(ch.Calls, Call{})
		}
		if tc.ID != "" {
			ch.Calls[k].ID = tc.ID
		}
		ch.Calls[k].Name += tc.Function.Name
		ch.Calls[k].Args += tc.Function.Arguments
	}
}

// setUsage records a usage object that is not null.
func (a *Answer) setUsage(t testing.TB, raw json.RawMessage) {
	t.Helper()
	if len(raw) == 0 || string(raw) == "null" {
		return
	}
	if a.Usage != nil {
		t.Fatalf("usage reported twice")
	}
	if err := json.Unmarshal(raw, &a.Usage); err != nil {
		t.Fatalf("usage: %v", err)
	}
}

// whole asks for a whole answer and reconstructs it.
func Whole(t testing.TB, baseURL string, path string, req map[string]any) (Answer, Chunk) {
	t.Helper()
	resp, body := Post(t, baseURL, path, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var w Chunk
	if err := json.Unmarshal(body, &w); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	a := Answer{Model: w.Model}
	for _, c := range w.Choices {
		a.add(t, c)
	}
	a.setUsage(t, w.Usage)
	return a, w
}

// stream asks for a streamed answer and reconstructs it from its chunks,
// checking what every chunk must share.
func Stream(t testing.TB, baseURL string, path string, req map[string]any) (Answer, []Chunk) {
	t.Helper()
	req["stream"] = true
	resp, body := Post(t, baseURL, path, req)
	delete(req, "stream")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	var chunks []Chunk
	done := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || done {
			t.Fatalf("unexpected line %q", line)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var w Chunk
		if err := json.Unmarshal([]byte(data), &w); err != nil {
			t.Fatalf("decoding chunk %s: %v", data, err)
		}
		chunks = append(chunks, w)
	}
	if !done || len(chunks) == 0 {
		t.Fatalf("stream of %d chunks without [DONE]: %s", len(chunks), body)
	}
	var a Answer
	for _, w := range chunks {
		if w.ID != chunks[0].ID || w.Model != chunks[0].Model || !strings.HasSuffix(w.Object, "completion.chunk") && w.Object != "text_completion" {
			t.Fatalf("chunk %s/%s/%s differs from %s/%s", w.ID, w.Object, w.Model, chunks[0].ID, chunks[0].Model)
		}
		for _, c := range w.Choices {
			a.add(t, c)
		}
		a.setUsage(t, w.Usage)
	}
	a.Model = chunks[0].Model
	return a, chunks
}

// chatRequest is a chat request for model with n choices; extra adds or
// replaces fields.
func ChatRequest(model string, n int, extra map[string]any) map[string]any {
	req := map[string]any{
		"model":    model,
		"messages": []map[string]any{{"role": "user", "content": "What is the weather in Paris?"}},
	}
	if n > 1 {
		req["n"] = n
	}
	for k, v := range extra {
		req[k] = v
	}
	return req
}
