package inference

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Kind says which OpenAI endpoint a request came through.
type Kind uint8

// The kinds of request. The zero value is invalid.
const (
	KindChat       Kind = 1 // POST /v1/chat/completions
	KindCompletion Kind = 2 // POST /v1/completions
	KindEmbedding  Kind = 3 // POST /v1/embeddings
)

// Kinds are the defined kinds, in order.
var Kinds = []Kind{KindChat, KindCompletion, KindEmbedding}

func (k Kind) String() string {
	switch k {
	case KindChat:
		return "chat"
	case KindCompletion:
		return "completion"
	case KindEmbedding:
		return "embedding"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Endpoint is the OpenAI API path of k's requests.
func (k Kind) Endpoint() string {
	switch k {
	case KindChat:
		return "/v1/chat/completions"
	case KindCompletion:
		return "/v1/completions"
	case KindEmbedding:
		return "/v1/embeddings"
	}
	return ""
}

// ParseKind is the inverse of String.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown endpoint %q (want chat, completion or embedding)", s)
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k >= KindChat && k <= KindEmbedding }

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
	// MaxTokens is the most completion tokens the answer may take, over
	// all its choices (the body's max_tokens or max_completion_tokens
	// times n; CompletionCap); 0 means the body sets no cap. Proxies
	// reserve payment by it, and a worker refuses a body that asks for
	// more than it says.
	MaxTokens int64
	// Sealed says Body is a sealed request (seal.AppendSealedRequest)
	// that only the candidate workers the client verified can open; the
	// fields above are then its routing header, bound by the seal, and
	// proxies forward them unchanged.
	Sealed bool
	Body   []byte
}

// Chunk is one piece of streamed output: a text chunk (Text and
// FinishReason), or an engine event passed through (Event).
//
// Text chunks are the fast path, for output that is nothing but the first
// choice's content. Anything else an engine streams (tool calls,
// reasoning, logprobs, refusals, choices past the first, fields the mesh
// does not know) travels as the engine's own event, which the client node
// passes to the app with only its id and model changed. For an embedding
// request, Text carries a piece of the engine's answer as it sent it.
type Chunk struct {
	Text         string // content delta
	FinishReason string // set on the last content chunk when the engine says why it stopped
	// Event is one event of the engine's stream, a JSON object of at most
	// MaxEventBytes, as the engine sent it; Text and FinishReason are
	// empty then.
	Event []byte
	// Pending is set by a producer that already holds more output (another
	// chunk, or the end of the answer), so the receiver may buffer this
	// chunk instead of flushing it at once. A producer that would have to
	// wait for its next chunk or its result leaves it false.
	Pending bool
}

// Usage counts tokens as the engine reported them, or as the worker counted
// them when the engine sent no usage (then Counted is true). Its JSON form
// names the counts as OpenAI does: prompt_tokens, completion_tokens,
// cached_tokens and reasoning_tokens (omitted when 0) and counted (omitted
// when false).
type Usage struct {
	payments.Tokens
	// Reasoning is how many of the completion tokens were reasoning, as
	// the engine reported it (completion_tokens_details.reasoning_tokens).
	Reasoning int64
	Counted   bool
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
	ReasoningTokens  int64 `json:"reasoning_tokens,omitempty"`
	Counted          bool  `json:"counted,omitempty"`
}

// MarshalJSON writes u with OpenAI's names for its counts.
func (u Usage) MarshalJSON() ([]byte, error) {
	return json.Marshal(usageJSON{PromptTokens: u.Prompt, CompletionTokens: u.Completion, CachedTokens: u.Cached, ReasoningTokens: u.Reasoning, Counted: u.Counted})
}

// UnmarshalJSON reads what MarshalJSON writes; absent keys leave their
// counts as they were.
func (u *Usage) UnmarshalJSON(b []byte) error {
	j := usageJSON{PromptTokens: u.Prompt, CompletionTokens: u.Completion, CachedTokens: u.Cached, ReasoningTokens: u.Reasoning, Counted: u.Counted}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*u = Usage{Tokens: payments.Tokens{Prompt: j.PromptTokens, Cached: j.CachedTokens, Completion: j.CompletionTokens},
		Reasoning: j.ReasoningTokens, Counted: j.Counted}
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
	// Endpoints are the kinds of request it is served for, by their
	// names (Kind.String); empty means chat and completion, what every
	// generative engine serves.
	Endpoints []string `json:"endpoints,omitempty"`
}

// UnionEndpoints is the kinds of request, by name and in Kinds order,
// that any of the announced endpoint lists serves (an empty list serves
// chat and completion).
func UnionEndpoints(announced ...[]string) []string {
	var out []string
	for _, k := range Kinds {
		for _, e := range announced {
			if ServesKind(e, k) {
				out = append(out, k.String())
				break
			}
		}
	}
	return out
}

// NotServed is the error for a request of kind k for model, whose workers
// serve it only for the kinds in served (UnionEndpoints of theirs): the
// request's fault, naming the model, not a shortage of workers.
func NotServed(model string, k Kind, served []string) *Error {
	return &Error{Code: CodeBadRequest, Param: "model",
		Message: fmt.Sprintf("the model %q is not served for %s requests (%s): its workers serve %s", model, k, k.Endpoint(), strings.Join(served, ", "))}
}

// Serves reports whether m is served for requests of kind k.
func (m Model) Serves(k Kind) bool { return ServesKind(m.Endpoints, k) }

// ServesKind reports whether a model announced with endpoints is served
// for requests of kind k; no endpoints means chat and completion.
func ServesKind(endpoints []string, k Kind) bool {
	if len(endpoints) == 0 {
		return k == KindChat || k == KindCompletion
	}
	for _, e := range endpoints {
		if e == k.String() {
			return true
		}
	}
	return false
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
