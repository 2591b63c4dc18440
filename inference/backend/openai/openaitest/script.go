package openaitest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The models the engine serves; each name picks a scenario.
const (
	// ModelPlain answers PlainText in several deltas.
	ModelPlain = "plain"
	// ModelTools calls get_weather {"city":"Paris"}; once the request
	// holds a tool result it answers ToolAnswerText instead.
	ModelTools = "tools"
	// ModelToolsParallel calls get_weather {"city":"Paris"} and
	// get_time {"tz":"Europe/Paris"}; after a tool result, as ModelTools.
	ModelToolsParallel = "tools-parallel"
	// ModelReasoning reasons, then answers; usage counts reasoning tokens.
	ModelReasoning = "reasoning"
	// ModelLogprobs answers text whose tokens carry logprobs when asked.
	ModelLogprobs = "logprobs"
	// ModelRefusal refuses in refusal pieces, with no content.
	ModelRefusal = "refusal"
	// ModelCached answers PlainText; usage reports 12 prompt tokens, 8 cached.
	ModelCached = "cached"
	// ModelEmbed is the embedding model, and the only one /embeddings serves.
	ModelEmbed = "embed"
)

// Texts the scenarios answer with for choice 0; choice i > 0 appends
// " (i+1)" to its content or refusal.
const (
	PlainText      = "Hello from the fixture."
	ToolAnswerText = "It is sunny in Paris."
	ReasoningText  = "The user greets me, so I greet back."
	AnswerText     = "Hello! How can I help?"
	LogprobsText   = "The sky is blue."
	RefusalText    = "I'm sorry, but I can't help with that."
)

// Models returns the names of every model the engine serves, without the
// ":latest" tag Ollama adds.
func Models() []string {
	return []string{ModelPlain, ModelTools, ModelToolsParallel, ModelReasoning,
		ModelLogprobs, ModelRefusal, ModelCached, ModelEmbed}
}

// known reports whether model is served.
func known(model string) bool { return slices.Contains(Models(), model) }

// scenario is what a model says, as pieces (tokens).
type scenario struct {
	reasoning    []string
	content      []string
	refusal      []string
	calls        []scriptedCall
	promptTokens int // fixed prompt size; 0 counts the request
	cachedTokens int
}

// scriptedCall is a tool call whose arguments arrive in pieces.
type scriptedCall struct {
	name string
	args []string
}

var (
	weatherCall = scriptedCall{"get_weather", []string{`{"city":`, `"Paris"`, `}`}}
	timeCall    = scriptedCall{"get_time", []string{`{"tz":`, `"Europe/`, `Paris"}`}}
)

// scenarioFor returns model's scenario; toolResult says whether the
// request already holds a tool's answer.
func scenarioFor(model string, toolResult bool) scenario {
	switch model {
	case ModelTools, ModelToolsParallel:
		if toolResult {
			return scenario{content: pieces(ToolAnswerText)}
		}
		if model == ModelTools {
			return scenario{calls: []scriptedCall{weatherCall}}
		}
		return scenario{calls: []scriptedCall{weatherCall, timeCall}}
	case ModelReasoning:
		return scenario{reasoning: pieces(ReasoningText), content: pieces(AnswerText)}
	case ModelLogprobs:
		return scenario{content: pieces(LogprobsText)}
	case ModelRefusal:
		return scenario{refusal: pieces(RefusalText)}
	case ModelCached:
		return scenario{content: pieces(PlainText), promptTokens: 12, cachedTokens: 8}
	default:
		return scenario{content: pieces(PlainText)}
	}
}

// pieces splits text into word-sized tokens: a space or a punctuation
// mark starts a new one ("Hello", " from", …, ".").
func pieces(text string) []string {
	var out []string
	start := 0
	for i, r := range text {
		if i > start && strings.ContainsRune(" .,!?", r) {
			out = append(out, text[start:i])
			start = i
		}
	}
	return append(out, text[start:])
}

// textOnly is the scenario as a text completion: its content, or the plain
// text when it has none.
func (s scenario) textOnly() scenario {
	t := scenario{content: s.content, promptTokens: s.promptTokens, cachedTokens: s.cachedTokens}
	if len(t.content) == 0 {
		t.content = pieces(PlainText)
	}
	return t
}

// stepKind is what a step of a choice carries.
type stepKind int

const (
	stepContent   stepKind = iota
	stepReasoning          // a piece of reasoning
	stepRefusal            // a piece of refusal
	stepToolHead           // a tool call's id and name
	stepToolArgs           // a piece of a tool call's arguments
)

// step is one piece of one choice.
type step struct {
	kind stepKind
	text string
	call int // the tool call, for stepToolHead and stepToolArgs
}

// toolCall is a whole tool call.
type toolCall struct{ id, name, args string }

// choiceScript is one choice's answer: its pieces in order and why it ends.
type choiceScript struct {
	index  int
	steps  []step
	calls  []toolCall
	finish string
}

