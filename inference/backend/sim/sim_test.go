package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/backend/sim"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newSim(t *testing.T, cfg sim.Config) *sim.Backend {
	t.Helper()
	b, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func chat(body string) *inference.Request {
	return &inference.Request{ID: "r", Kind: inference.KindChat, Model: "sim-small", Body: []byte(body)}
}

// generate runs Generate and collects the chunks.
func generate(t *testing.T, b *sim.Backend, req *inference.Request) ([]inference.Chunk, inference.Result) {
	t.Helper()
	var chunks []inference.Chunk
	res, err := b.Generate(context.Background(), req, func(c inference.Chunk) error {
		chunks = append(chunks, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return chunks, res
}

func text(chunks []inference.Chunk) string {
	var sb strings.Builder
	for _, c := range chunks {
		sb.WriteString(c.Text)
	}
	return sb.String()
}

func TestDeterministicText(t *testing.T) {
	b := newSim(t, sim.DefaultConfig())
	bodies := []string{
		`{"messages":[{"role":"user","content":"hello"}]}`,
		`{"messages":[{"role":"user","content":"goodbye"}]}`,
		`{"prompt":"once upon a time"}`,
		`{"prompt":"once upon a time","temperature":1}`,
	}
	seen := map[string]bool{}
	for _, body := range bodies {
		c1, _ := generate(t, b, chat(body))
		c2, _ := generate(t, newSim(t, sim.DefaultConfig()), chat(body))
		if text(c1) != text(c2) {
			t.Fatalf("same body, two answers:\n%q\n%q", text(c1), text(c2))
		}
		got := text(c1)
		if got == "" || !unicode.IsUpper(rune(got[0])) {
			t.Fatalf("answer %q does not start with a capital", got)
		}
		if words := strings.Fields(got); len(words) != 16 {
			t.Fatalf("answer of %d words, want the default 16: %q", len(words), got)
		}
		seen[got] = true
	}
	if len(seen) < 2 {
		t.Fatal("every body got the same answer")
	}

	// The answer follows the prompt, not the other parameters.
	a, _ := generate(t, b, chat(`{"messages":[{"role":"user","content":"hello"}]}`))
	c, _ := generate(t, b, chat(`{"model":"sim-small","temperature":0.5,"stream":true,"messages":[{"role":"user","content":"hello"}]}`))
	if text(a) != text(c) {
		t.Fatalf("same prompt, other parameters, two answers:\n%q\n%q", text(a), text(c))
	}
}

func TestMaxTokens(t *testing.T) {
	tests := []struct {
		name      string
		cfgMax    int
		body      string
		wantChunk int
	}{
		{"config default", 0, `{"prompt":"x"}`, 16},
		{"configured default", 5, `{"prompt":"x"}`, 5},
		{"max_tokens", 5, `{"prompt":"x","max_tokens":3}`, 3},
		{"one token", 5, `{"prompt":"x","max_tokens":1}`, 1},
		{"max_completion_tokens wins", 5, `{"prompt":"x","max_tokens":3,"max_completion_tokens":7}`, 7},
		{"zero means default", 5, `{"prompt":"x","max_tokens":0}`, 5},
		{"negative means default", 5, `{"prompt":"x","max_tokens":-4}`, 5},
		{"capped at 4096", 5, `{"prompt":"x","max_tokens":100000}`, 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sim.DefaultConfig()
			cfg.MaxTokens = tt.cfgMax
			chunks, res := generate(t, newSim(t, cfg), chat(tt.body))
			if len(chunks) != tt.wantChunk {
				t.Fatalf("%d chunks, want %d", len(chunks), tt.wantChunk)
			}
			if res.Usage.Completion != int64(tt.wantChunk) || res.Usage.Prompt < 1 {
				t.Fatalf("usage %+v", res.Usage)
			}
			if res.FinishReason != "length" {
				t.Fatalf("finish reason %q", res.FinishReason)
			}
			for i, c := range chunks {
				last := i == len(chunks)-1
				if (c.FinishReason != "") != last {
					t.Fatalf("chunk %d of %d has finish reason %q", i, len(chunks), c.FinishReason)
				}
				if !c.Pending {
					t.Fatalf("unpaced chunk %d of %d (last %v): Pending = false", i, len(chunks), last)
				}
			}
		})
	}
}

func TestBenchmarkShape(t *testing.T) {
	tests := []struct{ chunks, bytes int }{{1, 1}, {3, 7}, {50, 128}, {2, inference.MaxChunkFrame / 2}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%d", tt.chunks, tt.bytes), func(t *testing.T) {
			cfg := sim.DefaultConfig()
			cfg.Chunks, cfg.ChunkBytes = tt.chunks, tt.bytes
			// The benchmark shape ignores the body, even one that is not JSON.
			chunks, res := generate(t, newSim(t, cfg), chat(`not json, and long enough`))
			if len(chunks) != tt.chunks {
				t.Fatalf("%d chunks, want %d", len(chunks), tt.chunks)
			}
			for i, c := range chunks {
				last := i == len(chunks)-1
				if len(c.Text) != tt.bytes {
					t.Fatalf("chunk %d has %d bytes, want %d", i, len(c.Text), tt.bytes)
				}
				// Unpaced, more output (the next chunk or the end) follows
				// at once, so every chunk may wait in a buffer.
				if !c.Pending {
					t.Fatalf("chunk %d of %d (last %v): Pending = false, want true", i, len(chunks), last)
				}
			}
			if res.Usage.Completion != int64(tt.chunks) {
				t.Fatalf("usage %+v", res.Usage)
			}
		})
	}
}

