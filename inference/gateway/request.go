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
	maxTokens    int64 // the completion cap over all choices (inference.CapOf); 0: none
}

var chatRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

// check validates an OpenAI request body. Errors are *inference.Error with
// CodeBadRequest and the param at fault.
func check(kind inference.Kind, body []byte) (parsed, *inference.Error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		if err == nil || bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
			return parsed{}, badRequest("", "the request body must be a JSON object")
		}
		return parsed{}, badRequest("", "the request body is not valid JSON: %v", err)
	}
	var p parsed
	raw, ok := fields["model"]
	if !ok || isNull(raw) {
		return parsed{}, badRequest("model", "you must provide a model parameter")
	}
	if err := json.Unmarshal(raw, &p.model); err != nil || p.model == "" || len(p.model) > 256 {
		return parsed{}, badRequest("model", "model must be a non-empty string of at most 256 bytes")
	}
	var e *inference.Error
	switch kind {
	case inference.KindChat:
		e = checkMessages(fields)
	case inference.KindCompletion:
		e = checkPrompt(fields)
	case inference.KindEmbedding:
		// Embeddings are answered whole: stream and sampling do not apply.
		return p, checkInput(fields)
	}
	if e != nil {
		return parsed{}, e
	}
	if e := checkStream(fields, &p); e != nil {
		return parsed{}, e
	}
	if e := checkSampling(fields, &p); e != nil {
		return parsed{}, e
	}
	return p, nil
}

// badRequest is a bad request naming param.
func badRequest(param, format string, args ...any) *inference.Error {
	return &inference.Error{Code: inference.CodeBadRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

// checkMessages checks a chat request's messages.
func checkMessages(fields map[string]json.RawMessage) *inference.Error {
	raw, ok := fields["messages"]
	if !ok || isNull(raw) {
		return badRequest("messages", "missing required parameter: 'messages'")
	}
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return badRequest("messages", "messages must be an array of message objects")
	}
	if len(msgs) == 0 {
		return badRequest("messages", "messages must not be empty")
	}
	for i, m := range msgs {
		param := fmt.Sprintf("messages[%d]", i)
		if m == nil {
			return badRequest(param, "each message must be an object")
		}
		var role string
		if err := json.Unmarshal(m["role"], &role); err != nil || !chatRoles[role] {
			return badRequest(param+".role", "role must be one of system, developer, user, assistant, tool")
		}
		if c, ok := m["content"]; ok && !isNull(c) {
			switch firstByte(c) {
			case '"', '[':
			default:
				return badRequest(param+".content", "content must be a string or an array of content parts")
			}
		} else if role != "assistant" {
			return badRequest(param+".content", "missing required parameter: 'content'")
		}
	}
	return nil
}

// checkPrompt checks a completion request's prompt.
func checkPrompt(fields map[string]json.RawMessage) *inference.Error {
	raw, ok := fields["prompt"]
	if !ok || isNull(raw) {
		return badRequest("prompt", "missing required parameter: 'prompt'")
	}
	switch firstByte(raw) {
	case '"':
	case '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil || len(arr) == 0 {
			return badRequest("prompt", "prompt must be a string or a non-empty array")
		}
	default:
		return badRequest("prompt", "prompt must be a string or an array")
	}
	return nil
}

// checkStream checks stream and stream_options, and notes them in p.
func checkStream(fields map[string]json.RawMessage, p *parsed) *inference.Error {
	if raw, ok := fields["stream"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &p.stream); err != nil {
			return badRequest("stream", "stream must be a boolean")
		}
	}
	if raw, ok := fields["stream_options"]; ok && !isNull(raw) {
		var so struct {
			IncludeUsage *bool `json:"include_usage"`
		}
		if err := json.Unmarshal(raw, &so); err != nil {
			return badRequest("stream_options", "stream_options must be an object with a boolean include_usage")
		}
		if !p.stream {
			return badRequest("stream_options", "stream_options is only allowed when stream is true")
		}
		p.includeUsage = so.IncludeUsage != nil && *so.IncludeUsage
	}
	return nil
}

// checkSampling checks the limits and sampling parameters: token caps, the
// types of temperature, top_p and the penalties, and n; it sets p's
// completion cap from the token caps and n.
func checkSampling(fields map[string]json.RawMessage, p *parsed) *inference.Error {
	var caps [2]*int64
	for i, f := range []string{"max_tokens", "max_completion_tokens"} {
		if raw, ok := fields[f]; ok && !isNull(raw) {
			var n int64
			if err := json.Unmarshal(raw, &n); err != nil || n < 1 {
				return badRequest(f, "%s must be an integer of at least 1", f)
			}
			caps[i] = &n
		}
	}
	// The sampling parameters' ranges are the engine's to judge (vLLM
	// takes a temperature above OpenAI's 2): the client checks only that
	// they are numbers, and an engine's refusal reaches the app as the
	// engine worded it.
	for _, name := range []string{"temperature", "top_p", "presence_penalty", "frequency_penalty"} {
		if raw, ok := fields[name]; ok && !isNull(raw) {
			var v float64
			if err := json.Unmarshal(raw, &v); err != nil {
				return badRequest(name, "%s must be a number", name)
			}
		}
	}
	var choices int64
	if raw, ok := fields["n"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &choices); err != nil || choices < 1 || choices > maxChoices {
			return badRequest("n", "n must be an integer from 1 to %d", maxChoices)
		}
	}
	p.maxTokens, _ = inference.CapOf(caps[0], caps[1], choices)
	return nil
}

// maxChoices is the most choices a request may ask for, as OpenAI allows.
const maxChoices = 128

// maxInputs is the most inputs one embedding request may hold, as OpenAI
// allows.
const maxInputs = 2048

// checkInput checks an embedding request's input and the types of its
// options; the engine judges the rest (what the model can embed, how many
// dimensions).
func checkInput(fields map[string]json.RawMessage) *inference.Error {
	raw, ok := fields["input"]
	if !ok || isNull(raw) {
		return badRequest("input", "missing required parameter: 'input'")
	}
	switch firstByte(raw) {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil || s == "" {
			return badRequest("input", "input must not be an empty string")
		}
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil || len(items) == 0 || len(items) > maxInputs {
			return badRequest("input", "input must be a string or an array of 1 to %d strings or token arrays", maxInputs)
		}
		for i, it := range items {
			switch firstByte(it) {
			case '"', '[':
			case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
				var n int64
				if json.Unmarshal(it, &n) != nil {
					return badRequest(fmt.Sprintf("input[%d]", i), "a token must be an integer")
				}
			default:
				return badRequest(fmt.Sprintf("input[%d]", i), "each input must be a string, a token or an array of tokens")
			}
		}
	default:
		return badRequest("input", "input must be a string or an array")
	}
	if raw, ok := fields["encoding_format"]; ok && !isNull(raw) {
		var f string
		if json.Unmarshal(raw, &f) != nil {
			return badRequest("encoding_format", "encoding_format must be a string (float or base64)")
		}
	}
	if raw, ok := fields["dimensions"]; ok && !isNull(raw) {
		var n int64
		if json.Unmarshal(raw, &n) != nil || n < 1 {
			return badRequest("dimensions", "dimensions must be an integer of at least 1")
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func firstByte(raw json.RawMessage) byte {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}
