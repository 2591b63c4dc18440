package openai

import (
	"encoding/json"
	"strings"
)

// decodeFast fills ev from one streamed event without encoding/json, for
// the shapes engines actually send; decoding every event with
// encoding/json was over a quarter of a worker's CPU in front of a fast
// engine. It reports false whenever it is not certain to agree with
// json.Unmarshal (an error object, a key that differs only in case, a
// number that is not a plain integer, anything malformed), and the caller
// falls back to json.Unmarshal. FuzzDecodeFast holds it to that.
//
// It also reports whether the event is plain: nothing in it but what a
// text chunk carries (the content or text of its choices, their index and
// finish reason, the assistant role, null logprobs, usage, the system
// fingerprint and the fields every chunk repeats: id, object, created,
// model). Anything else is the app's to see, so a rich event is passed on
// as the engine sent it.
func decodeFast(data []byte, ev *streamEvent) (ok, plain bool) {
	s := scanner{b: data}
	seenChoices := false
	ok = s.object(func(key []byte) bool {
		switch string(key) {
		case "choices":
			if seenChoices {
				return false // encoding/json merges a repeated array into the first
			}
			seenChoices = true
			return s.choices(ev)
		case "usage":
			return s.usage(ev)
		case "system_fingerprint":
			return s.optStr(&ev.SystemFingerprint)
		case "error":
			return false // rare, and its handling needs the raw value
		case "id", "object", "created", "model":
			return s.skip()
		}
		if knownKey(key, "choices", "usage", "error", "system_fingerprint") {
			return false
		}
		s.rich = true
		return s.skip()
	})
	s.ws()
	ok = ok && s.i == len(s.b)
	return ok, ok && !s.rich
}

