// Package sim is the built-in simulated engine: deterministic text at a
// configured time to first token and tokens per second, for local
// networks, tests and benchmarks. Its models are always labelled simulated.
//
// Two shapes of output:
//   - text: one word per token, chosen from the request so the same
//     request always gets the same answer, up to max_tokens (default 16),
//     for each of its n choices (the first as text chunks, the others as
//     engine events, as an engine's would travel);
//   - benchmark: exactly Chunks chunks of ChunkBytes bytes each, whatever
//     the request asks (Telegram Cocoon's harness shape is 50 x 128).
package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Config shapes the simulated engine.
type Config struct {
	Models       []string      `toml:"models"`         // model IDs to serve
	TTFT         time.Duration `toml:"ttft"`           // delay before the first chunk
	TokensPerSec float64       `toml:"tokens_per_sec"` // pace after the first chunk; 0 means as fast as possible
	MaxTokens    int           `toml:"max_tokens"`     // default answer length in tokens when the request names none
	Chunks       int           `toml:"chunks"`         // benchmark shape: emit exactly this many chunks...
	ChunkBytes   int           `toml:"chunk_bytes"`    // ...of this many bytes each
}

// DefaultConfig serves one model, "sim-small", instantly.
func DefaultConfig() Config {
	return Config{Models: []string{"sim-small"}, MaxTokens: 16}
}

// Validate checks the shape.
func (c Config) Validate() error {
	if len(c.Models) == 0 {
		return fmt.Errorf("sim.models: at least one model is needed")
	}
	for _, m := range c.Models {
		if m == "" || len(m) > 256 {
			return fmt.Errorf("sim.models: model ID %q must be 1 to 256 bytes", m)
		}
	}
	if c.TTFT < 0 || c.TokensPerSec < 0 || c.MaxTokens < 0 || c.Chunks < 0 || c.ChunkBytes < 0 {
		return fmt.Errorf("sim: ttft, tokens_per_sec, max_tokens, chunks and chunk_bytes must not be negative")
	}
	if (c.Chunks > 0) != (c.ChunkBytes > 0) {
		return fmt.Errorf("sim: chunks and chunk_bytes go together")
	}
	if c.ChunkBytes > inference.MaxChunkFrame/2 {
		return fmt.Errorf("sim.chunk_bytes: %d is over the limit %d", c.ChunkBytes, inference.MaxChunkFrame/2)
	}
	return nil
}

// Backend is the simulated engine.
type Backend struct {
	cfg    Config
	models map[string]bool
	chunk  string // the benchmark chunk

	active atomic.Int64 // requests being generated, for tests of cancellation
}

// New makes a simulated engine.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxTokens == 0 {
		cfg.MaxTokens = 16
	}
	b := &Backend{cfg: cfg, models: make(map[string]bool)}
	for _, m := range cfg.Models {
		b.models[m] = true
	}
	if cfg.Chunks > 0 {
		b.chunk = ChunkText(cfg.ChunkBytes)
	}
	return b, nil
}

// Active is the number of requests being generated now.
func (b *Backend) Active() int64 { return b.active.Load() }

// Models lists the configured models, labelled simulated.
func (b *Backend) Models(context.Context) ([]inference.Model, error) {
	out := make([]inference.Model, 0, len(b.cfg.Models))
	for _, m := range b.cfg.Models {
		out = append(out, inference.Model{ID: m, Simulated: true})
	}
	return out, nil
}

