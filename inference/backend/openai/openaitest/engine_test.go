package openaitest_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/inference/backend/openai/openaitest"
)

func TestStreamAccumulatesToWhole(t *testing.T) {
	suffix := func(i int) string {
		if i == 0 {
			return ""
		}
		return fmt.Sprintf(" (%d)", i+1)
	}
	weather := openaitest.Call{Name: "get_weather", Args: `{"city":"Paris"}`}
	clock := openaitest.Call{Name: "get_time", Args: `{"tz":"Europe/Paris"}`}
	tests := []struct {
		name, path, model string
		extra             map[string]any
		want              func(i int) openaitest.Choice // ids and logprobs are not compared
	}{
		{"plain", "/chat/completions", openaitest.ModelPlain, nil,
			func(i int) openaitest.Choice {
				return openaitest.Choice{Content: openaitest.PlainText + suffix(i), Finish: "stop"}
			}},
		{"tools", "/chat/completions", openaitest.ModelTools, nil,
			func(int) openaitest.Choice {
				return openaitest.Choice{Calls: []openaitest.Call{weather}, Finish: "tool_calls"}
			}},
		{"tools-parallel", "/chat/completions", openaitest.ModelToolsParallel, nil,
			func(int) openaitest.Choice {
				return openaitest.Choice{Calls: []openaitest.Call{weather, clock}, Finish: "tool_calls"}
			}},
		{"tool result", "/chat/completions", openaitest.ModelTools, map[string]any{"messages": []map[string]any{
			{"role": "user", "content": "Weather in Paris?"},
			{"role": "assistant", "content": nil, "tool_calls": []map[string]any{{"id": "c1", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": `{"city":"Paris"}`}}}},
			{"role": "tool", "tool_call_id": "c1", "content": "sunny"},
		}}, func(i int) openaitest.Choice {
			return openaitest.Choice{Content: openaitest.ToolAnswerText + suffix(i), Finish: "stop"}
		}},
		{"reasoning", "/chat/completions", openaitest.ModelReasoning, nil, func(i int) openaitest.Choice {
			return openaitest.Choice{Reasoning: openaitest.ReasoningText, Content: openaitest.AnswerText + suffix(i), Finish: "stop"}
		}},
		{"logprobs", "/chat/completions", openaitest.ModelLogprobs, map[string]any{"logprobs": true, "top_logprobs": 2},
			func(i int) openaitest.Choice {
				return openaitest.Choice{Content: openaitest.LogprobsText + suffix(i), Finish: "stop"}
			}},
		{"logprobs unasked", "/chat/completions", openaitest.ModelLogprobs, nil,
			func(i int) openaitest.Choice {
				return openaitest.Choice{Content: openaitest.LogprobsText + suffix(i), Finish: "stop"}
			}},
		{"refusal", "/chat/completions", openaitest.ModelRefusal, nil,
			func(i int) openaitest.Choice {
				return openaitest.Choice{Refusal: openaitest.RefusalText + suffix(i), Finish: "stop"}
			}},
		{"cached", "/chat/completions", openaitest.ModelCached, nil,
			func(i int) openaitest.Choice {
				return openaitest.Choice{Content: openaitest.PlainText + suffix(i), Finish: "stop"}
			}},
		{"text plain", "/completions", openaitest.ModelPlain, map[string]any{"prompt": "Say hello"},
			func(i int) openaitest.Choice {
				return openaitest.Choice{Content: openaitest.PlainText + suffix(i), Finish: "stop"}
			}},
		{"text logprobs", "/completions", openaitest.ModelLogprobs, map[string]any{"prompt": []int{1, 2, 3}, "logprobs": 2},
			func(i int) openaitest.Choice {
				return openaitest.Choice{Content: openaitest.LogprobsText + suffix(i), Finish: "stop"}
			}},
		{"text tools", "/completions", openaitest.ModelTools, map[string]any{"prompt": []string{"a", "b"}},
			func(i int) openaitest.Choice {
				return openaitest.Choice{Content: openaitest.PlainText + suffix(i), Finish: "stop"}
			}},
	}
	for _, d := range openaitest.Dialects() {
		e := openaitest.Start(t, d)
		for _, tt := range tests {
			for _, n := range []int{1, 2} {
				t.Run(fmt.Sprintf("%s/%s/n=%d", d, tt.name, n), func(t *testing.T) {
					req := openaitest.ChatRequest(tt.model, n, tt.extra)
					if tt.path == "/completions" {
						delete(req, "messages")
					}
					w, _ := openaitest.Whole(t, e.BaseURL(), tt.path, req)
					bare, _ := openaitest.Stream(t, e.BaseURL(), tt.path, req)
					req["stream_options"] = map[string]any{"include_usage": true}
					s, _ := openaitest.Stream(t, e.BaseURL(), tt.path, req)

					if len(w.Choices) != n {
						t.Fatalf("%d choices, want %d", len(w.Choices), n)
					}
					for i, c := range w.Choices {
						got := c
						got.Logprobs = nil
						got.Calls = append([]openaitest.Call(nil), c.Calls...)
						for k := range got.Calls {
							if got.Calls[k].ID == "" {
								t.Errorf("choice %d: tool call %d has no id", i, k)
							}
							got.Calls[k].ID = ""
						}
						if want := tt.want(i); !reflect.DeepEqual(got, want) {
							t.Errorf("choice %d:\n got %+v\nwant %+v", i, got, want)
						}
					}
					if w.Usage == nil || bare.Usage != nil || s.Usage == nil {
						t.Errorf("usage whole %v, bare stream %v, stream with include_usage %v", w.Usage, bare.Usage, s.Usage)
					}
					bare.Usage = w.Usage
					for name, got := range map[string]openaitest.Answer{"stream": s, "stream without usage": bare} {
						if !reflect.DeepEqual(got, w) {
							t.Errorf("%s does not accumulate to the whole answer:\n got %+v\nwant %+v", name, got, w)
						}
					}
				})
			}
		}
	}
}

func TestUsageDetails(t *testing.T) {
	for _, d := range openaitest.Dialects() {
		e := openaitest.Start(t, d)
		t.Run(string(d), func(t *testing.T) {
			a, _ := openaitest.Whole(t, e.BaseURL(), "/chat/completions", openaitest.ChatRequest(openaitest.ModelCached, 2, nil))
			if got := fmt.Sprint(a.Usage["prompt_tokens"], a.Usage["prompt_tokens_details"]); got != "12 map[cached_tokens:8]" {
				t.Errorf("cached usage %v", a.Usage)
			}
			a, _ = openaitest.Whole(t, e.BaseURL(), "/chat/completions", openaitest.ChatRequest(openaitest.ModelReasoning, 2, nil))
			if got := fmt.Sprint(a.Usage["completion_tokens_details"]); got != "map[reasoning_tokens:20]" {
				t.Errorf("reasoning usage %v", a.Usage)
			}
			a, _ = openaitest.Whole(t, e.BaseURL(), "/chat/completions", openaitest.ChatRequest(openaitest.ModelPlain, 2, nil))
			if got := fmt.Sprint(a.Usage["completion_tokens"], " ", a.Usage["total_tokens"]); got != "11 "+fmt.Sprint(11+a.Usage["prompt_tokens"].(float64)) {
				t.Errorf("plain usage %v", a.Usage)
			}
		})
	}
}

func TestLogprobs(t *testing.T) {
	tests := []struct {
		name     string
		extra    map[string]any
		wantNull bool
		wantTop  int
	}{
		{"unasked", nil, true, 0},
		{"no top", map[string]any{"logprobs": true}, false, 0},
		{"top 3", map[string]any{"logprobs": true, "top_logprobs": 3}, false, 3},
	}
	for _, d := range openaitest.Dialects() {
		e := openaitest.Start(t, d)
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s", d, tt.name), func(t *testing.T) {
				a, _ := openaitest.Whole(t, e.BaseURL(), "/chat/completions", openaitest.ChatRequest(openaitest.ModelLogprobs, 1, tt.extra))
				lp := a.Choices[0].Logprobs
				if tt.wantNull {
					if lp != nil {
						t.Fatalf("logprobs %v, want null", lp)
					}
					return
				}
				if len(lp["content"]) != 5 {
					t.Fatalf("%d logprob entries, want 5", len(lp["content"]))
				}
				var text strings.Builder
				for _, raw := range lp["content"] {
					var entry struct {
						Token       string            `json:"token"`
						Bytes       []int             `json:"bytes"`
						TopLogprobs []json.RawMessage `json:"top_logprobs"`
					}
					if err := json.Unmarshal(raw, &entry); err != nil {
						t.Fatal(err)
					}
					if len(entry.TopLogprobs) != tt.wantTop || len(entry.Bytes) != len(entry.Token) {
						t.Errorf("entry %s", raw)
					}
					text.WriteString(entry.Token)
				}
				if text.String() != openaitest.LogprobsText {
					t.Errorf("tokens make %q", text.String())
				}
			})
		}
	}
}

