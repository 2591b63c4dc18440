package gateway

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/cocoon-mesh/cocoon/inference"
)

var eventSeeds = []string{
	`{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":"hm"},"logprobs":null,"finish_reason":null}]}`,
	`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}`,
	`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}`,
	`{"choices":[{"index":1,"delta":{"content":"b"},"logprobs":{"content":[{"token":"b","logprob":-0.1,"bytes":[98],"top_logprobs":[]}]},"finish_reason":"stop","matched_stop":2}],"system_fingerprint":"fp","timings":{"n":1}}`,
	`{"choices":[{"index":0,"delta":{"function_call":{"name":"f","arguments":"{}"}}}],"usage":{"prompt_tokens":1}}`,
	`{"choices":[{"index":0,"text":"once","logprobs":{"tokens":["once"],"token_logprobs":[-1],"top_logprobs":[{"once":-1}],"text_offset":[0]}}]}`,
	"{\n\"choices\" : [ ]\n}",
	`{"choices":[{"index":200}]}`,
	`[]`,
	`{"a":1} {"b":2}`,
}

// TestEventRewrite: an engine event reaches the app with this answer's id,
// created and model, its other fields as the engine sent them, compacted
// to one line, without usage; the first choice's finish and role are
// noted, and the fingerprint carried into the text chunks after it.
func TestEventRewrite(t *testing.T) {
	e := newEncoder(inference.KindChat, "chatcmpl-mesh", "m", 7)
	got, err := e.appendEvent(nil, []byte("{\"id\":\"engine\",\"model\":\"m:latest\",\"created\":1,\n\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":3},\"system_fingerprint\":\"fp_x\",\"cocoon\":{\"worker\":\"forged\"}}"))
	if err != nil {
		t.Fatal(err)
	}
	want := `data: {"id":"chatcmpl-mesh","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[]},"finish_reason":"tool_calls"}],"system_fingerprint":"fp_x"}` + "\n\n"
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if e.first || !e.finished {
		t.Errorf("first %v, finished %v: the event named the role and finished the first choice", e.first, e.finished)
	}
	chunk := e.appendChunk(nil, []byte("hi"), nil)
	if !bytes.Contains(chunk, []byte(`"model":"m","system_fingerprint":"fp_x","choices"`)) {
		t.Errorf("a text chunk after the event does not repeat its fingerprint: %s", chunk)
	}
	if _, err := e.appendEvent(nil, []byte(`{"choices":[]} trailing`)); err == nil {
		t.Error("an event with trailing bytes passed")
	}
}

// TestAccumulate: a whole answer joins its pieces as the SDKs do.
func TestAccumulate(t *testing.T) {
	a := &accumulator{kind: inference.KindChat}
	for _, ev := range eventSeeds[:5] {
		if err := a.addEvent([]byte(ev)); err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
	}
	if err := a.addEvent([]byte(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":"tool_calls"}]}`)); err != nil {
		t.Fatal(err)
	}
	e := newEncoder(inference.KindChat, "id", "m", 1)
	out := a.appendWhole(nil, e, "stop", []byte(`{"prompt_tokens":1}`), []byte(`{}`))
	var got struct {
		Choices []struct {
			Index   int `json:"index"`
			Message struct {
				Role             string  `json:"role"`
				Content          *string `json:"content"`
				ReasoningContent string  `json:"reasoning_content"`
				ToolCalls        []struct {
					ID       string `json:"id"`
					Type     string `json:"type"`
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
				FunctionCall struct{ Name, Arguments string } `json:"function_call"`
			} `json:"message"`
			Logprobs     map[string][]json.RawMessage `json:"logprobs"`
			FinishReason string                       `json:"finish_reason"`
			MatchedStop  int                          `json:"matched_stop"`
		} `json:"choices"`
		SystemFingerprint string          `json:"system_fingerprint"`
		Timings           json.RawMessage `json:"timings"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	c0, c1 := got.Choices[0], got.Choices[1]
	if len(got.Choices) != 2 || c0.Index != 0 || c1.Index != 1 {
		t.Fatalf("choices %s", out)
	}
	if m := c0.Message; m.Role != "assistant" || m.Content != nil || m.ReasoningContent != "hm" || len(m.ToolCalls) != 1 ||
		m.ToolCalls[0].ID != "call_1" || m.ToolCalls[0].Type != "function" || m.ToolCalls[0].Function.Name != "get_weather" ||
		m.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` || m.FunctionCall.Name != "f" || m.FunctionCall.Arguments != "{}" {
		t.Errorf("first message %s", out)
	}
	if c0.FinishReason != "tool_calls" || c1.FinishReason != "stop" || c1.MatchedStop != 2 || len(c1.Logprobs["content"]) != 1 ||
		c1.Message.Content == nil || *c1.Message.Content != "b" {
		t.Errorf("choices %s", out)
	}
	if got.SystemFingerprint != "fp" || string(got.Timings) != `{"n":1}` {
		t.Errorf("answer fields %s", out)
	}
}

// FuzzEvent: whatever an event holds, what reaches the app is one line of
// one JSON object or an error, and a whole answer built from it is JSON.
func FuzzEvent(f *testing.F) {
	for _, s := range eventSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, ev []byte) {
		for _, kind := range []inference.Kind{inference.KindChat, inference.KindCompletion} {
			e := newEncoder(kind, "id", "m", 1)
			out, err := e.appendEvent(nil, ev)
			if err == nil {
				line, ok := bytes.CutPrefix(out, []byte("data: "))
				line, ok2 := bytes.CutSuffix(line, []byte("\n\n"))
				if !ok || !ok2 || bytes.ContainsAny(line, "\r\n") || !json.Valid(line) {
					t.Fatalf("event %q written as %q", ev, out)
				}
				if chunk := e.appendChunk(nil, []byte("x"), nil); !json.Valid(bytes.TrimSuffix(bytes.TrimPrefix(chunk, []byte("data: ")), []byte("\n\n"))) {
					t.Fatalf("a text chunk after %q is %q", ev, chunk)
				}
			}
			a := &accumulator{kind: kind}
			if a.addEvent(ev) != nil {
				continue
			}
			a.addText([]byte("y"), []byte("stop"))
			if whole := a.appendWhole(nil, e, "stop", []byte(`{}`), []byte(`{}`)); !json.Valid(whole) {
				t.Fatalf("event %q makes the whole answer %q", ev, whole)
			}
		}
		if out, err := embeddingAnswer(ev, "m", usage{PromptTokens: 1}, []byte(`{}`)); err == nil && !json.Valid(out) {
			t.Fatalf("embeddings %q answered as %q", ev, out)
		}
	})
}
