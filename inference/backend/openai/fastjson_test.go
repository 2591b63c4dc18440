package openai

import (
	"encoding/json"
	"reflect"
	"testing"
)

var fastSeeds = []string{
	`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}`,
	`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
	`{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":3}}}`,
	`{"choices":[{"text":" once","index":0,"logprobs":null,"finish_reason":null}],"system_fingerprint":"fp"}`,
	`{"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":"\u00e9\n\"q\""}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"caf\xc3\xa9 \xff"}}]}`,
	`{"Choices":[{"index":0,"delta":{"content":"case"}}]}`,
	`{"choices":[{"index":0.0,"delta":{"content":"x"}}]}`,
	`{"error":{"message":"boom","code":500}}`,
	`{"choices":[{"index":0,"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}`,
	`{"usage":{"prompt_tokens":1e3}}`,
	`{"x":[1,-2.5e-3,true,false,null,{"y":"z"}],"choices":null}`,
	`{"choices":[{"index":0,"delta":{"content":"a"}}]} trailing`,
	`{"choices":[{"index":0,"delta":{"content":"a"}}`,
	`null`,
	`[]`,
}

func TestDecodeFastAgrees(t *testing.T) {
	for _, s := range fastSeeds {
		checkFast(t, []byte(s))
	}
	// The common shapes must take the fast path, and those with nothing
	// but text are plain.
	for i, s := range fastSeeds[:5] {
		var ev streamEvent
		ok, plain := decodeFast([]byte(s), &ev)
		if !ok {
			t.Errorf("fell back on a common event: %s", s)
		}
		if !plain {
			t.Errorf("seed %d is not plain: %s", i, s)
		}
	}
	// Anything a text chunk cannot carry makes an event rich.
	for _, s := range []string{
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}`,
		`{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]}}]}`,
		`{"choices":[{"index":0,"delta":{"role":"tool","content":"a"}}]}`,
		`{"choices":[{"index":0,"delta":{"content":"a"},"matched_stop":2}]}`,
		`{"choices":[{"index":0,"delta":{"content":"a"}}],"timings":{"predicted_n":3}}`,
	} {
		var ev streamEvent
		if ok, plain := decodeFast([]byte(s), &ev); !ok || plain {
			t.Errorf("decodeFast = %v, plain %v; want a rich event: %s", ok, plain, s)
		}
		checkFast(t, []byte(s))
	}
}

func FuzzDecodeFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkFast(t, data) })
}

// checkFast: whenever decodeFast accepts, json.Unmarshal accepts and gives
// the same event.
func checkFast(t *testing.T, data []byte) {
	t.Helper()
	var fast streamEvent
	if ok, _ := decodeFast(data, &fast); !ok {
		return
	}
	var slow streamEvent
	if err := json.Unmarshal(data, &slow); err != nil {
		t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", data, err)
	}
	if len(fast.Choices) == 0 && len(slow.Choices) == 0 {
		fast.Choices, slow.Choices = nil, nil
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\nfast %+v\nslow %+v", data, fast, slow)
	}
}

func TestDecodeFastFoldedKeys(t *testing.T) {
	// encoding/json matches "choiceſ" (long s) and "K"-with-Kelvin keys to
	// the field names; the fast path must fall back, not ignore them.
	for _, s := range []string{
		`{"choiceſ":[{"index":0,"delta":{"content":"long s"}}]}`,
		`{"usage":{"prompt_to\u212aens":3}}`,
		`{"choices":[{"index":0,"delta":{"contenT":"x"}}]}`,
	} {
		checkFast(t, []byte(s))
	}
}