func TestDialectShapes(t *testing.T) {
	for _, d := range openaitest.Dialects() {
		e := openaitest.Start(t, d)
		t.Run(string(d), func(t *testing.T) {
			req := openaitest.ChatRequest(openaitest.ModelTools, 1, map[string]any{"stream_options": map[string]any{"include_usage": true}})
			_, chunks := openaitest.Stream(t, e.BaseURL(), "/chat/completions", req)
			last := chunks[len(chunks)-1]
			var finishing openaitest.Chunk
			toolDeltas := 0
			for _, c := range chunks {
				if fp := c.SystemFingerprint; (d == openaitest.LlamaCpp || d == openaitest.Ollama) != (fp != nil) {
					t.Errorf("system_fingerprint %v", fp)
				}
				for _, ch := range c.Choices {
					if ch.FinishReason != nil {
						finishing = c
					}
					if ch.Delta.ToolCalls != nil {
						toolDeltas++
					}
					if d == openaitest.Ollama && (ch.Delta.Role == nil || *ch.Delta.Role != "assistant") {
						t.Errorf("Ollama delta without role")
					}
				}
			}
			fc := finishing.Choices[0]
			switch d {
			case openaitest.VLLM:
				first := chunks[0].Choices[0].Delta
				if *first.Role != "assistant" || *first.Content != "" || string(fc.StopReason) != "null" {
					t.Errorf("vLLM first delta %+v, stop_reason %s", first, fc.StopReason)
				}
			case openaitest.SGLang:
				if string(fc.MatchedStop) != "2" {
					t.Errorf("matched_stop %s", fc.MatchedStop)
				}
			case openaitest.LlamaCpp:
				if finishing.Timings == nil || finishing.Usage == nil || finishing.ID != last.ID || len(last.Choices) != 1 {
					t.Errorf("llama.cpp last chunk %+v", last)
				}
			}
			if wantWhole := d == openaitest.Ollama; wantWhole != (toolDeltas == 1) {
				t.Errorf("tool calls in %d deltas", toolDeltas)
			}
			if d != openaitest.LlamaCpp && (len(last.Choices) != 0 || last.Usage == nil) {
				t.Errorf("last chunk %+v, want usage and no choices", last)
			}

			_, w := openaitest.Whole(t, e.BaseURL(), "/chat/completions", openaitest.ChatRequest(openaitest.ModelReasoning, 1, nil))
			m := w.Choices[0].Message
			if got := m.Reasoning != nil; got != (d == openaitest.Ollama) {
				t.Errorf("reasoning field %v, want only for Ollama", m.Reasoning)
			}
			_, w = openaitest.Whole(t, e.BaseURL(), "/chat/completions", openaitest.ChatRequest(openaitest.ModelTools, 1, nil))
			if m := w.Choices[0].Message; (m.Content == nil) == (d == openaitest.Ollama) {
				t.Errorf("tool call content %v", m.Content)
			}
		})
	}
}