// knownKey reports whether encoding/json might match key to one of names
// although it is not one of them: it folds case, and folds some non-ASCII
// letters (the Kelvin sign, the long s) to ASCII ones, so any non-ASCII
// key counts.
func knownKey(key []byte, names ...string) bool {
	for _, c := range key {
		if c >= 0x80 {
			return true
		}
	}
	for _, n := range names {
		if len(n) != len(key) {
			continue
		}
		same := true
		for i := range len(n) {
			a, b := key[i], n[i]
			if 'A' <= a && a <= 'Z' {
				a += 'a' - 'A'
			}
			if a != b {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

type scanner struct {
	b    []byte
	i    int
	rich bool // something a text chunk cannot carry was seen
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) lit(word string) bool {
	if strings.HasPrefix(string(s.b[s.i:min(len(s.b), s.i+len(word))]), word) && len(s.b)-s.i >= len(word) {
		s.i += len(word)
		return true
	}
	return false
}

// null consumes a null, if that is what comes next.
func (s *scanner) null() bool {
	if s.peek() == 'n' {
		return s.lit("null")
	}
	return false
}

// object calls field for each key; field consumes the value. The key is
// valid only during the call.
func (s *scanner) object(field func(key []byte) bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		key, ok := s.raw()
		if !ok || s.peek() != ':' {
			return false
		}
		s.i++
		if !field(key) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// array calls elem for each element; elem consumes it.
func (s *scanner) array(elem func() bool) bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// str reads a string. Plain ASCII without escapes is taken as it is;
// anything else is handed to encoding/json, so escapes and invalid UTF-8
// come out exactly as json.Unmarshal makes them.
func (s *scanner) str() (string, bool) {
	b, ok := s.raw()
	return string(b), ok
}

// raw reads a string as bytes, aliasing the input when it is plain.
func (s *scanner) raw() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i
	s.i++
	plain := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if plain {
				return s.b[start+1 : s.i-1], true
			}
			var v string
			if json.Unmarshal(s.b[start:s.i], &v) != nil {
				return nil, false
			}
			return []byte(v), true
		case c == '\\':
			plain = false
			s.i += 2
		case c < 0x20:
			return nil, false
		case c >= 0x80:
			plain = false
			s.i++
		default:
			s.i++
		}
	}
	return nil, false
}

// optStr reads a string or null (which leaves dst as it was, as
// encoding/json does).
func (s *scanner) optStr(dst *string) bool {
	if s.null() {
		return true
	}
	v, ok := s.str()
	if ok {
		*dst = v
	}
	return ok
}

// integer reads a plain integer; anything else (fractions, exponents,
// overflow) is left to encoding/json.
func (s *scanner) integer() (int64, bool) {
	s.ws()
	neg := false
	if s.i < len(s.b) && s.b[s.i] == '-' {
		neg = true
		s.i++
	}
	start := s.i
	var n int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		if s.i-start >= 18 {
			return 0, false
		}
		n = n*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	digits := s.i - start
	if digits == 0 || (digits > 1 && s.b[start] == '0') {
		return 0, false
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

func (s *scanner) optInt(dst *int64) bool {
	if s.null() {
		return true
	}
	v, ok := s.integer()
	if ok {
		*dst = v
	}
	return ok
}

// skip consumes any value, checking its syntax.
func (s *scanner) skip() bool {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) bool { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, ok := s.str()
		return ok
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return false
}

// number consumes a JSON number of any form.
func (s *scanner) number() bool {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	start := s.i
	n := digits()
	if n == 0 || (n > 1 && s.b[start] == '0') {
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

func (s *scanner) choices(ev *streamEvent) bool {
	if s.null() {
		ev.Choices = nil
		return true
	}
	ev.Choices = ev.Choices[:0:0]
	return s.array(func() bool {
		ev.Choices = append(ev.Choices, streamChoice{})
		ch := &ev.Choices[len(ev.Choices)-1]
		if s.null() {
			return true
		}
		return s.object(func(key []byte) bool {
			switch string(key) {
			case "index":
				var n int64
				if !s.optInt(&n) || n != int64(int(n)) {
					return false
				}
				ch.Index = int(n)
				return true
			case "text":
				return s.optStr(&ch.Text)
			case "finish_reason":
				return s.optStr(&ch.FinishReason)
			case "delta":
				if s.null() {
					return true
				}
				return s.object(func(key []byte) bool {
					switch string(key) {
					case "content":
						return s.optStr(&ch.Delta.Content)
					case "role":
						if s.null() {
							return true
						}
						role, ok := s.raw()
						if string(role) != "assistant" {
							s.rich = true
						}
						return ok
					}
					if knownKey(key, "content") {
						return false
					}
					s.rich = true
					return s.skip()
				})
			case "logprobs":
				if !s.null() {
					s.rich = true
					return s.skip()
				}
				return true
			}
			if knownKey(key, "index", "text", "finish_reason", "delta") {
				return false
			}
			s.rich = true
			return s.skip()
		})
	})
}

func (s *scanner) usage(ev *streamEvent) bool {
	if s.null() {
		ev.Usage = nil
		return true
	}
	if ev.Usage == nil {
		ev.Usage = &streamUsage{}
	}
	u := ev.Usage
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "prompt_tokens":
			return s.optInt(&u.PromptTokens)
		case "completion_tokens":
			return s.optInt(&u.CompletionTokens)
		case "completion_tokens_details":
			if s.null() {
				u.CompletionTokensDetails = nil
				return true
			}
			if u.CompletionTokensDetails == nil {
				u.CompletionTokensDetails = &completionDetails{}
			}
			d := u.CompletionTokensDetails
			return s.object(func(key []byte) bool {
				if string(key) == "reasoning_tokens" {
					return s.optInt(&d.ReasoningTokens)
				}
				if knownKey(key, "reasoning_tokens") {
					return false
				}
				return s.skip()
			})
		case "prompt_tokens_details":
			if s.null() {
				u.PromptTokensDetails = nil
				return true
			}
			if u.PromptTokensDetails == nil {
				u.PromptTokensDetails = &tokenDetails{}
			}
			d := u.PromptTokensDetails
			return s.object(func(key []byte) bool {
				if string(key) == "cached_tokens" {
					return s.optInt(&d.CachedTokens)
				}
				if knownKey(key, "cached_tokens") {
					return false
				}
				return s.skip()
			})
		}
		if knownKey(key, "prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details") {
			return false
		}
		return s.skip()
	})
}
