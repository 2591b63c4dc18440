package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cocoon-mesh/cocoon/inference"
)

// A whole (non-streamed) answer is built from the stream the worker sent,
// as OpenAI's SDKs accumulate one: per choice, string pieces of the
// message are joined (content, reasoning, refusal, and any string field the
// mesh does not know), tool calls are merged by their index (id, type and
// name set, argument pieces joined), logprob lists are joined, and any
// other value is the last one sent. Fields of the answer outside its
// choices are the last ones sent.

// field is one member of a JSON object, in the order it came.
type field struct {
	key string
	val json.RawMessage
}

// errNotObject is a pass-through event or answer that is not a JSON object.
var errNotObject = errors.New("not a JSON object")

// splitObject splits a JSON object into its members, in order, each value
// compacted. It refuses anything else, trailing bytes included.
func splitObject(b []byte) ([]field, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	var fields []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		fields = append(fields, field{key, val})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotObject
	}
	return fields, nil
}

// jsonString returns raw as a string, if it is one.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func isNullRaw(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// members is a JSON object being built: its fields in first-seen order.
type members struct {
	keys []string
	vals map[string]*member
}

// member is one field: a string being joined, a list being joined, or a
// value.
type member struct {
	text   strings.Builder
	isText bool
	val    json.RawMessage
	// items, with isList, are a list's elements so far (logprobs).
	items  []json.RawMessage
	isList bool
	// calls holds a tool call list's calls, merged by index.
	calls []*toolCall
}

func (m *members) get(key string) *member {
	if m.vals == nil {
		m.vals = make(map[string]*member)
	}
	v, ok := m.vals[key]
	if !ok {
		v = &member{}
		m.vals[key] = v
		m.keys = append(m.keys, key)
	}
	return v
}

func (m *members) has(key string) bool { _, ok := m.vals[key]; return ok }

// join merges one piece: a string is joined to the strings before it, any
// other value replaces what was there; null changes nothing.
func (m *members) join(key string, val json.RawMessage) {
	if isNullRaw(val) {
		return
	}
	v := m.get(key)
	if s, ok := jsonString(val); ok {
		v.isText = true
		v.text.WriteString(s)
		return
	}
	v.isText, v.isList, v.val = false, false, val
}

// set replaces a field's value; null changes nothing.
func (m *members) set(key string, val json.RawMessage) {
	if isNullRaw(val) {
		return
	}
	v := m.get(key)
	v.isText, v.isList, v.val = false, false, val
}

// appendTo appends the members as a JSON object's fields, after a comma
// when more is true.
func (m *members) appendTo(dst []byte, more bool) []byte {
	for _, k := range m.keys {
		if more {
			dst = append(dst, ',')
		}
		more = true
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = m.vals[k].appendValue(dst)
	}
	return dst
}

func (v *member) appendValue(dst []byte) []byte {
	switch {
	case v.calls != nil:
		dst = append(dst, '[')
		for i, c := range v.calls {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = c.appendTo(dst)
		}
		return append(dst, ']')
	case v.isText:
		return appendJSONString(dst, v.text.String())
	case v.isList:
		dst = append(dst, '[')
		for i, it := range v.items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, it...)
		}
		return append(dst, ']')
	case len(v.val) == 0:
		return append(dst, "null"...)
	}
	return append(dst, v.val...)
}

// toolCall is one tool call being merged from its pieces.
type toolCall struct {
	index  int
	fields members // id, type and any other field
	fn     members // function: name set, arguments joined
	hasFn  bool
}

func (c *toolCall) merge(raw json.RawMessage) {
	fields, err := splitObject(raw)
	if err != nil {
		return
	}
	for _, f := range fields {
		switch f.key {
		case "index":
		case "function":
			c.hasFn = true
			fn, err := splitObject(f.val)
			if err != nil {
				continue
			}
			for _, g := range fn {
				if g.key == "arguments" {
					c.fn.join(g.key, g.val)
				} else {
					c.fn.set(g.key, g.val)
				}
			}
		default:
			c.fields.set(f.key, f.val)
		}
	}
}