func TestEmbeddings(t *testing.T) {
	tests := []struct {
		name  string
		input any
		dims  int
		texts []string
	}{
		{"string", "hello world", 0, []string{"hello world"}},
		{"strings", []string{"a", "b c", "d"}, 0, []string{"a", "b c", "d"}},
		{"tokens", []int{1, 2, 3}, 16, []string{"tokens:1,2,3"}},
		{"token arrays", [][]int{{1}, {2, 3}}, 3, []string{"tokens:1", "tokens:2,3"}},
	}
	for _, d := range openaitest.Dialects() {
		e := openaitest.Start(t, d)
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s", d, tt.name), func(t *testing.T) {
				req := map[string]any{"model": openaitest.ModelEmbed, "input": tt.input}
				dims := openaitest.DefaultDimensions
				if tt.dims > 0 {
					req["dimensions"] = tt.dims
					dims = tt.dims
				}
				floats := embed(t, e, req)
				req["encoding_format"] = "base64"
				encoded := embed(t, e, req)
				if len(floats) != len(tt.texts) || len(encoded) != len(tt.texts) {
					t.Fatalf("%d and %d vectors, want %d", len(floats), len(encoded), len(tt.texts))
				}
				for i, raw := range floats {
					var vec []float64
					if err := json.Unmarshal(raw, &vec); err != nil {
						t.Fatal(err)
					}
					if want := openaitest.Embedding(tt.texts[i], dims); len(vec) != dims || !reflect.DeepEqual(vec, want) {
						t.Errorf("vector %d = %v, want %v", i, vec, want)
					}
					var s string
					if err := json.Unmarshal(encoded[i], &s); err != nil {
						t.Fatal(err)
					}
					b, err := base64.StdEncoding.DecodeString(s)
					if err != nil || len(b) != 4*dims {
						t.Fatalf("base64 %q: %v", s, err)
					}
					for j, f := range vec {
						if got := math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:])); got != float32(f) {
							t.Errorf("vector %d[%d]: base64 %v, float %v", i, j, got, f)
						}
					}
				}
			})
		}
	}
}

