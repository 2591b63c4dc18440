package openai

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Caps on the event stream. An engine sends one small JSON object per event;
// these only stop a broken engine from growing memory without bound.
const (
	readBufferSize  = 32 << 10
	maxLineBytes    = 1 << 20
	maxEventBytes   = 1 << 20
	maxFinishReason = 64 // inference.DecodeChunk refuses longer ones
)

// Errors of the event stream reader. None is worth a retry of the same
// stream; the engine is at fault.
var (
	errDone          = errors.New("event stream done")
	errLineTooLong   = fmt.Errorf("event stream line exceeds %d bytes", maxLineBytes)
	errEventTooLarge = fmt.Errorf("event stream event exceeds %d bytes", maxEventBytes)
)

var utf8BOM = []byte("\xEF\xBB\xBF")

// sseReader splits a server-sent event stream into the data of its events,
// as the WHATWG event stream format says: a leading byte order mark is
// skipped; lines end in LF or CRLF (a lone CR, which no OpenAI-compatible
// engine sends, is not taken as a line end); lines starting with a colon
// are comments; "field: value" takes at most one space after the colon, and
// a line without a colon is a field with an empty value; of the fields only
// data counts; a blank line ends an event, whose data lines are joined with
// LF; an event without data lines is no event. OpenAI's "data: [DONE]"
// ends the stream.
type sseReader struct {
	br      *bufio.Reader
	line    []byte // a line longer than the read buffer, assembled
	data    []byte // the data of the event being read, each line ending in LF
	started bool   // the first line was read, and a byte order mark skipped
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{br: bufio.NewReaderSize(r, readBufferSize)}
}

// buffered reports how many bytes of the stream are read but not yet
// parsed.
func (s *sseReader) buffered() int { return s.br.Buffered() }

// next returns the data of the next event. The slice is valid until the
// next call. It returns errDone at "data: [DONE]" and io.EOF when the stream
// ends; an event the stream ends in the middle of is dropped, as the format
// says, though a last line that lacks its line end still counts, so a final
// "data: [DONE]" is seen.
func (s *sseReader) next() ([]byte, error) {
	s.data = s.data[:0]
	for {
		line, err := s.readLine()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			if len(s.data) == 0 {
				continue
			}
			return s.data[:len(s.data)-1], nil
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		if string(field) != "data" {
			continue
		}
		if len(s.data) == 0 && string(value) == "[DONE]" {
			return nil, errDone
		}
		if len(s.data)+len(value)+1 > maxEventBytes {
			return nil, errEventTooLarge
		}
		s.data = append(s.data, value...)
		s.data = append(s.data, '\n')
	}
}

// readLine returns the next line without its line end, valid until the
// next call.
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		frag, err := s.br.ReadSlice('\n')
		switch {
		case err == nil:
		case errors.Is(err, bufio.ErrBufferFull):
			if len(s.line)+len(frag) > maxLineBytes {
				return nil, errLineTooLong
			}
			s.line = append(s.line, frag...)
			continue
		case errors.Is(err, io.EOF) && len(s.line)+len(frag) > 0:
			// The last line, without its line end; the next call
			// reads io.EOF again.
		default:
			return nil, err
		}
		line := frag
		if len(s.line) > 0 {
			if len(s.line)+len(frag) > maxLineBytes {
				return nil, errLineTooLong
			}
			s.line = append(s.line, frag...)
			line = s.line
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if !s.started {
			s.started = true
			line = bytes.TrimPrefix(line, utf8BOM)
		}
		return line, nil
	}
}

// streamEvent is what the backend reads of an OpenAI stream chunk, chat
// (choices[].delta.content) or completion (choices[].text).
type streamEvent struct {
	Choices           []streamChoice  `json:"choices"`
	Usage             *streamUsage    `json:"usage"`
	Error             json.RawMessage `json:"error"`
	SystemFingerprint string          `json:"system_fingerprint"`
}

type streamChoice struct {
	Index int    `json:"index"`
	Text  string `json:"text"`
	Delta struct {
		Content string `json:"content"`
	} `json:"delta"`
	FinishReason string `json:"finish_reason"`
}

type streamUsage struct {
	PromptTokens            int64              `json:"prompt_tokens"`
	CompletionTokens        int64              `json:"completion_tokens"`
	PromptTokensDetails     *tokenDetails      `json:"prompt_tokens_details"`
	CompletionTokensDetails *completionDetails `json:"completion_tokens_details"`
}

type tokenDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

type completionDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

// stream turns an engine's event stream into chunks, keeping what the
// result needs. An event with nothing but the first choice's text becomes
// a text chunk; any other event with choices is passed on as it is
// (Chunk.Event); an event without choices only carries usage.
type stream struct {
	kind   inference.Kind
	sse    *sseReader
	deltas int64            // deltas seen, of every choice
	usage  *inference.Usage // the last usage the engine reported
	finish string           // the last finish reason the engine gave the first choice
	// fingerprint is the system_fingerprint of the last event passed on:
	// a text chunk stands for an event with this one, which the client
	// node repeats in the chunks it writes.
	fingerprint string
	done        bool // the engine sent [DONE]
}

