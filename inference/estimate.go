package inference

import "encoding/json"

// Token counts for engines that report none, and for answers cut short.

// EstimatePromptTokens guesses a prompt's token count from the request body,
// for engines that report no usage. A token is taken as four bytes of text:
// the bytes of the message contents (strings, or the text of content parts),
// or of the completion prompt or embedding input (a string or strings),
// divided by four and rounded up. A prompt given as token IDs counts one
// token per ID. Roles, names and the chat template are not counted. The
// estimate is at least 1.
func EstimatePromptTokens(body []byte) int64 {
	var req struct {
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Prompt json.RawMessage `json:"prompt"`
		Input  json.RawMessage `json:"input"`
	}
	// A body that does not fit the shape only lowers the estimate.
	_ = json.Unmarshal(body, &req)
	if len(req.Prompt) == 0 {
		req.Prompt = req.Input
	}
	var textBytes, tokens int64
	for _, m := range req.Messages {
		textBytes += contentBytes(m.Content)
	}
	if len(req.Prompt) > 0 {
		var items []json.RawMessage
		if json.Unmarshal(req.Prompt, &items) != nil {
			items = []json.RawMessage{req.Prompt}
		}
		for _, it := range items {
			var ids []json.RawMessage
			switch {
			case json.Unmarshal(it, &ids) == nil:
				tokens += int64(len(ids))
			case len(it) > 0 && it[0] == '"':
				textBytes += int64(len(jsonText(it)))
			default:
				tokens++ // a token ID
			}
		}
	}
	return max((textBytes+3)/4+tokens, 1)
}

// contentBytes is the length of a chat message's text: its content string,
// or the text of its content parts.
func contentBytes(raw json.RawMessage) int64 {
	if len(raw) == 0 {
		return 0
	}
	if raw[0] == '"' {
		return int64(len(jsonText(raw)))
	}
	var parts []struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	var n int64
	for _, p := range parts {
		n += int64(len(p.Text))
	}
	return n
}

// jsonText returns raw as a string, or "" if it is not one.
func jsonText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// MaxTokensCap bounds a request's MaxTokens: 2^40, as End bounds token
// counts.
const MaxTokensCap = 1 << 40

// CompletionCap is the most completion tokens a chat or completion request
// body lets the engine produce over all its choices: the smaller of its
// max_tokens and max_completion_tokens, times n (1 if absent). ok is false
// when the body sets neither cap (the engine may then write up to its
// context), or is not such a body.
func CompletionCap(kind Kind, body []byte) (limit int64, ok bool) {
	if kind != KindChat && kind != KindCompletion {
		return 0, false
	}
	var req struct {
		MaxTokens           *int64 `json:"max_tokens"`
		MaxCompletionTokens *int64 `json:"max_completion_tokens"`
		N                   *int64 `json:"n"`
	}
	if json.Unmarshal(body, &req) != nil {
		return 0, false
	}
	var n int64
	if req.N != nil {
		n = *req.N
	}
	return CapOf(req.MaxTokens, req.MaxCompletionTokens, n)
}

// CapOf is CompletionCap from a body's fields already decoded: its
// max_tokens and max_completion_tokens (nil when absent) and n (0 when
// absent).
func CapOf(maxTokens, maxCompletionTokens *int64, n int64) (limit int64, ok bool) {
	for _, v := range []*int64{maxTokens, maxCompletionTokens} {
		if v != nil && *v > 0 && (!ok || *v < limit) {
			limit, ok = *v, true
		}
	}
	n = max(n, 1)
	if !ok || limit > MaxTokensCap/n {
		return 0, false
	}
	return limit * n, true
}