// Generate streams the simulated answer.
func (b *Backend) Generate(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
	if !b.models[req.Model] {
		return inference.Result{}, inference.Errorf(inference.CodeUnknownModel, "model %q is not served here", req.Model)
	}
	b.active.Add(1)
	defer b.active.Add(-1)

	var (
		n       int
		choices = 1
		prompt  int64
		word    func(choice, i int) string
	)
	if b.cfg.Chunks > 0 {
		n = b.cfg.Chunks
		prompt = estimateTokens(len(req.Body))
		word = func(int, int) string { return b.chunk }
	} else {
		p, err := parse(req)
		if err != nil {
			return inference.Result{}, err
		}
		n = b.cfg.MaxTokens
		if p.maxTokens > 0 {
			n = p.maxTokens
		}
		prompt = estimateTokens(p.promptBytes)
		choices = p.n
		s := p.seed
		word = func(choice, i int) string {
			w := vocabulary[(s+uint64(choice)*0xbf58476d1ce4e5b9+uint64(i)*0x9e3779b97f4a7c15)>>40%uint64(len(vocabulary))]
			if i == 0 {
				return strings.ToUpper(w[:1]) + w[1:]
			}
			return " " + w
		}
	}

	var gap time.Duration
	if b.cfg.TokensPerSec > 0 {
		gap = time.Duration(float64(time.Second) / b.cfg.TokensPerSec)
	}
	var timer *time.Timer // only a paced answer needs one
	pause := func(d time.Duration) error {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		return wait(ctx, timer)
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	if b.cfg.TTFT > 0 {
		if err := pause(b.cfg.TTFT); err != nil {
			return inference.Result{}, err
		}
	}
	for i := range n {
		if i > 0 && gap > 0 {
			if err := pause(gap); err != nil {
				return inference.Result{}, err
			}
		}
		if err := ctx.Err(); err != nil {
			return inference.Result{}, err
		}
		// Unpaced, the next chunk (or, after the last, the end of the
		// answer) follows at once: the receiver need not flush yet.
		c := inference.Chunk{Text: word(0, i), Pending: gap == 0 || choices > 1}
		if i == n-1 {
			c.FinishReason = "length"
		}
		if err := emit(c); err != nil {
			return inference.Result{}, err
		}
		for k := 1; k < choices; k++ {
			ev := choiceEvent(req.Kind, k, word(k, i), i == n-1)
			if err := emit(inference.Chunk{Event: ev, Pending: gap == 0 || k < choices-1}); err != nil {
				return inference.Result{}, err
			}
		}
	}
	return inference.Result{
		Usage:        inference.Usage{Tokens: payments.Tokens{Prompt: prompt, Completion: int64(n * choices)}},
		FinishReason: "length",
	}, nil
}

func wait(ctx context.Context, t *time.Timer) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// choiceEvent is an engine event carrying one word of choice k.
func choiceEvent(kind inference.Kind, k int, word string, last bool) []byte {
	type delta struct {
		Content string `json:"content"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Delta        *delta  `json:"delta,omitempty"`
		Text         *string `json:"text,omitempty"`
		FinishReason *string `json:"finish_reason"`
	}
	c := choice{Index: k}
	if kind == inference.KindCompletion {
		c.Text = &word
	} else {
		c.Delta = &delta{Content: word}
	}
	if last {
		finish := "length"
		c.FinishReason = &finish
	}
	b, _ := json.Marshal(struct {
		Choices []choice `json:"choices"`
	}{[]choice{c}})
	return b
}

type parsed struct {
	n           int // choices, 1 to 128
	maxTokens   int
	promptBytes int
	seed        uint64 // a hash of the prompt: the same prompt gets the same answer
}

// parse reads what the simulation needs from the OpenAI body.
func parse(req *inference.Request) (parsed, error) {
	var body struct {
		N                   int             `json:"n"`
		MaxTokens           int             `json:"max_tokens"`
		MaxCompletionTokens int             `json:"max_completion_tokens"`
		Prompt              json.RawMessage `json:"prompt"`
		Messages            []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(req.Body, &body); err != nil {
		return parsed{}, inference.Errorf(inference.CodeBadRequest, "decoding request: %v", err)
	}
	p := parsed{n: min(max(body.N, 1), 128), maxTokens: body.MaxTokens, promptBytes: len(body.Prompt)}
	if body.MaxCompletionTokens > 0 {
		p.maxTokens = body.MaxCompletionTokens
	}
	h := fnv.New64a()
	h.Write(body.Prompt)
	for _, m := range body.Messages {
		p.promptBytes += len(m.Content)
		h.Write(m.Content)
	}
	p.seed = h.Sum64()
	if p.maxTokens > 4096 {
		p.maxTokens = 4096
	}
	return p, nil
}

// estimateTokens is the usual four bytes a token, at least one.
func estimateTokens(bytes int) int64 {
	return max(1, int64(bytes+3)/4)
}

// ChunkText is the n bytes of text every chunk of the benchmark shape
// carries; benchmarks use it to send the same bytes from a mock engine.
func ChunkText(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz "
	var sb strings.Builder
	sb.Grow(n)
	for i := range n {
		sb.WriteByte(alphabet[i%len(alphabet)])
	}
	return sb.String()
}

var vocabulary = []string{
	"cocoon", "mesh", "worker", "proxy", "client", "token", "stream", "peer",
	"attested", "enclave", "gossip", "offer", "price", "channel", "ledger", "quote",
	"silk", "thread", "weave", "moth", "lantern", "harbor", "signal", "relay",
	"quiet", "bright", "steady", "swift", "gentle", "honest", "patient", "careful",
}
