package gateway

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// encoder writes OpenAI response objects for one request. Streamed chunks
// are appended by hand from precomputed prefixes: this is the hot path.
// Engine events (FrameEvent) are written as the engine sent them, with this
// request's id, created and model.
type encoder struct {
	kind     inference.Kind
	id       string
	model    string
	created  int64
	object   string
	prefix   []byte // `data: {"id":...,"model":...,"choices":[`
	first    bool   // no delta of the first choice has named its role yet
	finished bool   // the first choice's finish reason was written
	// fingerprint is the system_fingerprint of the last engine event,
	// which the text chunks after it repeat, as the engine's chunks did.
	fingerprint string
}

func newEncoder(kind inference.Kind, id, model string, created int64) *encoder {
	e := &encoder{kind: kind, id: id, model: model, created: created, first: true, object: "chat.completion.chunk"}
	if kind == inference.KindCompletion {
		e.object = "text_completion"
	}
	e.prefix = e.appendHead(nil, e.object)
	e.prefix = append(e.prefix, `,"choices":[`...)
	return e
}

// appendHead appends `data: {"id":...,"model":...` and the fingerprint.
func (e *encoder) appendHead(dst []byte, object string) []byte {
	dst = append(dst, `data: {"id":`...)
	dst = appendJSONString(dst, e.id)
	dst = append(dst, `,"object":`...)
	dst = appendJSONString(dst, object)
	dst = append(dst, `,"created":`...)
	dst = strconv.AppendInt(dst, e.created, 10)
	dst = append(dst, `,"model":`...)
	return appendJSONString(dst, e.model)
}

// appendEvent appends an engine event: its fields as the engine sent them
// (compacted: an event's line breaks would end its line), but the id,
// object, created and model of this answer first, and without usage,
// which the answer's last chunk carries as the mesh billed it, or cocoon,
// which only the mesh writes.
func (e *encoder) appendEvent(dst, ev []byte) ([]byte, error) {
	fields, err := splitObject(ev)
	if err != nil {
		return dst, err
	}
	object := e.object
	fingerprint := ""
	var choices json.RawMessage
	for _, f := range fields {
		switch f.key {
		case "object":
			if s, ok := jsonString(f.val); ok && s != "" {
				object = s
			}
		case "system_fingerprint":
			fingerprint, _ = jsonString(f.val)
		case "choices":
			choices = f.val
		}
	}
	dst = e.appendHead(dst, object)
	for _, f := range fields {
		switch f.key {
		case "id", "object", "created", "model", "usage", "cocoon":
			continue
		}
		dst = append(dst, ',')
		dst = appendJSONString(dst, f.key)
		dst = append(dst, ':')
		dst = append(dst, f.val...)
	}
	dst = append(dst, "}\n\n"...)
	e.noteChoices(choices)
	if fingerprint != e.fingerprint {
		e.fingerprint = fingerprint
		e.prefix = e.appendHead(e.prefix[:0], e.object)
		if fingerprint != "" {
			e.prefix = append(e.prefix, `,"system_fingerprint":`...)
			e.prefix = appendJSONString(e.prefix, fingerprint)
		}
		e.prefix = append(e.prefix, `,"choices":[`...)
	}
	return dst, nil
}

// noteChoices notes what an event said of the first choice: that a delta
// named its role, or that it finished.
func (e *encoder) noteChoices(raw json.RawMessage) {
	var choices []struct {
		Index int `json:"index"`
		Delta *struct {
			Role *string `json:"role"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	}
	if json.Unmarshal(raw, &choices) != nil {
		return
	}
	for _, c := range choices {
		if c.Index != 0 {
			continue
		}
		if c.Delta != nil && c.Delta.Role != nil {
			e.first = false
		}
		if c.FinishReason != nil && *c.FinishReason != "" {
			e.finished = true
		}
	}
}

// appendChunk appends one content event.
func (e *encoder) appendChunk(dst, text, finish []byte) []byte {
	dst = append(dst, e.prefix...)
	if e.kind == inference.KindChat {
		dst = append(dst, `{"index":0,"delta":{`...)
		if e.first {
			dst = append(dst, `"role":"assistant",`...)
		}
		dst = append(dst, `"content":`...)
		dst = appendJSONString(dst, text)
		dst = append(dst, `},"finish_reason":`...)
	} else {
		dst = append(dst, `{"index":0,"text":`...)
		dst = appendJSONString(dst, text)
		dst = append(dst, `,"logprobs":null,"finish_reason":`...)
	}
	e.first = false
	if len(finish) > 0 {
		e.finished = true
		dst = appendJSONString(dst, finish)
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, "}]}\n\n"...)
}

// usage is OpenAI's usage object; Cocoon adds what served the request.
type usage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details,omitempty"`
}

// served says who answered: it travels beside usage, under "cocoon".
type served struct {
	Worker    string `json:"worker,omitempty"`
	Tier      string `json:"tier,omitempty"`
	Simulated bool   `json:"simulated"`
	// Counted is true when the engine reported no usage and the worker
	// counted the tokens itself.
	Counted bool `json:"usage_counted_by_worker,omitempty"`
	// Cost is what the answer costs in nanoTON, as the proxy priced it
	// from the worker's offer and its own fee; absent when unknown.
	Cost *payments.Bill `json:"cost_nanoton,omitempty"`
	// Receipt is the worker's signed receipt (payments.Receipt), base64.
	Receipt []byte `json:"receipt,omitempty"`
}

func toUsage(end *inference.End) (usage, served) {
	u := usage{PromptTokens: end.Usage.Prompt, CompletionTokens: end.Usage.Completion, TotalTokens: end.Usage.Total()}
	if end.Usage.Cached > 0 {
		u.PromptTokensDetails = &struct {
			CachedTokens int64 `json:"cached_tokens"`
		}{end.Usage.Cached}
	}
	if end.Usage.Reasoning > 0 {
		u.CompletionTokensDetails = &struct {
			ReasoningTokens int64 `json:"reasoning_tokens"`
		}{end.Usage.Reasoning}
	}
	return u, served{Worker: end.Worker, Tier: end.Tier, Simulated: end.Simulated, Counted: end.Usage.Counted, Cost: end.Cost, Receipt: end.Receipt}
}

// appendUsage appends the final usage chunk of a stream with
// include_usage: no choices, just usage.
func (e *encoder) appendUsage(dst []byte, end *inference.End) []byte {
	u, s := toUsage(end)
	ub, _ := json.Marshal(u)
	sb, _ := json.Marshal(s)
	dst = append(dst, e.prefix...)
	dst = append(dst, `],"usage":`...)
	dst = append(dst, ub...)
	dst = append(dst, `,"cocoon":`...)
	dst = append(dst, sb...)
	return append(dst, "}\n\n"...)
}

const hexDigits = "0123456789abcdef"

// plainJSON[c] is true for ASCII bytes a JSON string carries unescaped.
var plainJSON = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, control characters and U+2028/U+2029 are escaped. It is the
// hot path of streaming: most chunks are plain ASCII and are copied in one
// append.
func appendJSONString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plainJSON[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func decodeRune[T string | []byte](s T) (rune, int) {
	if b, ok := any(s).([]byte); ok {
		return utf8.DecodeRune(b)
	}
	return utf8.DecodeRuneInString(string(s))
}