// script is a whole answer.
type script struct {
	id      string
	object  string // "chat.completion", "text_completion", …; chunks add ".chunk" for chat
	model   string // the name echoed
	choices []choiceScript
	usage   usage
}

// usage is an answer's token counts.
type usage struct {
	prompt, completion, cached, reasoning int
}

// build scripts n choices of scenario s for dialect d.
func (s scenario) build(d Dialect, n, promptTokens int) ([]choiceScript, usage) {
	u := usage{prompt: promptTokens, cached: s.cachedTokens}
	if s.promptTokens > 0 {
		u.prompt = s.promptTokens
	}
	choices := make([]choiceScript, n)
	for i := range choices {
		c := choiceScript{index: i, finish: "stop"}
		suffix := func(pieces []string) []string {
			if i == 0 || len(pieces) == 0 {
				return pieces
			}
			return append(slices.Clip(pieces), fmt.Sprintf(" (%d)", i+1))
		}
		for _, p := range s.reasoning {
			c.steps = append(c.steps, step{kind: stepReasoning, text: p})
		}
		for _, p := range suffix(s.content) {
			c.steps = append(c.steps, step{kind: stepContent, text: p})
		}
		for _, p := range suffix(s.refusal) {
			c.steps = append(c.steps, step{kind: stepRefusal, text: p})
		}
		for k, call := range s.calls {
			c.calls = append(c.calls, toolCall{id: toolCallID(d, i, k), name: call.name, args: strings.Join(call.args, "")})
			c.steps = append(c.steps, step{kind: stepToolHead, call: k})
			for _, a := range call.args {
				c.steps = append(c.steps, step{kind: stepToolArgs, text: a, call: k})
			}
			c.finish = "tool_calls"
		}
		for _, st := range c.steps {
			switch st.kind {
			case stepToolHead:
			case stepReasoning:
				u.reasoning++
				u.completion++
			default:
				u.completion++
			}
		}
		choices[i] = c
	}
	return choices, u
}

// toolCallID is a deterministic tool call id in the dialect's style.
func toolCallID(d Dialect, choice, call int) string {
	h := fmt.Sprintf("%x", sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", d, choice, call)))
	prefix, size := map[Dialect]string{VLLM: "chatcmpl-tool-", SGLang: "call_", Ollama: "call_"}[d],
		map[Dialect]int{SGLang: 24, Ollama: 8}[d]
	if size == 0 {
		size = 32
	}
	return prefix + h[:size]
}

// object renders the usage in dialect d's shape.
func (u usage) object(d Dialect) object {
	o := object{{"prompt_tokens", u.prompt}, {"completion_tokens", u.completion}, {"total_tokens", u.prompt + u.completion}}
	if u.cached > 0 {
		o = append(o, field{"prompt_tokens_details", object{{"cached_tokens", u.cached}}})
	}
	if u.reasoning > 0 {
		o = append(o, field{"completion_tokens_details", object{{"reasoning_tokens", u.reasoning}}})
		if d == SGLang {
			o = append(o, field{"reasoning_tokens", u.reasoning})
		}
	}
	return o
}

// timings is llama.cpp's timing report for u.
func (u usage) timings() object {
	pms, cms := 0.25*float64(u.prompt), 12.5*float64(u.completion)
	return object{
		{"prompt_n", u.prompt}, {"prompt_ms", pms}, {"prompt_per_token_ms", 0.25}, {"prompt_per_second", 4000.0},
		{"predicted_n", u.completion}, {"predicted_ms", cms}, {"predicted_per_token_ms", 12.5}, {"predicted_per_second", 80.0},
	}
}

// countWords roughly counts the tokens of a text: one per word, at least
// one.
func countWords(s string) int { return max(1, len(strings.Fields(s))) }

// promptTokens roughly counts the tokens of a chat request's messages (one
// per word of their text) and reports whether any is a tool's result.
func promptTokens(msgs []message) (n int, toolResult bool) {
	var text strings.Builder
	for _, m := range msgs {
		toolResult = toolResult || m.Role == "tool"
		var parts []struct{ Text string }
		if json.Unmarshal(m.Content, &parts) != nil {
			parts = []struct{ Text string }{{}}
			_ = json.Unmarshal(m.Content, &parts[0].Text) // a string, or no text
		}
		for _, p := range parts {
			text.WriteString(p.Text + " ")
		}
	}
	return countWords(text.String()), toolResult
}

// object is a JSON object that keeps its keys in the order written, and
// writes nil values as null, so answers read like the engine's own.
type object []field

// field is one key and value of an object.
type field struct {
	key string
	val any
}

// MarshalJSON writes the fields in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.key)
		if err != nil {
			return nil, fmt.Errorf("encoding key: %w", err)
		}
		v, err := json.Marshal(f.val)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", f.key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// set replaces the value of key, or appends it.
func (o object) set(key string, val any) object {
	for i := range o {
		if o[i].key == key {
			o[i].val = val
			return o
		}
	}
	return append(o, field{key, val})
}
