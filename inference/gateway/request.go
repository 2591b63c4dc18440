package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/cocoon-mesh/cocoon/inference"
)

// parsed is what the gateway needs to know of a request body.
type parsed struct {
	model        string
	stream       bool
	includeUsage bool
}

var chatRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

// check validates an OpenAI request body. Errors are *inference.Error with
// CodeBadRequest and the param at fault.
func check(kind inference.Kind, body []byte) (parsed, *inference.Error) {
	bad := func(param, format string, args ...any) (parsed, *inference.Error) {
		return parsed{}, &inference.Error{Code: inference.CodeBadRequest, Param: param, Message: fmt.Sprintf(format, args...)}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		if err == nil || bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
			return bad("", "the request body must be a JSON object")
		}
		return bad("", "the request body is not valid JSON: %v", err)
	}
	var p parsed
	raw, ok := fields["model"]
	if !ok || isNull(raw) {
		return bad("model", "you must provide a model parameter")
	}
	if err := json.Unmarshal(raw, &p.model); err != nil || p.model == "" || len(p.model) > 256 {
		return bad("model", "model must be a non-empty string of at most 256 bytes")
	}
	switch kind {
	case inference.KindChat:
		raw, ok := fields["messages"]
		if !ok || isNull(raw) {
			return bad("messages", "missing required parameter: 'messages'")
		}
		var msgs []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &msgs); err != nil {
			return bad("messages", "messages must be an array of message objects")
		}
		if len(msgs) == 0 {
			return bad("messages", "messages must not be empty")
		}
		for i, m := range msgs {
			param := fmt.Sprintf("messages[%d]", i)
			if m == nil {
				return bad(param, "each message must be an object")
			}
			var role string
			if err := json.Unmarshal(m["role"], &role); err != nil || !chatRoles[role] {
				return bad(param+".role", "role must be one of system, developer, user, assistant, tool")
			}
			if c, ok := m["content"]; ok && !isNull(c) {
				switch firstByte(c) {
				case '"', '[':
				default:
					return bad(param+".content", "content must be a string or an array of content parts")
				}
			} else if role != "assistant" {
				return bad(param+".content", "missing required parameter: 'content'")
			}
		}
	case inference.KindCompletion:
		raw, ok := fields["prompt"]
		if !ok || isNull(raw) {
			return bad("prompt", "missing required parameter: 'prompt'")
		}
		switch firstByte(raw) {
		case '"':
		case '[':
			var arr []json.RawMessage
			if err := json.Unmarshal(raw, &arr); err != nil || len(arr) == 0 {
				return bad("prompt", "prompt must be a string or a non-empty array")
			}
		default:
			return bad("prompt", "prompt must be a string or an array")
		}
	}
	if raw, ok := fields["stream"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &p.stream); err != nil {
			return bad("stream", "stream must be a boolean")
		}
	}
	if raw, ok := fields["stream_options"]; ok && !isNull(raw) {
		var so struct {
			IncludeUsage *bool `json:"include_usage"`
		}
		if err := json.Unmarshal(raw, &so); err != nil {
			return bad("stream_options", "stream_options must be an object with a boolean include_usage")
		}
		if !p.stream {
			return bad("stream_options", "stream_options is only allowed when stream is true")
		}
		p.includeUsage = so.IncludeUsage != nil && *so.IncludeUsage
	}
	for _, f := range []string{"max_tokens", "max_completion_tokens"} {
		if raw, ok := fields[f]; ok && !isNull(raw) {
			var n int64
			if err := json.Unmarshal(raw, &n); err != nil || n < 1 {
				return bad(f, "%s must be an integer of at least 1", f)
			}
		}
	}
	for _, r := range []struct {
		name     string
		min, max float64
	}{{"temperature", 0, 2}, {"top_p", 0, 1}, {"presence_penalty", -2, 2}, {"frequency_penalty", -2, 2}} {
		if raw, ok := fields[r.name]; ok && !isNull(raw) {
			var v float64
			if err := json.Unmarshal(raw, &v); err != nil || v < r.min || v > r.max {
				return bad(r.name, "%s must be a number from %g to %g", r.name, r.min, r.max)
			}
		}
	}
	if raw, ok := fields["n"]; ok && !isNull(raw) {
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || n != 1 {
			return bad("n", "only n=1 is supported")
		}
	}
	return p, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func firstByte(raw json.RawMessage) byte {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}