func TestPacedChunksNotPending(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.TokensPerSec = 1e6 // paced, but quick
	cfg.MaxTokens = 4
	chunks, _ := generate(t, newSim(t, cfg), chat(`{"prompt":"x"}`))
	if len(chunks) != 4 {
		t.Fatalf("%d chunks", len(chunks))
	}
	for i, c := range chunks {
		if c.Pending {
			t.Fatalf("paced chunk %d is Pending: the producer waits before the next one", i)
		}
	}
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name         string
		cfg          func(*sim.Config)
		cancelAfterN int // cancel once this many chunks were emitted
	}{
		{"during TTFT", func(c *sim.Config) { c.TTFT = time.Hour }, 0},
		{"between paced tokens", func(c *sim.Config) { c.TokensPerSec = 0.001 }, 1},
		{"benchmark during TTFT", func(c *sim.Config) { c.TTFT = time.Hour; c.Chunks, c.ChunkBytes = 50, 128 }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sim.DefaultConfig()
			tt.cfg(&cfg)
			b := newSim(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			emitted := make(chan struct{}, 100)
			done := make(chan error, 1)
			go func() {
				_, err := b.Generate(ctx, chat(`{"prompt":"x"}`), func(inference.Chunk) error {
					emitted <- struct{}{}
					return nil
				})
				done <- err
			}()
			for range tt.cancelAfterN {
				p2ptest.WaitFor(t, emitted, "a chunk")
			}
			p2ptest.Eventually(t, "Generate to be active", func() bool { return b.Active() == 1 })
			cancel()
			if err := p2ptest.WaitFor(t, done, "Generate to stop after cancel"); !errors.Is(err, context.Canceled) {
				t.Fatalf("Generate returned %v, want context.Canceled", err)
			}
			if n := b.Active(); n != 0 {
				t.Fatalf("Active = %d after Generate returned", n)
			}
		})
	}
}

func TestEmitError(t *testing.T) {
	b := newSim(t, sim.DefaultConfig())
	stop := errors.New("client went away")
	n := 0
	_, err := b.Generate(context.Background(), chat(`{"prompt":"x"}`), func(inference.Chunk) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("got %v after %d chunks, want the emit error after 2", err, n)
	}
	if b.Active() != 0 {
		t.Fatalf("Active = %d", b.Active())
	}
}

