package openaitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// maxN caps the n a request may ask for.
const maxN = 8

// maxTopLogprobs caps the top logprobs a chat request may ask for, and
// maxLegacyLogprobs those of a text completion.
const (
	maxTopLogprobs    = 20
	maxLegacyLogprobs = 5
)

// logprobsMode is how a request asked for logprobs.
type logprobsMode struct {
	on     bool
	top    int  // alternatives per token
	legacy bool // the /completions shape
}

// serveGenerate answers chat completions, or text completions when !chat.
func (e *Engine) serveGenerate(chat bool) func(http.ResponseWriter, *request) error {
	return func(w http.ResponseWriter, req *request) error {
		model, echo, err := e.resolve(req.Model)
		if err != nil {
			return err
		}
		if model == ModelEmbed {
			return badRequest("model %s does not support completions", req.Model)
		}
		n := 1
		if req.N != nil {
			if n = *req.N; n < 1 || n > maxN {
				return badRequest("n must be 1..%d", maxN)
			}
		}
		lp, err := logprobsWanted(req, chat)
		if err != nil {
			return err
		}
		s := &script{model: echo}
		var sc scenario
		var prompt int
		if chat {
			var toolResult bool
			prompt, toolResult = promptTokens(req.Messages)
			sc = scenarioFor(model, toolResult)
			s.id, s.object = e.newID("chatcmpl-"), "chat.completion"
		} else {
			if _, prompt, err = parseInputs(req.Prompt); err != nil {
				return badRequest("invalid prompt: %v", err)
			}
			sc = scenarioFor(model, false).textOnly()
			s.id, s.object = e.newID("cmpl-"), "text_completion"
		}
		s.choices, s.usage = sc.build(e.dialect, n, prompt)
		if req.Stream {
			e.stream(w, s, lp, req.includeUsage(), chat)
		} else {
			e.whole(w, s, lp, chat)
		}
		return nil
	}
}

// logprobsWanted reads how req asks for logprobs: "logprobs": true and
// "top_logprobs" for chat, "logprobs": N for text completions.
func logprobsWanted(req *request, chat bool) (logprobsMode, error) {
	lp := logprobsMode{legacy: !chat}
	if len(req.Logprobs) == 0 || string(req.Logprobs) == "null" {
		if req.TopLogprobs != nil && *req.TopLogprobs > 0 {
			return lp, badRequest("top_logprobs needs logprobs")
		}
		return lp, nil
	}
	if !chat {
		if err := json.Unmarshal(req.Logprobs, &lp.top); err != nil || lp.top < 0 || lp.top > maxLegacyLogprobs {
			return lp, badRequest("logprobs must be an integer 0..%d", maxLegacyLogprobs)
		}
		lp.on = true
		return lp, nil
	}
	if err := json.Unmarshal(req.Logprobs, &lp.on); err != nil {
		return lp, badRequest("logprobs must be a boolean")
	}
	if req.TopLogprobs != nil {
		if lp.top = *req.TopLogprobs; lp.top < 0 || lp.top > maxTopLogprobs || (lp.top > 0 && !lp.on) {
			return lp, badRequest("top_logprobs must be 0..%d and needs logprobs", maxTopLogprobs)
		}
	}
	return lp, nil
}

// newID returns a fresh response id in the dialect's style.
func (e *Engine) newID(prefix string) string {
	n := e.seq.Add(1)
	switch e.dialect {
	case Ollama:
		return fmt.Sprintf("%s%d", prefix, n)
	case SGLang:
		return fmt.Sprintf("%032x", n)
	default:
		return fmt.Sprintf("%s%032x", prefix, n)
	}
}

// part is one choice's share of one chunk, or of the whole answer: the
// field that carries its text (delta, message or text), its logprobs (nil
// for null) and its finish reason ("" while it runs).
type part struct {
	payload  field
	logprobs any
	finish   string
}

