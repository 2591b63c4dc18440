package inference

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
)

// ProtocolName is the inference protocol's name in
// /cocoon/<network>/inference/1.
const (
	ProtocolName    = "inference"
	ProtocolVersion = "1"
)

// Frame types of the inference protocol.
const (
	FrameRequest byte = 1
	FrameChunk   byte = 2
	FrameEnd     byte = 3
	FrameError   byte = 4
	// FrameRecord carries one sealed answer record (seal.ResponseSealer),
	// the answer to a sealed request: its chunks and its end, which only
	// the client can open. Hops relay it as it is.
	FrameRecord byte = 5
	// FrameEvent carries an engine event passed through (Chunk.Event): a
	// JSON object, in the clear. A sealed answer carries events inside its
	// records instead.
	FrameEvent byte = 6
	// FrameStop, from the requester while its request is served (empty):
	// stop generating and end the answer as it is, with an End and a
	// receipt for what was streamed. An app that hangs up mid-answer pays
	// for what it got; a requester that resets the stream instead gets
	// nothing more. A Stop that arrives after the answer ended is ignored.
	FrameStop byte = 7
)

// MaxEmbeddingAnswer caps an engine's answer to an embedding request,
// which travels in Chunk texts of a few hundred KiB and is reassembled by
// the client node: a hundred inputs of 4,096 dimensions, written as JSON
// numbers, are about 8 MiB.
const MaxEmbeddingAnswer = 32 << 20

// MaxEventBytes caps an engine event passed through: far above what
// engines send (a token's logprobs with 20 alternatives is about 2 KiB),
// and well inside a frame.
const MaxEventBytes = 256 << 10

// Size caps. A request body is capped where the client accepts it (4 MiB);
// the frame adds its header, and sealing adds its wraps (about 1.2 KiB per
// candidate, 16 at most) and a tag.
const (
	MaxBodyBytes    = 4 << 20
	MaxRequestFrame = MaxBodyBytes + 64<<10
	MaxChunkFrame   = 1 << 20
	maxHeaderBytes  = 4096
)

// ErrMalformed is returned for a message that does not decode. Retrying
// the same bytes cannot help.
var ErrMalformed = errors.New("malformed message")

// A Request frame's payload is: a head byte, uvarint length and bytes of
// the ID, the same of the model, the optional fields the head announces,
// then the body. It is binary so that hops forward requests without a JSON
// round trip.
//
// The head byte carries the kind in its low four bits and flags in its high
// four. A flag announces an optional field, written after the model in flag
// order: reqMaxPrice, a uvarint max price; reqMinTier, one byte holding an
// attest.Tier (1 dev, 2 tee, 3 tee-gpu); reqMaxTokens, a uvarint cap on the
// answer's completion tokens. An encoder sets a flag only when
// its field is not zero, so a request without optional fields encodes as
// before flags existed. A decoder refuses flags it does not know: an
// optional field changes what the request asks for, and a hop that cannot
// honour it must not serve the request as if it were absent.
//
// The four flag bits are all taken: a further optional field needs a new
// protocol version.
//
// A third flag, reqSealed, carries no field: it says the body is a sealed
// request (seal.AppendSealedRequest) rather than the app's JSON. The
// header before it is then the routing header the seal binds
// (AppendHeader's bytes): hops read it and forward it unchanged, and a
// worker that gets a header other than the one the client sealed with
// cannot open the body.
const (
	maxIDBytes    = 128
	maxModelBytes = 256

	reqKindMask  = 0x0f
	reqMaxPrice  = 0x10
	reqMinTier   = 0x20
	reqSealed    = 0x40
	reqMaxTokens = 0x80
	reqFlagsMask = reqMaxPrice | reqMinTier | reqSealed | reqMaxTokens
)

// AppendRequest encodes req as a Request frame payload. It refuses what
// DecodeRequest would refuse, so a bad request fails at its source.
func AppendRequest(dst []byte, req *Request) ([]byte, error) {
	dst, err := AppendHeader(dst, req)
	if err != nil {
		return nil, err
	}
	return append(dst, req.Body...), nil
}