func (c *toolCall) appendTo(dst []byte) []byte {
	dst = append(dst, '{')
	dst = c.fields.appendTo(dst, false)
	if c.hasFn {
		if len(c.fields.keys) > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"function":{`...)
		if !c.fn.has("arguments") && c.fn.has("name") {
			c.fn.get("arguments").isText = true // a call without arguments has ""
		}
		dst = c.fn.appendTo(dst, false)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// mergeCalls merges a delta's tool calls (or a legacy function_call) into
// the message's.
func mergeCalls(v *member, raw json.RawMessage) {
	var calls []json.RawMessage
	if json.Unmarshal(raw, &calls) != nil {
		return
	}
	if v.calls == nil {
		v.calls = []*toolCall{} // an empty list is still a list
	}
	for i, c := range calls {
		var idx struct {
			Index *int `json:"index"`
		}
		_ = json.Unmarshal(c, &idx)
		index := i
		if idx.Index != nil {
			index = *idx.Index
		}
		var tc *toolCall
		for _, have := range v.calls {
			if have.index == index {
				tc = have
			}
		}
		if tc == nil {
			tc = &toolCall{index: index}
			v.calls = append(v.calls, tc)
			slices.SortFunc(v.calls, func(a, b *toolCall) int { return a.index - b.index })
		}
		tc.merge(c)
	}
}

// choice is one choice being accumulated.
type choice struct {
	index    int
	message  members // chat: the message, from its deltas
	text     strings.Builder
	logprobs members // lists joined, other values replaced
	hasLog   bool
	finish   string
	extra    members // other fields of the choice (stop_reason, ...)
}

// accumulator builds a whole answer from a stream's chunks and events.
type accumulator struct {
	kind    inference.Kind
	choices []*choice
	extra   members // fields of the answer outside its choices
	size    int     // bytes taken in, to cap a whole answer
}

// maxWhole caps the answer a client node builds for a whole response.
const maxWhole = 64 << 20

var errTooLarge = fmt.Errorf("the answer exceeds %d bytes", maxWhole)

func (a *accumulator) choice(index int) *choice {
	for _, c := range a.choices {
		if c.index == index {
			return c
		}
	}
	c := &choice{index: index}
	a.choices = append(a.choices, c)
	slices.SortFunc(a.choices, func(x, y *choice) int { return x.index - y.index })
	return c
}

// addText takes a text chunk: the first choice's content.
func (a *accumulator) addText(text, finish []byte) error {
	if a.size += len(text); a.size > maxWhole {
		return errTooLarge
	}
	c := a.choice(0)
	if a.kind == inference.KindChat {
		v := c.message.get("content")
		v.isText = true
		v.text.Write(text)
	} else {
		c.text.Write(text)
	}
	if len(finish) > 0 {
		c.finish = string(finish)
	}
	return nil
}

// addEvent takes an engine event.
func (a *accumulator) addEvent(ev []byte) error {
	if a.size += len(ev); a.size > maxWhole {
		return errTooLarge
	}
	fields, err := splitObject(ev)
	if err != nil {
		return err
	}
	for _, f := range fields {
		switch f.key {
		case "id", "object", "created", "model", "usage", "cocoon":
		case "choices":
			var choices []json.RawMessage
			if err := json.Unmarshal(f.val, &choices); err != nil {
				return fmt.Errorf("choices: %w", err)
			}
			for i, raw := range choices {
				if err := a.addChoice(i, raw); err != nil {
					return err
				}
			}
		default:
			a.extra.set(f.key, f.val)
		}
	}
	return nil
}

func (a *accumulator) addChoice(i int, raw json.RawMessage) error {
	fields, err := splitObject(raw)
	if err != nil {
		return fmt.Errorf("choice %d: %w", i, err)
	}
	index := i
	for _, f := range fields {
		if f.key == "index" {
			if err := json.Unmarshal(f.val, &index); err != nil || index < 0 || index >= maxChoices {
				return fmt.Errorf("choice index %s", f.val)
			}
		}
	}
	c := a.choice(index)
	for _, f := range fields {
		switch f.key {
		case "index":
		case "delta", "message":
			delta, err := splitObject(f.val)
			if err != nil {
				continue // a null delta
			}
			for _, d := range delta {
				switch d.key {
				case "role":
					c.message.set(d.key, d.val)
				case "tool_calls":
					if !isNullRaw(d.val) {
						mergeCalls(c.message.get(d.key), d.val)
					}
				case "function_call":
					if isNullRaw(d.val) {
						continue
					}
					v := c.message.get(d.key)
					if v.calls == nil {
						v.calls = []*toolCall{}
					}
					// A legacy function call is a function alone.
					mergeCalls(v, append(append([]byte(`[{"function":`), d.val...), "}]"...))
				default:
					c.message.join(d.key, d.val)
				}
			}
		case "text":
			if s, ok := jsonString(f.val); ok {
				c.text.WriteString(s)
			}
		case "logprobs":
			if isNullRaw(f.val) {
				continue
			}
			c.hasLog = true
			lp, err := splitObject(f.val)
			if err != nil {
				continue
			}
			for _, l := range lp {
				var items []json.RawMessage
				if json.Unmarshal(l.val, &items) != nil || l.val[0] != '[' {
					c.logprobs.set(l.key, l.val)
					continue
				}
				v := c.logprobs.get(l.key)
				if !v.isList {
					v.val, v.isList = nil, true
				}
				v.items = append(v.items, items...)
			}
		case "finish_reason":
			if s, ok := jsonString(f.val); ok && s != "" {
				c.finish = s
			}
		default:
			c.extra.set(f.key, f.val)
		}
	}
	return nil
}

// appendWhole appends the whole answer: OpenAI's chat.completion or
// text_completion object, then usage and cocoon as already encoded.
func (a *accumulator) appendWhole(dst []byte, e *encoder, finish string, usage, cocoon []byte) []byte {
	if len(a.choices) == 0 {
		a.choice(0)
	}
	object := "chat.completion"
	if a.kind == inference.KindCompletion {
		object = "text_completion"
	}
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, e.id)
	dst = append(dst, `,"object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = fmt.Appendf(dst, "%d", e.created)
	dst = append(dst, `,"model":`...)
	dst = appendJSONString(dst, e.model)
	dst = append(dst, `,"choices":[`...)
	for i, c := range a.choices {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = fmt.Appendf(dst, `{"index":%d,`, c.index)
		if a.kind == inference.KindChat {
			dst = append(dst, `"message":`...)
			dst = c.appendMessage(dst)
		} else {
			dst = append(dst, `"text":`...)
			dst = appendJSONString(dst, c.text.String())
		}
		dst = append(dst, `,"logprobs":`...)
		if c.hasLog {
			dst = append(dst, '{')
			dst = c.logprobs.appendTo(dst, false)
			dst = append(dst, '}')
		} else {
			dst = append(dst, "null"...)
		}
		dst = append(dst, `,"finish_reason":`...)
		f := c.finish
		if f == "" && c.index == 0 {
			f = finish
		}
		if f == "" {
			f = "stop"
		}
		dst = appendJSONString(dst, f)
		dst = c.extra.appendTo(dst, true)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"usage":`...)
	dst = append(dst, usage...)
	dst = a.extra.appendTo(dst, true)
	dst = append(dst, `,"cocoon":`...)
	dst = append(dst, cocoon...)
	return append(dst, '}')
}

// appendMessage appends a chat choice's message: its role (assistant when
// none came), its content (null when the answer is tool calls or a
// refusal with no text), then every other field in the order it came.
func (c *choice) appendMessage(dst []byte) []byte {
	dst = append(dst, `{"role":`...)
	if v, ok := c.message.vals["role"]; ok && !v.isText && len(v.val) > 0 {
		dst = append(dst, v.val...)
	} else {
		dst = append(dst, `"assistant"`...)
	}
	dst = append(dst, `,"content":`...)
	content, hasContent := c.message.vals["content"]
	switch {
	case hasContent && (!content.isText || content.text.Len() > 0):
		dst = content.appendValue(dst)
	case c.message.has("tool_calls") || c.message.has("function_call") || c.message.has("refusal"):
		dst = append(dst, "null"...)
	default:
		dst = append(dst, `""`...)
	}
	for _, k := range c.message.keys {
		if k == "role" || k == "content" {
			continue
		}
		dst = append(dst, ',')
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		v := c.message.vals[k]
		if k == "function_call" && len(v.calls) == 1 {
			dst = v.calls[0].appendFunction(dst)
			continue
		}
		dst = v.appendValue(dst)
	}
	return append(dst, '}')
}

// appendFunction appends a legacy function_call: the function alone.
func (c *toolCall) appendFunction(dst []byte) []byte {
	dst = append(dst, '{')
	if !c.fn.has("arguments") {
		c.fn.get("arguments").isText = true
	}
	dst = c.fn.appendTo(dst, false)
	return append(dst, '}')
}