func TestGenerateErrors(t *testing.T) {
	tests := []struct {
		name string
		req  *inference.Request
		want inference.Code
	}{
		{"unknown model", &inference.Request{Kind: inference.KindChat, Model: "gpt-4", Body: []byte(`{}`)}, inference.CodeUnknownModel},
		{"malformed body", chat(`{"messages":`), inference.CodeBadRequest},
		{"body of the wrong shape", chat(`{"max_tokens":"many"}`), inference.CodeBadRequest},
		{"empty body", chat(``), inference.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newSim(t, sim.DefaultConfig())
			called := false
			_, err := b.Generate(context.Background(), tt.req, func(inference.Chunk) error { called = true; return nil })
			var e *inference.Error
			if !errors.As(err, &e) || e.Code != tt.want {
				t.Fatalf("got %v, want *inference.Error with code %v", err, tt.want)
			}
			if called {
				t.Fatal("emitted output for a failed request")
			}
			if b.Active() != 0 {
				t.Fatalf("Active = %d", b.Active())
			}
		})
	}
}

func TestModels(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Models = []string{"sim-small", "sim-large"}
	ms, err := newSim(t, cfg).Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].ID != "sim-small" || ms[1].ID != "sim-large" {
		t.Fatalf("models %+v", ms)
	}
	for _, m := range ms {
		if !m.Simulated {
			t.Fatalf("model %q not labelled simulated", m.ID)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*sim.Config)
		want   string // "" means valid
	}{
		{"default", func(*sim.Config) {}, ""},
		{"benchmark", func(c *sim.Config) { c.Chunks, c.ChunkBytes = 50, 128 }, ""},
		{"no models", func(c *sim.Config) { c.Models = nil }, "sim.models"},
		{"empty model ID", func(c *sim.Config) { c.Models = []string{""} }, "sim.models"},
		{"model ID too long", func(c *sim.Config) { c.Models = []string{strings.Repeat("m", 257)} }, "sim.models"},
		{"negative TTFT", func(c *sim.Config) { c.TTFT = -1 }, "ttft"},
		{"negative pace", func(c *sim.Config) { c.TokensPerSec = -1 }, "tokens_per_sec"},
		{"negative max_tokens", func(c *sim.Config) { c.MaxTokens = -1 }, "max_tokens"},
		{"chunks without bytes", func(c *sim.Config) { c.Chunks = 3 }, "chunk_bytes"},
		{"bytes without chunks", func(c *sim.Config) { c.ChunkBytes = 3 }, "chunks"},
		{"chunk too big", func(c *sim.Config) { c.Chunks, c.ChunkBytes = 1, inference.MaxChunkFrame/2+1 }, "sim.chunk_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sim.DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			_, newErr := sim.New(cfg)
			if tt.want == "" {
				if err != nil || newErr != nil {
					t.Fatalf("got %v, %v; want valid", err, newErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
			if newErr == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

// TestChoices: n choices, the first as text chunks and the others as
// engine events with their index, each its own text, all billed.
func TestChoices(t *testing.T) {
	b := newSim(t, sim.Config{Models: []string{"sim-small"}})
	chunks, res := generate(t, b, chat(`{"n":3,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`))
	texts := make([]string, 3)
	finished := 0
	for _, c := range chunks {
		if c.Event == nil {
			texts[0] += c.Text
			continue
		}
		var ev struct {
			Choices []struct {
				Index        int `json:"index"`
				Delta        struct{ Content string }
				FinishReason *string `json:"finish_reason"`
			}
		}
		if err := json.Unmarshal(c.Event, &ev); err != nil || len(ev.Choices) != 1 || ev.Choices[0].Index < 1 || ev.Choices[0].Index > 2 {
			t.Fatalf("event %s", c.Event)
		}
		texts[ev.Choices[0].Index] += ev.Choices[0].Delta.Content
		if ev.Choices[0].FinishReason != nil {
			finished++
		}
	}
	if texts[0] == "" || texts[1] == "" || texts[2] == "" || texts[1] == texts[0] || texts[2] == texts[1] || finished != 2 {
		t.Errorf("choices %q, %d finished; want three different texts, each finished", texts, finished)
	}
	if res.Usage.Completion != 12 {
		t.Errorf("completion tokens %d, want 12 (4 for each of 3 choices)", res.Usage.Completion)
	}
}
