package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// readEvents reads every event of input and the error that ended it.
func readEvents(r io.Reader) ([]string, error) {
	sr := newSSEReader(r)
	var events []string
	for {
		data, err := sr.next()
		if err != nil {
			return events, err
		}
		events = append(events, string(data))
	}
}

func TestSSEReader(t *testing.T) {
	long := strings.Repeat("x", readBufferSize*3)
	tests := []struct {
		name    string
		input   string
		want    []string
		wantErr error
	}{
		{name: "empty", input: "", wantErr: io.EOF},
		{name: "one", input: "data: a\n\n", want: []string{"a"}, wantErr: io.EOF},
		{name: "no space", input: "data:a\n\n", want: []string{"a"}, wantErr: io.EOF},
		{name: "one space only", input: "data:  a \n\n", want: []string{" a "}, wantErr: io.EOF},
		{name: "CRLF", input: "data: a\r\n\r\ndata: b\r\n\r\n", want: []string{"a", "b"}, wantErr: io.EOF},
		{name: "multi-line", input: "data: a\ndata:\ndata: b\n\n", want: []string{"a\n\nb"}, wantErr: io.EOF},
		{name: "comments", input: ": hi\ndata: a\n:\n\n: bye\n\n", want: []string{"a"}, wantErr: io.EOF},
		{name: "other fields", input: "event: x\nid: 1\nretry: 5\nDATA: no\ndata : no\ndata: a\n\n", want: []string{"a"}, wantErr: io.EOF},
		{name: "field without colon", input: "data\n\ndata\ndata\n\n", want: []string{"", "\n"}, wantErr: io.EOF},
		{name: "no data no event", input: "event: x\n\n\n\n", wantErr: io.EOF},
		{name: "unfinished event dropped", input: "data: a\n\ndata: b\n", want: []string{"a"}, wantErr: io.EOF},
		{name: "unfinished line dropped", input: "data: a\n\ndata: b", want: []string{"a"}, wantErr: io.EOF},
		{name: "DONE", input: "data: a\n\ndata: [DONE]\n\ndata: b\n\n", want: []string{"a"}, wantErr: errDone},
		{name: "DONE no space", input: "data:[DONE]\n\n", wantErr: errDone},
		{name: "DONE without line end", input: "data: [DONE]", wantErr: errDone},
		{name: "DONE inside data", input: "data: a\ndata: [DONE]\n\n", want: []string{"a\n[DONE]"}, wantErr: io.EOF},
		{name: "byte order mark", input: "\xEF\xBB\xBFdata: a\n\n", want: []string{"a"}, wantErr: io.EOF},
		{name: "long line", input: "data: " + long + "\n\n", want: []string{long}, wantErr: io.EOF},
		{name: "line too long", input: "data: " + strings.Repeat("x", maxLineBytes) + "\n\n", wantErr: errLineTooLong},
		{
			name:    "event too large",
			input:   strings.Repeat("data: "+strings.Repeat("x", maxLineBytes/4)+"\n", 5) + "\n",
			wantErr: errEventTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time, too, so every line crosses reads.
			for _, r := range []io.Reader{strings.NewReader(tt.input), iotest.OneByteReader(strings.NewReader(tt.input))} {
				got, err := readEvents(r)
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("error %v, want %v", err, tt.wantErr)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("events %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestSSEReaderReadError(t *testing.T) {
	broken := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(broken))
	got, err := readEvents(r)
	if !errors.Is(err, broken) || !slices.Equal(got, []string{"a"}) {
		t.Errorf("events %q, error %v; want [a], %v", got, err, broken)
	}
}

// TestStreamPending checks that a chunk is marked Pending exactly when more
// of the stream is already read.
func TestStreamPending(t *testing.T) {
	input := chatEvent("a", "") + chatEvent("b", "") + chatEvent("", "stop") + doneEvent
	s := &stream{kind: inference.KindChat, sse: newSSEReader(strings.NewReader(input))}
	var chunks []inference.Chunk
	err := s.run(context.Background(), func(c inference.Chunk) error {
		chunks = append(chunks, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []inference.Chunk{{Text: "a", Pending: true}, {Text: "b", Pending: true}, {FinishReason: "stop", Pending: true}}
	if !reflect.DeepEqual(chunks, want) {
		t.Errorf("chunks %+v, want %+v", chunks, want)
	}

	s = &stream{kind: inference.KindChat, sse: newSSEReader(strings.NewReader(chatEvent("a", "stop")))}
	chunks = nil
	if err := s.run(context.Background(), func(c inference.Chunk) error {
		chunks = append(chunks, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []inference.Chunk{{Text: "a", FinishReason: "stop"}}; !reflect.DeepEqual(chunks, want) {
		t.Errorf("chunks %+v, want %+v", chunks, want)
	}
}

func TestStreamUsage(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  inference.Usage
	}{
		{
			name:  "reported",
			input: chatEvent("a", "stop") + usageEvent(10, 1, 3) + doneEvent,
			want:  inference.Usage{Tokens: payments.Tokens{Prompt: 10, Cached: 3, Completion: 1}},
		},
		{
			name:  "last report counts",
			input: chatEvent("a", "") + usageEvent(10, 1, 0) + chatEvent("b", "stop") + usageEvent(10, 2, 0) + doneEvent,
			want:  inference.Usage{Tokens: payments.Tokens{Prompt: 10, Completion: 2}},
		},
		{
			name:  "without details",
			input: chatEvent("a", "stop") + `data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1}}` + "\n\n",
			want:  inference.Usage{Tokens: payments.Tokens{Prompt: 7, Completion: 1}},
		},
		{
			name:  "null usage is none",
			input: `data: {"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}],"usage":null}` + "\n\n" + doneEvent,
			want:  inference.Usage{Tokens: payments.Tokens{Prompt: chatPromptEstimate, Completion: 1}, Counted: true},
		},
		{
			name:  "counted",
			input: chatEvent("a", "") + chatEvent("", "") + chatEvent("b", "") + chatEvent("c", "stop") + doneEvent,
			want:  inference.Usage{Tokens: payments.Tokens{Prompt: chatPromptEstimate, Completion: 3}, Counted: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &stream{kind: inference.KindChat, sse: newSSEReader(strings.NewReader(tt.input))}
			if err := s.run(context.Background(), func(inference.Chunk) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if got := s.result([]byte(chatBody)).Usage; got != tt.want {
				t.Errorf("usage %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEstimatePromptTokens(t *testing.T) {
	tests := []struct {
		body string
		want int64
	}{
		{body: `{"messages":[{"role":"user","content":"abcd"}]}`, want: 1},
		{body: `{"messages":[{"role":"user","content":"abcde"}]}`, want: 2},
		{body: `{"messages":[{"content":"ab"},{"content":[{"type":"text","text":"cd"},{"type":"image_url","image_url":{}}]},{"content":null}]}`, want: 1},
		{body: `{"prompt":"abcdefghi"}`, want: 3},
		{body: `{"prompt":["abcd","efgh"]}`, want: 2},
		{body: `{"prompt":[1,2,3]}`, want: 3},
		{body: `{"prompt":[[1,2],[3]]}`, want: 3},
		{body: `{"prompt":""}`, want: 1},
		{body: `{}`, want: 1},
		{body: `not json`, want: 1},
		{body: `{"messages":"oops","prompt":{"a":1}}`, want: 1},
	}
	for _, tt := range tests {
		if got := estimatePromptTokens([]byte(tt.body)); got != tt.want {
			t.Errorf("estimatePromptTokens(%s) = %d, want %d", tt.body, got, tt.want)
		}
	}
}

// FuzzSSE feeds arbitrary bytes as an engine's answer to the event stream
// reader and to the chunk decoder on top of it.
func FuzzSSE(f *testing.F) {
	f.Add([]byte(chatEvent("Hel", "") + chatEvent("lo", "stop") + usageEvent(3, 2, 1) + doneEvent))
	f.Add([]byte(strings.ReplaceAll(textEvent("a", "length")+doneEvent, "\n", "\r\n")))
	f.Add([]byte(": ping\nevent: x\nid: 1\ndata:{\"choices\":\ndata: []}\n\ndata: [DONE]"))
	f.Add([]byte("\xEF\xBB\xBFdata\n\ndata: {\"error\":{\"message\":\"x\",\"code\":503}}\n\n"))
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":null},\"finish_reason\":\"" + strings.Repeat("s", 100) + "\"}]}\n\n"))
	f.Add([]byte("data: \r\r\n\n\n:"))
	f.Fuzz(func(t *testing.T, input []byte) {
		events, err := readEvents(bytes.NewReader(input))
		if err == nil {
			t.Fatal("reader ended without an error")
		}
		if len(events) > len(input)/2 {
			t.Fatalf("%d events from %d bytes", len(events), len(input))
		}
		for _, ev := range events {
			if len(ev) > maxEventBytes {
				t.Fatalf("event of %d bytes", len(ev))
			}
		}

		for _, kind := range []inference.Kind{inference.KindChat, inference.KindCompletion} {
			s := &stream{kind: kind, sse: newSSEReader(bytes.NewReader(input))}
			chunks := 0
			err := s.run(context.Background(), func(c inference.Chunk) error {
				chunks++
				if c.Text == "" && c.FinishReason == "" && c.Event == nil {
					t.Fatal("emitted an empty chunk")
				}
				if c.Event != nil && (c.Text != "" || c.FinishReason != "" || len(c.Event) > inference.MaxEventBytes || !json.Valid(c.Event)) {
					t.Fatalf("event chunk %+v", c)
				}
				if len(c.FinishReason) > maxFinishReason {
					t.Fatalf("finish reason of %d bytes", len(c.FinishReason))
				}
				return nil
			})
			if chunks > len(events) {
				t.Fatalf("%d chunks from %d events", chunks, len(events))
			}
			if err != nil {
				var e *inference.Error
				if !errors.As(err, &e) {
					t.Fatalf("error %v is not an *inference.Error", err)
				}
				continue
			}
			res := s.result(input)
			if u := res.Usage; u.Prompt < 0 || u.Completion < 0 || u.Cached < 0 ||
				(u.Counted && (u.Prompt < 1 || u.Completion > int64(chunks))) {
				t.Fatalf("usage %+v after %d chunks", u, chunks)
			}
		}
	})
}