// choice renders one choice of a chunk or of the whole answer.
func (e *Engine) choice(index int, p part, lp logprobsMode) object {
	o := object{{"index", index}, p.payload}
	var finish any
	if p.finish != "" {
		finish = p.finish
	}
	switch e.dialect {
	case VLLM:
		o = append(o, field{"logprobs", p.logprobs}, field{"finish_reason", finish})
		if p.finish != "" {
			o = append(o, field{"stop_reason", nil})
		}
	case SGLang:
		var matched any
		if p.finish != "" {
			matched = 2 // the end-of-sequence token
		}
		o = append(o, field{"logprobs", p.logprobs}, field{"finish_reason", finish}, field{"matched_stop", matched})
	default:
		if lp.on {
			o = append(o, field{"logprobs", p.logprobs})
		}
		o = append(o, field{"finish_reason", finish})
	}
	return o
}

// envelope renders a chunk or whole answer around its choices.
// SGLang writes "usage":null where it has none to report.
func (e *Engine) envelope(s *script, kind string, choices []object, tail ...field) object {
	if choices == nil {
		choices = []object{}
	}
	o := object{{"id", s.id}, {"object", kind}, {"created", created}, {"model", s.model}}
	switch e.dialect {
	case LlamaCpp:
		o = append(o, field{"system_fingerprint", "b5000-abcdef"})
	case Ollama:
		o = append(o, field{"system_fingerprint", "fp_ollama"})
	}
	o = append(o, field{"choices", choices})
	o = append(o, tail...)
	if e.dialect == SGLang && len(tail) == 0 {
		o = append(o, field{"usage", nil})
	}
	return o
}

