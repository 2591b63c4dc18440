package inference

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Kind says which OpenAI endpoint a request came through.
type Kind uint8

// The kinds of request. The zero value is invalid.
const (
	KindChat       Kind = 1 // POST /v1/chat/completions
	KindCompletion Kind = 2 // POST /v1/completions
)

func (k Kind) String() string {
	switch k {
	case KindChat:
		return "chat"
	case KindCompletion:
		return "completion"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k == KindChat || k == KindCompletion }

// Request is one inference request as it travels the mesh. Body is the
// OpenAI JSON body as the app sent it, already checked by the client node;
// workers hand it to their engine with streaming and usage forced on.
type Request struct {
	ID    string // assigned by the client node, for logs and receipts
	Kind  Kind
	Model string
	// MaxPrice is the most the client pays, in nanoTON per million
	// tokens, compared with a worker's prompt plus completion price for
	// Model; 0 means no limit. Proxies route by it and forward it only in a
	// sealed request's header, where the seal binds it.
	MaxPrice int64
	// MinTier is the weakest trust tier the client accepts for the worker
	// that serves the request (attest.TierDev, TierTEE or TierTEEGPU); 0
	// means any. Proxies route by it, and forward it as MaxPrice.
	MinTier attest.Tier
	// Sealed says Body is a sealed request (seal.AppendSealedRequest)
	// that only the candidate workers the client verified can open; the
	// fields above are then its routing header, bound by the seal, and
	// proxies forward them unchanged.
	Sealed bool
	Body   []byte
}

// Chunk is one piece of streamed output.
type Chunk struct {
	Text         string // content delta
	FinishReason string // set on the last content chunk when the engine says why it stopped
	// Pending is set by a producer that already holds more output (another
	// chunk, or the end of the answer), so the receiver may buffer this
	// chunk instead of flushing it at once. A producer that would have to
	// wait for its next chunk or its result leaves it false.
	Pending bool
}

// Usage counts tokens as the engine reported them, or as the worker counted
// them when the engine sent no usage (then Counted is true). Its JSON form
// names the counts as OpenAI does: prompt_tokens, completion_tokens,
// cached_tokens (omitted when 0) and counted (omitted when false).
type Usage struct {
	payments.Tokens
	Counted bool
}

// Total is prompt plus completion tokens.
func (u Usage) Total() int64 { return u.Prompt + u.Completion }

// Billed is what an answer is billed for, as its receipt carries it: the
// counts, with cached tokens capped at the prompt's (an engine may report
// more).
func (u Usage) Billed() payments.Tokens {
	t := u.Tokens
	t.Cached = min(t.Cached, t.Prompt)
	return t
}

// usageJSON is Usage's JSON form.
type usageJSON struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	CachedTokens     int64 `json:"cached_tokens,omitempty"`
	Counted          bool  `json:"counted,omitempty"`
}

// MarshalJSON writes u with OpenAI's names for its counts.
func (u Usage) MarshalJSON() ([]byte, error) {
	return json.Marshal(usageJSON{PromptTokens: u.Prompt, CompletionTokens: u.Completion, CachedTokens: u.Cached, Counted: u.Counted})
}

// UnmarshalJSON reads what MarshalJSON writes; absent keys leave their
// counts as they were.
func (u *Usage) UnmarshalJSON(b []byte) error {
	j := usageJSON{PromptTokens: u.Prompt, CompletionTokens: u.Completion, CachedTokens: u.Cached, Counted: u.Counted}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*u = Usage{Tokens: payments.Tokens{Prompt: j.PromptTokens, Cached: j.CachedTokens, Completion: j.CompletionTokens}, Counted: j.Counted}
	return nil
}

// Result is what a backend reports once its output is complete.
type Result struct {
	Usage        Usage
	FinishReason string
}

// Model is one model a worker serves.
type Model struct {
	ID        string `json:"id"`
	Simulated bool   `json:"simulated,omitempty"` // served by the built-in sim backend, not a real engine
	Workers   int    `json:"workers,omitempty"`   // set by proxies: how many workers serve it
}

// Backend is a model engine a worker serves through.
//
// Generate streams the output of req through emit, in order, and returns
// the usage once the output is complete. It stops promptly, returning
// ctx.Err(), when ctx is cancelled, and stops with emit's error when emit
// fails. Errors meant for the requester are *Error values; any other error
// is reported as CodeEngine.
type Backend interface {
	Models(ctx context.Context) ([]Model, error)
	Generate(ctx context.Context, req *Request, emit func(Chunk) error) (Result, error)
}