// AppendHeader encodes req's routing header, a Request frame payload
// without the body: what a proxy reads to route a sealed request, and what
// its seal binds. Each header has one encoding, so a worker re-encodes the
// header it decoded to check the seal.
func AppendHeader(dst []byte, req *Request) ([]byte, error) {
	if err := checkHeader(req); err != nil {
		return nil, err
	}
	head := byte(req.Kind)
	if req.Sealed {
		head |= reqSealed
	}
	if req.MaxPrice != 0 {
		head |= reqMaxPrice
	}
	if req.MinTier != 0 {
		head |= reqMinTier
	}
	if req.MaxTokens != 0 {
		head |= reqMaxTokens
	}
	dst = append(dst, head)
	dst = binary.AppendUvarint(dst, uint64(len(req.ID)))
	dst = append(dst, req.ID...)
	dst = binary.AppendUvarint(dst, uint64(len(req.Model)))
	dst = append(dst, req.Model...)
	if req.MaxPrice != 0 {
		dst = binary.AppendUvarint(dst, uint64(req.MaxPrice))
	}
	if req.MinTier != 0 {
		dst = append(dst, byte(req.MinTier))
	}
	if req.MaxTokens != 0 {
		dst = binary.AppendUvarint(dst, uint64(req.MaxTokens))
	}
	return dst, nil
}

// checkHeader checks the fields a request's header carries.
func checkHeader(req *Request) error {
	switch {
	case !req.Kind.Valid():
		return fmt.Errorf("%w: request kind %d", ErrMalformed, req.Kind)
	case req.Model == "":
		return fmt.Errorf("%w: request without model", ErrMalformed)
	case len(req.Model) > maxModelBytes || !utf8.ValidString(req.Model):
		return fmt.Errorf("%w: model name must be valid UTF-8 of at most %d bytes", ErrMalformed, maxModelBytes)
	case len(req.ID) > maxIDBytes || !utf8.ValidString(req.ID):
		return fmt.Errorf("%w: request ID must be valid UTF-8 of at most %d bytes", ErrMalformed, maxIDBytes)
	case req.MaxPrice < 0:
		return fmt.Errorf("%w: negative max price %d", ErrMalformed, req.MaxPrice)
	case req.MaxTokens < 0 || req.MaxTokens > MaxTokensCap:
		return fmt.Errorf("%w: max tokens %d outside 0 to %d", ErrMalformed, req.MaxTokens, MaxTokensCap)
	case req.MinTier > attest.TierTEEGPU:
		return fmt.Errorf("%w: unknown minimum trust tier %d", ErrMalformed, req.MinTier)
	}
	return nil
}

// DecodeRequest decodes a Request frame payload. The body is copied.
func DecodeRequest(p []byte) (*Request, error) {
	if len(p) < 1 {
		return nil, fmt.Errorf("%w: empty request", ErrMalformed)
	}
	head := p[0]
	if head&^(reqKindMask|reqFlagsMask) != 0 {
		return nil, fmt.Errorf("%w: request flags %#x", ErrMalformed, head&^reqKindMask)
	}
	kind := Kind(head & reqKindMask)
	p = p[1:]
	field := func(max int) (string, error) {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(max) || n > uint64(len(p)-k) {
			return "", fmt.Errorf("%w: request header field length", ErrMalformed)
		}
		v := string(p[k : k+int(n)])
		p = p[k+int(n):]
		return v, nil
	}
	id, err := field(maxIDBytes)
	if err != nil {
		return nil, err
	}
	model, err := field(maxModelBytes)
	if err != nil {
		return nil, err
	}
	var maxPrice int64
	if head&reqMaxPrice != 0 {
		// Zero is written by leaving the flag out, so a flagged zero is
		// refused: each request has one encoding.
		n, k := binary.Uvarint(p)
		if k <= 0 || n == 0 || n > math.MaxInt64 {
			return nil, fmt.Errorf("%w: request max price", ErrMalformed)
		}
		maxPrice = int64(n)
		p = p[k:]
	}
	var minTier attest.Tier
	if head&reqMinTier != 0 {
		// As with the max price, a flagged zero is refused; so is a tier
		// this node does not know, which it could not honour.
		if len(p) < 1 || p[0] == 0 {
			return nil, fmt.Errorf("%w: request minimum trust tier", ErrMalformed)
		}
		minTier = attest.Tier(p[0])
		p = p[1:]
	}
	var maxTokens int64
	if head&reqMaxTokens != 0 {
		n, k := binary.Uvarint(p)
		if k <= 0 || n == 0 || n > MaxTokensCap {
			return nil, fmt.Errorf("%w: request max tokens", ErrMalformed)
		}
		maxTokens = int64(n)
		p = p[k:]
	}
	req := &Request{ID: id, Kind: kind, Model: model, MaxPrice: maxPrice, MinTier: minTier, MaxTokens: maxTokens, Sealed: head&reqSealed != 0}
	if err := checkHeader(req); err != nil {
		return nil, err
	}
	req.Body = append([]byte(nil), p...)
	return req, nil
}