// stream answers s as server-sent events: each choice's parts, one choice
// per event, taking turns, then usage if asked.
func (e *Engine) stream(w http.ResponseWriter, s *script, lp logprobsMode, includeUsage, chat bool) {
	kind := s.object
	if chat {
		kind += ".chunk"
	}
	perChoice := make([][]part, len(s.choices))
	longest := 0
	for i, c := range s.choices {
		perChoice[i] = e.parts(c, lp, chat)
		longest = max(longest, len(perChoice[i]))
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	send := func(data []byte) {
		fmt.Fprintf(w, "data: %s\n\n", data)
		_ = rc.Flush() // a client that went away just stops reading
	}
	event := func(v object) {
		if b, err := json.Marshal(v); err == nil { // our objects always encode
			send(b)
		}
	}
	finished := 0
	for j := range longest {
		for i, parts := range perChoice {
			if j >= len(parts) {
				continue
			}
			p := parts[j]
			var tail []field
			if p.finish != "" {
				finished++
				if e.dialect == LlamaCpp {
					if includeUsage && finished == len(s.choices) {
						tail = append(tail, field{"usage", s.usage.object(e.dialect)})
					}
					tail = append(tail, field{"timings", s.usage.timings()})
				}
			}
			event(e.envelope(s, kind, []object{e.choice(i, p, lp)}, tail...))
		}
	}
	if includeUsage && e.dialect != LlamaCpp {
		event(e.envelope(s, kind, nil, field{"usage", s.usage.object(e.dialect)}))
	}
	send([]byte("[DONE]"))
}

// whole answers s as one JSON object.
func (e *Engine) whole(w http.ResponseWriter, s *script, lp logprobsMode, chat bool) {
	var choices []object
	for _, c := range s.choices {
		p := part{finish: c.finish, logprobs: e.logprobs(c, lp, -1)}
		if chat {
			p.payload = field{"message", e.message(c)}
		} else {
			p.payload = field{"text", joinSteps(c, stepContent)}
		}
		choices = append(choices, e.choice(c.index, p, lp))
	}
	tail := []field{{"usage", s.usage.object(e.dialect)}}
	switch e.dialect {
	case VLLM:
		tail = append(tail, field{"prompt_logprobs", nil})
	case LlamaCpp:
		tail = append(tail, field{"timings", s.usage.timings()})
	}
	writeJSON(w, http.StatusOK, e.envelope(s, s.object, choices, tail...))
}

// parts renders one choice of a streamed answer: a chat answer's deltas
// or a text completion's texts, the last one finishing the choice.
func (e *Engine) parts(c choiceScript, lp logprobsMode, chat bool) []part {
	var parts []part
	add := func(v any) { parts = append(parts, part{payload: field{"text", v}}) }
	if chat {
		add = func(v any) { parts = append(parts, part{payload: field{"delta", v}}) }
		switch e.dialect {
		case VLLM:
			add(object{{"role", "assistant"}, {"content", ""}})
		case SGLang:
			add(object{{"role", "assistant"}, {"content", ""}, {"reasoning_content", nil}, {"tool_calls", nil}})
		case LlamaCpp:
			add(object{{"role", "assistant"}, {"content", nil}})
		}
	}
	for j, st := range c.steps {
		d := e.emptyDelta()
		switch {
		case !chat:
			add(st.text)
		case st.kind == stepContent:
			add(d.set("content", st.text))
		case st.kind == stepReasoning:
			add(d.set(e.reasoningKey(), st.text))
		case st.kind == stepRefusal:
			add(d.set("refusal", st.text))
		case e.dialect == Ollama: // tool calls arrive whole, in one delta
			if st.kind != stepToolHead || st.call > 0 {
				continue
			}
			add(d.set("tool_calls", e.toolCalls(c)))
		case st.kind == stepToolHead:
			tc := c.calls[st.call]
			add(d.set("tool_calls", []object{{{"index", st.call}, {"id", tc.id}, {"type", "function"},
				{"function", object{{"name", tc.name}, {"arguments", ""}}}}}))
		default:
			add(d.set("tool_calls", []object{{{"index", st.call}, {"function", object{{"arguments", st.text}}}}}))
		}
		parts[len(parts)-1].logprobs = e.logprobs(c, lp, j)
	}
	switch {
	case e.dialect == VLLM: // the last piece finishes the choice
		parts[len(parts)-1].finish = c.finish
		return parts
	case !chat:
		add("")
	case e.dialect == LlamaCpp:
		add(object{})
	default:
		add(e.emptyDelta())
	}
	parts[len(parts)-1].finish = c.finish
	return parts
}

// emptyDelta is the delta a dialect sends around one piece.
func (e *Engine) emptyDelta() object {
	switch e.dialect {
	case SGLang:
		return object{{"role", nil}, {"content", nil}, {"reasoning_content", nil}, {"tool_calls", nil}}
	case Ollama:
		return object{{"role", "assistant"}, {"content", ""}}
	default:
		return object{}
	}
}

// reasoningKey is the field that carries reasoning.
func (e *Engine) reasoningKey() string {
	if e.dialect == Ollama {
		return "reasoning"
	}
	return "reasoning_content"
}

// message renders one choice of a whole chat answer.
func (e *Engine) message(c choiceScript) object {
	content, reasoning, refusal := joinSteps(c, stepContent), joinSteps(c, stepReasoning), joinSteps(c, stepRefusal)
	o := object{{"role", "assistant"}, {"content", orNull(content)}}
	if e.dialect == Ollama {
		o = o.set("content", content) // Ollama's content is never null
	}
	var calls any
	if len(c.calls) > 0 {
		calls = e.toolCalls(c)
	}
	switch e.dialect {
	case VLLM:
		if calls == nil {
			calls = []object{}
		}
		return append(o, field{"refusal", orNull(refusal)}, field{"tool_calls", calls},
			field{"reasoning_content", orNull(reasoning)})
	case SGLang:
		o = append(o, field{"reasoning_content", orNull(reasoning)}, field{"tool_calls", calls})
	default:
		if reasoning != "" {
			o = append(o, field{e.reasoningKey(), reasoning})
		}
		if calls != nil {
			o = append(o, field{"tool_calls", calls})
		}
	}
	if refusal != "" {
		o = append(o, field{"refusal", refusal})
	}
	return o
}

// toolCalls renders a choice's tool calls whole.
func (e *Engine) toolCalls(c choiceScript) []object {
	var out []object
	for k, tc := range c.calls {
		o := object{{"id", tc.id}, {"type", "function"}, {"function", object{{"name", tc.name}, {"arguments", tc.args}}}}
		if e.dialect == Ollama {
			o = append(object{{"index", k}}, o...)
		}
		out = append(out, o)
	}
	return out
}

// joinSteps concatenates the text of a choice's steps of one kind.
func joinSteps(c choiceScript, kind stepKind) string {
	var b strings.Builder
	for _, st := range c.steps {
		if st.kind == kind {
			b.WriteString(st.text)
		}
	}
	return b.String()
}

// orNull is s, or null when s is empty.
func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}