// run emits the stream's chunks until the stream ends. It returns ctx.Err()
// once ctx is cancelled and emit's error as it is.
func (s *stream) run(ctx context.Context, emit func(inference.Chunk) error) error {
	for {
		data, err := s.sse.next()
		if err != nil {
			return s.end(ctx, err)
		}
		c, err := s.decode(data)
		if err != nil {
			return err
		}
		if c.Text == "" && c.FinishReason == "" && c.Event == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		c.Pending = s.sse.buffered() > 0
		if err := emit(c); err != nil {
			return err
		}
	}
}

// end says whether the stream ended well, given the reader's error.
func (s *stream) end(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, errDone):
		s.done = true
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, io.EOF) && (s.finish != "" || s.usage != nil):
		// No [DONE], but the engine said the output was complete.
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return inference.Errorf(inference.CodeEngine, "engine stream ended early")
	case errors.Is(err, errLineTooLong), errors.Is(err, errEventTooLarge):
		return inference.Errorf(inference.CodeEngine, "%v", err)
	}
	return inference.Errorf(inference.CodeEngine, "reading engine stream: %v", err)
}

// decode reads one event: the chunk to emit, if any, and the usage.
func (s *stream) decode(data []byte) (inference.Chunk, error) {
	if len(data) == 0 {
		return inference.Chunk{}, nil
	}
	var ev streamEvent
	ok, plain := decodeFast(data, &ev)
	if !ok {
		ev = streamEvent{} // the fast path may have filled part of it
		if err := json.Unmarshal(data, &ev); err != nil {
			return inference.Chunk{}, inference.Errorf(inference.CodeEngine, "engine sent a malformed chunk")
		}
		plain = false // an odd shape: passed on as it is, if it has choices
	}
	if len(ev.Error) > 0 && string(ev.Error) != "null" {
		msg, param, status := parseError(data)
		if status == 0 {
			if msg == "" {
				msg = "no message"
			}
			return inference.Chunk{}, inference.Errorf(inference.CodeEngine, "engine failed: %s", msg)
		}
		return inference.Chunk{}, statusError(status, msg, param)
	}
	if u := ev.Usage; u != nil {
		s.usage = &inference.Usage{Tokens: payments.Tokens{
			Prompt:     max(u.PromptTokens, 0),
			Completion: max(u.CompletionTokens, 0),
		}}
		if d := u.PromptTokensDetails; d != nil {
			s.usage.Cached = max(d.CachedTokens, 0)
		}
		if d := u.CompletionTokensDetails; d != nil {
			s.usage.Reasoning = max(d.ReasoningTokens, 0)
		}
	}
	if len(ev.Choices) == 0 {
		return inference.Chunk{}, nil
	}
	var c inference.Chunk
	for _, ch := range ev.Choices {
		text := ch.Delta.Content
		if s.kind == inference.KindCompletion {
			text = ch.Text
		}
		if text != "" || !plain {
			s.deltas++
		}
		if ch.Index != 0 {
			continue
		}
		c.Text = text
		c.FinishReason = ch.FinishReason
		if len(c.FinishReason) > maxFinishReason {
			c.FinishReason = c.FinishReason[:maxFinishReason]
		}
		if c.FinishReason != "" {
			s.finish = c.FinishReason
		}
	}
	if plain && len(ev.Choices) == 1 && ev.Choices[0].Index == 0 && ev.SystemFingerprint == s.fingerprint &&
		(s.kind == inference.KindChat && ev.Choices[0].Text == "" || s.kind == inference.KindCompletion && ev.Choices[0].Delta.Content == "") &&
		len(ev.Choices[0].FinishReason) <= maxFinishReason {
		return c, nil
	}
	if len(data) > inference.MaxEventBytes {
		return inference.Chunk{}, inference.Errorf(inference.CodeEngine, "engine sent an event of %d bytes, over %d", len(data), inference.MaxEventBytes)
	}
	s.fingerprint = ev.SystemFingerprint
	return inference.Chunk{Event: bytes.Clone(data)}, nil
}

// result is the stream's result for a request with the given body.
//
// When the engine sent no usage the backend counts it, and marks it
// Counted: the completion is one token per content delta, since engines
// stream about one token per delta; the prompt is estimated from its text,
// see estimatePromptTokens.
func (s *stream) result(body []byte) inference.Result {
	res := inference.Result{FinishReason: s.finish}
	if s.usage != nil {
		res.Usage = *s.usage
		return res
	}
	res.Usage = inference.Usage{
		Tokens:  payments.Tokens{Prompt: estimatePromptTokens(body), Completion: s.deltas},
		Counted: true,
	}
	return res
}

// estimatePromptTokens is inference.EstimatePromptTokens.
func estimatePromptTokens(body []byte) int64 { return inference.EstimatePromptTokens(body) }