// MaxFinishReason is the longest finish reason a chunk carries; longer
// ones are cut.
const MaxFinishReason = 64

// AppendChunk encodes c as a Chunk frame payload.
func AppendChunk(dst []byte, c Chunk) []byte {
	finish := c.FinishReason
	if len(finish) > MaxFinishReason {
		finish = finish[:MaxFinishReason]
	}
	dst = binary.AppendUvarint(dst, uint64(len(finish)))
	dst = append(dst, finish...)
	return append(dst, c.Text...)
}

// DecodeChunk splits a Chunk frame payload without copying: text and
// finish alias p.
func DecodeChunk(p []byte) (text, finish []byte, err error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > MaxFinishReason || n > uint64(len(p)-k) {
		return nil, nil, fmt.Errorf("%w: chunk finish reason length", ErrMalformed)
	}
	return p[k+int(n):], p[k : k+int(n)], nil
}

// A sealed answer record's plaintext holds one or more chunks, those the
// worker had ready at once (as a Chunk or Event frame holds one): each a
// uvarint n, then n>>1 bytes: with n's low bit clear a Chunk frame's
// payload (AppendChunk), with it set an engine event (Chunk.Event).
// Sealing per flush rather than per chunk keeps the records, and their
// cost, to what the stream needs.

// AppendSealedChunk appends c to a sealed record's plaintext.
func AppendSealedChunk(dst []byte, c Chunk) []byte {
	if c.Event != nil {
		dst = binary.AppendUvarint(dst, uint64(len(c.Event))<<1|1)
		return append(dst, c.Event...)
	}
	n := len(c.FinishReason)
	n = min(n, MaxFinishReason)
	dst = binary.AppendUvarint(dst, uint64(uvarintLen(uint64(n))+n+len(c.Text))<<1)
	return AppendChunk(dst, c)
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// NextSealedChunk splits the first chunk off a sealed record's plaintext
// p: a FrameChunk or FrameEvent event, whose bytes alias p, and the rest
// of p.
func NextSealedChunk(p []byte) (Event, []byte, error) {
	n, k := binary.Uvarint(p)
	size := n >> 1
	if k <= 0 || size == 0 || size > uint64(len(p)-k) {
		return Event{}, nil, fmt.Errorf("%w: sealed chunk length", ErrMalformed)
	}
	body, rest := p[k:k+int(size)], p[k+int(size):]
	if n&1 == 1 {
		if size > MaxEventBytes {
			return Event{}, nil, fmt.Errorf("%w: sealed event over %d bytes", ErrMalformed, MaxEventBytes)
		}
		return Event{Type: FrameEvent, Text: body}, rest, nil
	}
	text, finish, err := DecodeChunk(body)
	if err != nil {
		return Event{}, nil, err
	}
	return Event{Type: FrameChunk, Text: text, Finish: finish}, rest, nil
}

// End is the last message of a successful response.
type End struct {
	Usage        Usage  `json:"usage"`
	FinishReason string `json:"finish_reason,omitempty"`
	Simulated    bool   `json:"simulated,omitempty"`
	Worker       string `json:"worker,omitempty"` // the worker's peer ID, filled in by the worker
	Tier         string `json:"tier,omitempty"`   // the trust tier the proxy verified for that worker
	// Cost is what the answer costs, filled in by the proxy from the
	// worker's prices and its own fee; nil when it knows no price.
	Cost *payments.Bill `json:"cost,omitempty"`
	// Receipt is the worker's signed receipt for the answer
	// (payments.Receipt, signed); nil when the worker signs none.
	Receipt []byte `json:"receipt,omitempty"`
}

// Event is one decoded message of a response. Text aliases the reader's
// buffer and is valid until the next call to Next; for a FrameRecord it is
// the sealed record, for a FrameEvent the engine's event.
type Event struct {
	Type   byte // FrameChunk, FrameEvent, FrameRecord, FrameEnd or FrameError
	Text   []byte
	Finish []byte
	End    *End
	Err    *Error
}

// ResponseReader decodes the server's side of an inference stream read
// straight from a stream; requesters use a Pool's Call instead.
type ResponseReader struct {
	fr *p2p.FrameReader
}

// NewResponseReader reads a response from r.
func NewResponseReader(r io.Reader) *ResponseReader {
	return &ResponseReader{fr: p2p.NewFrameReader(r, MaxChunkFrame, 16<<10)}
}

// Next returns the next event. A stream that ends without End or Error
// returns io.ErrUnexpectedEOF.
func (rr *ResponseReader) Next() (Event, error) {
	typ, p, err := rr.fr.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Event{}, io.ErrUnexpectedEOF
		}
		return Event{}, err
	}
	return DecodeEvent(typ, p)
}

