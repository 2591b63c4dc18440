package openaitest

import "fmt"

// token is one content token of a choice.
type token struct {
	text   string
	n      int // its position among the choice's content tokens
	offset int // its byte offset in the choice's content
}

// logprobs renders the logprobs of step j of choice c, or of the whole
// choice when j < 0: nil (null) when none were asked for or the step
// carries no content.
func (e *Engine) logprobs(c choiceScript, lp logprobsMode, j int) any {
	if !lp.on {
		return nil
	}
	var toks []token
	n, offset := 0, 0
	for k, st := range c.steps {
		if st.kind != stepContent {
			continue
		}
		if j < 0 || k == j {
			toks = append(toks, token{st.text, n, offset})
		}
		n++
		offset += len(st.text)
	}
	if len(toks) == 0 {
		return nil
	}
	if lp.legacy {
		return legacyLogprobs(toks, lp.top)
	}
	entries := make([]object, 0, len(toks))
	for _, t := range toks {
		v := tokenLogprob(t.n)
		top := make([]object, 0, lp.top)
		for a := range lp.top {
			text, av := alternative(t.text, v, a)
			top = append(top, object{{"token", text}, {"logprob", av}, {"bytes", byteList(text)}})
		}
		entries = append(entries, object{{"token", t.text}, {"logprob", v}, {"bytes", byteList(t.text)}, {"top_logprobs", top}})
	}
	return object{{"content", entries}}
}

// legacyLogprobs renders logprobs in the /completions shape, with the
// sampled token and top-1 alternatives in each top_logprobs entry.
func legacyLogprobs(toks []token, top int) object {
	var (
		texts   = make([]string, 0, len(toks))
		values  = make([]float64, 0, len(toks))
		tops    = make([]map[string]float64, 0, len(toks))
		offsets = make([]int, 0, len(toks))
	)
	for _, t := range toks {
		v := tokenLogprob(t.n)
		alts := make(map[string]float64)
		for a := range max(top, 1) {
			text, av := alternative(t.text, v, a)
			alts[text] = av
		}
		texts = append(texts, t.text)
		values = append(values, v)
		tops = append(tops, alts)
		offsets = append(offsets, t.offset)
	}
	return object{{"tokens", texts}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}}
}

// tokenLogprob is the logprob of the n-th content token: a few exact
// binary fractions, so they survive any JSON round trip.
func tokenLogprob(n int) float64 { return -float64((n*37)%100+1) / 64 }

// alternative is the a-th most likely token in place of text, which itself
// is the most likely (a = 0) with logprob v.
func alternative(text string, v float64, a int) (string, float64) {
	if a == 0 {
		return text, v
	}
	return fmt.Sprintf(" alt%d", a), v - float64(a)
}

// byteList is s as the list of byte values logprobs carry.
func byteList(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}