// embed returns the embeddings of the answer to req, in index order.
func embed(t *testing.T, e *openaitest.Engine, req map[string]any) []json.RawMessage {
	t.Helper()
	resp, body := openaitest.Post(t, e.BaseURL(), "/embeddings", req)
	var a struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &a); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %s: %v", resp.StatusCode, body, err)
	}
	if a.Object != "list" || a.Usage.PromptTokens == 0 || a.Usage.TotalTokens != a.Usage.PromptTokens {
		t.Errorf("answer %s", body)
	}
	out := make([]json.RawMessage, len(a.Data))
	for i, v := range a.Data {
		if v.Index != i || v.Object != "embedding" {
			t.Errorf("data[%d] is %s #%d", i, v.Object, v.Index)
		}
		out[i] = v.Embedding
	}
	return out
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, path string
		body       any
		status     int
		contains   string
	}{
		{"unknown chat model", "/chat/completions", map[string]any{"model": "nope", "messages": []any{}}, 404, "model"},
		{"unknown text model", "/completions", map[string]any{"model": "nope", "prompt": "x"}, 404, "model"},
		{"unknown embedding model", "/embeddings", map[string]any{"model": "nope", "input": "x"}, 404, "model"},
		{"chat on embed", "/chat/completions", map[string]any{"model": "embed", "messages": []any{}}, 400, "embed"},
		{"text on embed", "/completions", map[string]any{"model": "embed", "prompt": "x"}, 400, "embed"},
		{"embeddings on chat model", "/embeddings", map[string]any{"model": "plain", "input": "x"}, 400, "plain"},
		{"not JSON", "/chat/completions", "hello", 400, ""},
		{"array", "/chat/completions", `[{"model":"plain"}]`, 400, ""},
		{"bad n", "/chat/completions", map[string]any{"model": "plain", "n": 9}, 400, "n"},
		{"bad logprobs", "/completions", map[string]any{"model": "plain", "prompt": "x", "logprobs": true}, 400, "logprobs"},
		{"empty input", "/embeddings", map[string]any{"model": "embed", "input": []string{}}, 400, "input"},
	}
	for _, d := range openaitest.Dialects() {
		e := openaitest.Start(t, d)
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s", d, tt.name), func(t *testing.T) {
				resp, body := openaitest.Post(t, e.BaseURL(), tt.path, tt.body)
				if resp.StatusCode != tt.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
				}
				var flat struct {
					Object, Message, Type string
					Code                  int
				}
				var nested struct {
					Error struct{ Message, Type string }
				}
				if err := json.Unmarshal(body, &flat); err != nil {
					t.Fatalf("error body %s: %v", body, err)
				}
				_ = json.Unmarshal(body, &nested)
				msg := nested.Error.Message
				if d == openaitest.VLLM || d == openaitest.SGLang {
					if flat.Object != "error" || flat.Code != tt.status || flat.Type == "" {
						t.Errorf("error body %s", body)
					}
					msg = flat.Message
				} else if nested.Error.Type == "" {
					t.Errorf("error body %s", body)
				}
				if msg == "" || !strings.Contains(msg, tt.contains) {
					t.Errorf("message %q, want it to contain %q", msg, tt.contains)
				}
			})
		}
	}
}