// Buffered reports whether more input is already waiting.
func (rr *ResponseReader) Buffered() bool { return rr.fr.Buffered() > 0 }

// DecodeEvent decodes one response frame.
func DecodeEvent(typ byte, p []byte) (Event, error) {
	switch typ {
	case FrameChunk:
		text, finish, err := DecodeChunk(p)
		return Event{Type: FrameChunk, Text: text, Finish: finish}, err
	case FrameEnd:
		e, err := DecodeEnd(p)
		if err != nil {
			return Event{}, err
		}
		return Event{Type: FrameEnd, End: e}, nil
	case FrameRecord:
		return Event{Type: FrameRecord, Text: p}, nil
	case FrameEvent:
		if len(p) == 0 || len(p) > MaxEventBytes {
			return Event{}, fmt.Errorf("%w: event of %d bytes", ErrMalformed, len(p))
		}
		return Event{Type: FrameEvent, Text: p}, nil
	case FrameError:
		var e Error
		if err := json.Unmarshal(p, &e); err != nil {
			return Event{}, fmt.Errorf("%w: error: %v", ErrMalformed, err)
		}
		if e.Code == 0 {
			e.Code = CodeInternal
		}
		return Event{Type: FrameError, Err: &e}, nil
	}
	return Event{}, fmt.Errorf("%w: unexpected frame type %d", ErrMalformed, typ)
}

// WriteError buffers an Error frame.
func WriteError(fw *p2p.FrameWriter, e *Error) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return fw.Write(FrameError, b)
}

// WriteEnd buffers an End frame.
func WriteEnd(fw *p2p.FrameWriter, e *End) error {
	var scratch [128]byte
	return fw.Write(FrameEnd, AppendEnd(scratch[:0], e))
}

// An End frame's payload is binary, like a request's header: a flags byte
// (1 counted, 2 simulated, 4 cost, 8 receipt, 16 reasoning), uvarints
// prompt, completion and cached tokens, then with flag 16 a uvarint of
// reasoning tokens, then uvarint-length strings finish reason, worker and
// tier, then with flag 4 uvarints worker cost and proxy fee in nanoTON, then
// with flag 8 a uvarint-length signed receipt.
const (
	endCounted   = 1
	endSimulated = 2
	endCost      = 4
	endReceipt   = 8
	endReasoning = 16
	maxReceipt   = 4096
	maxCost      = 1 << 62 // nanoTON; far above any real answer
	maxWorkerID  = 128
	maxTierName  = 16
)

// AppendEnd encodes e as an End frame payload; strings over their caps are
// cut, negative counts become zero.
func AppendEnd(dst []byte, e *End) []byte {
	var flags byte
	if e.Usage.Counted {
		flags |= endCounted
	}
	if e.Simulated {
		flags |= endSimulated
	}
	if e.Cost != nil {
		flags |= endCost
	}
	receipt := e.Receipt
	if len(receipt) > maxReceipt {
		receipt = nil // a receipt cut short would be worthless
	}
	if len(receipt) > 0 {
		flags |= endReceipt
	}
	if e.Usage.Reasoning > 0 {
		flags |= endReasoning
	}
	dst = append(dst, flags)
	for _, n := range []int64{e.Usage.Prompt, e.Usage.Completion, e.Usage.Cached} {
		dst = binary.AppendUvarint(dst, uint64(max(n, 0)))
	}
	if e.Usage.Reasoning > 0 {
		dst = binary.AppendUvarint(dst, uint64(e.Usage.Reasoning))
	}
	for _, f := range []struct {
		s   string
		max int
	}{{e.FinishReason, MaxFinishReason}, {e.Worker, maxWorkerID}, {e.Tier, maxTierName}} {
		v := f.s
		if len(v) > f.max {
			v = v[:f.max]
		}
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	if e.Cost != nil {
		dst = binary.AppendUvarint(dst, uint64(min(max(e.Cost.Worker, 0), maxCost)))
		dst = binary.AppendUvarint(dst, uint64(min(max(e.Cost.Fee, 0), maxCost)))
	}
	if len(receipt) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(receipt)))
		dst = append(dst, receipt...)
	}
	return dst
}

// DecodeEnd decodes an End frame payload.
func DecodeEnd(p []byte) (*End, error) {
	bad := func(what string) (*End, error) { return nil, fmt.Errorf("%w: end: %s", ErrMalformed, what) }
	if len(p) < 1 || p[0]&^(endCounted|endSimulated|endCost|endReceipt|endReasoning) != 0 {
		return bad("flags")
	}
	hasReasoning := p[0]&endReasoning != 0
	e := &End{Simulated: p[0]&endSimulated != 0}
	hasCost, hasReceipt := p[0]&endCost != 0, p[0]&endReceipt != 0
	e.Usage.Counted = p[0]&endCounted != 0
	p = p[1:]
	const maxTokens = 1 << 40
	for _, dst := range []*int64{&e.Usage.Prompt, &e.Usage.Completion, &e.Usage.Cached} {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > maxTokens {
			return bad("token count")
		}
		*dst = int64(n)
		p = p[k:]
	}
	if hasReasoning {
		// As with other optional fields, a flagged zero is refused.
		n, k := binary.Uvarint(p)
		if k <= 0 || n == 0 || n > maxTokens {
			return bad("reasoning token count")
		}
		e.Usage.Reasoning = int64(n)
		p = p[k:]
	}
	for _, f := range []struct {
		dst *string
		max int
	}{{&e.FinishReason, MaxFinishReason}, {&e.Worker, maxWorkerID}, {&e.Tier, maxTierName}} {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(f.max) || n > uint64(len(p)-k) {
			return bad("string length")
		}
		*f.dst = string(p[k : k+int(n)])
		p = p[k+int(n):]
	}
	if hasCost {
		var parts [2]int64
		for i := range parts {
			n, k := binary.Uvarint(p)
			if k <= 0 || n > maxCost {
				return bad("cost")
			}
			parts[i] = int64(n)
			p = p[k:]
		}
		e.Cost = &payments.Bill{Worker: parts[0], Fee: parts[1], Total: parts[0] + parts[1]}
	}
	if hasReceipt {
		n, k := binary.Uvarint(p)
		if k <= 0 || n == 0 || n > maxReceipt || n > uint64(len(p)-k) {
			return bad("receipt length")
		}
		e.Receipt = append([]byte(nil), p[k:k+int(n)]...)
		p = p[k+int(n):]
	}
	if len(p) != 0 {
		return bad("trailing bytes")
	}
	return e, nil
}

// ErrUnattestedPeer is returned by handlers that refuse a peer without a
// live attestation verdict. The peer must attest first.
var ErrUnattestedPeer = errors.New("peer has not passed attestation")

// WriteRequest sends req on s and flushes it.
func WriteRequest(s network.Stream, req *Request) error {
	p, err := AppendRequest(nil, req)
	if err != nil {
		return err
	}
	return p2p.WriteFrame(s, FrameRequest, p)
}