func TestModelNames(t *testing.T) {
	for _, d := range openaitest.Dialects() {
		e := openaitest.Start(t, d)
		t.Run(string(d), func(t *testing.T) {
			resp, err := http.Get(e.BaseURL() + "/models")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var list struct {
				Data []struct{ ID string } `json:"data"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
				t.Fatal(err)
			}
			tag := ""
			if d == openaitest.Ollama {
				tag = ":latest"
			}
			var ids []string
			for _, m := range list.Data {
				ids = append(ids, m.ID)
			}
			var want []string
			for _, m := range openaitest.Models() {
				want = append(want, m+tag)
			}
			if !reflect.DeepEqual(ids, want) {
				t.Errorf("models %v, want %v", ids, want)
			}
			for _, name := range []string{"tools", "tools:latest"} {
				resp, body := openaitest.Post(t, e.BaseURL(), "/chat/completions", openaitest.ChatRequest(name, 1, nil))
				wantOK := d == openaitest.Ollama || name == "tools"
				if (resp.StatusCode == http.StatusOK) != wantOK {
					t.Errorf("%s: status %d: %s", name, resp.StatusCode, body)
				}
				if wantOK && !strings.Contains(string(body), fmt.Sprintf(`"model":%q`, "tools"+tag)) {
					t.Errorf("%s: answer does not echo %q: %s", name, "tools"+tag, body)
				}
			}
		})
	}
}

func TestRequests(t *testing.T) {
	e := openaitest.Start(t, openaitest.VLLM)
	openaitest.Post(t, e.BaseURL(), "/chat/completions", openaitest.ChatRequest(openaitest.ModelPlain, 1, nil))
	openaitest.Post(t, e.BaseURL(), "/chat/completions", "not json")
	openaitest.Post(t, e.BaseURL(), "/embeddings", map[string]any{"model": "embed", "input": "x"})
	got := e.Requests("/chat/completions")
	if len(got) != 2 || string(got[0]["model"]) != `"plain"` || got[1] != nil {
		t.Errorf("chat requests %v", got)
	}
	if got := e.Requests("/embeddings"); len(got) != 1 || string(got[0]["input"]) != `"x"` {
		t.Errorf("embedding requests %v", got)
	}
	if got := e.Requests("/completions"); len(got) != 0 {
		t.Errorf("completion requests %v", got)
	}
}

func FuzzChat(f *testing.F) {
	f.Add([]byte(`{"model":"tools","stream":true,"n":2}`))
	f.Add([]byte(`{"model":"logprobs","logprobs":true,"top_logprobs":3,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`))
	f.Add([]byte(`{"model":"reasoning","stream":true,"stream_options":{"include_usage":true}}`))
	f.Add([]byte(`{"model":1}`))
	f.Add([]byte(`null`))
	e := openaitest.Start(f, openaitest.SGLang)
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := http.Post(e.BaseURL()+"/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") && !json.Valid(out) {
				t.Errorf("invalid JSON answer %s", out)
			}
		case http.StatusBadRequest, http.StatusNotFound:
		default:
			t.Errorf("status %d: %s", resp.StatusCode, out)
		}
	})
}
