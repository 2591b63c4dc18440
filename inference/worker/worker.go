// Package worker serves the inference protocol on a worker node: it takes
// requests from proxies, sealed to this worker or in the clear, runs them
// on the node's Backend and streams the output back (sealed to the client
// when the request was), flushing whenever the backend has nothing more
// ready.
package worker

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Config configures a worker server.
type Config struct {
	Network       string
	MaxConcurrent int              // requests run at once; more are refused as overloaded
	MaxDuration   time.Duration    // the longest one request may stream
	Now           func() time.Time // the clock of the measurements; time.Now if nil
	// Receipts, if set, makes the worker sign a receipt for every answer.
	Receipts *Receipts
	// Keys opens sealed requests: the keyring whose public keys the
	// worker's evidence binds. Nil: sealed requests are refused.
	Keys Keys
}

// Keys opens requests sealed to the worker's attested sealing keys.
// *seal.Keyring implements it.
type Keys interface {
	OpenRequest(sr *seal.SealedRequest, self seal.Binding, header []byte) ([]byte, *seal.ResponseSealer, error)
}

// Receipts is what a worker signs its receipts with: its peer key, and the
// price it asks for each model (from its offer).
type Receipts struct {
	Key    crypto.PrivKey
	Prices Prices
}

// Prices is what the worker asks per model (from its config); used for
// receipts.
type Prices interface {
	Price(model string) payments.Price
}

// Settler is a worker's payment channels; nil when payments are off.
// *channels.Manager implements it.
type Settler interface {
	// Admit says whether proxy may be served (paid up, within credit); an
	// error is answered as CodePaymentRequired.
	Admit(proxy peer.ID) error
	// Served records that proxy owes amount nanoTON for an answer the
	// worker signed a receipt for: the worker's amount, its tokens at its
	// price.
	Served(proxy peer.ID, amount uint64)
}

// Server serves inference and catalog streams for one backend.
type Server struct {
	cfg      Config
	serveCfg inference.ServeConfig
	self     peer.ID
	selfStr  string  // self.String(), which base58-encodes on every call
	settler  Settler // nil: payments are off
	log      *slog.Logger

	// live is what Update changes while serving: the backend and the
	// capacity. A request uses the one it started with.
	live     atomic.Pointer[live]
	draining atomic.Bool // Drain: new requests refused
	active   atomic.Int64

	mu        sync.Mutex // guards simulated and stats
	simulated map[string]bool
	stats     Stats
}

// Stats are what the worker measured of its engine, announced in its
// offers: moving averages over recent successful requests.
type Stats struct {
	TTFT         time.Duration // time to first chunk
	TokensPerSec float64       // completion tokens per second after the first chunk
	Served       int64         // requests answered in full
}

// statsWeight is the weight of the newest request in the moving averages.
const statsWeight = 0.2

// Stats returns the current measurements; zero until a request succeeds.
func (w *Server) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// measure folds one successful request into the moving averages.
func (w *Server) measure(ttft, total time.Duration, completion int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.stats
	var tps float64
	if gen := total - ttft; gen > 0 && completion > 1 {
		tps = float64(completion-1) / gen.Seconds()
	}
	if s.Served == 0 {
		s.TTFT, s.TokensPerSec = ttft, tps
	} else {
		s.TTFT = time.Duration((1-statsWeight)*float64(s.TTFT) + statsWeight*float64(ttft))
		if tps > 0 {
			s.TokensPerSec = (1-statsWeight)*s.TokensPerSec + statsWeight*tps
		}
	}
	s.Served++
}

// New serves backend as peer self to any peer: proxies need no evidence
// (what they relay is sealed to this worker), and settler, when payments
// are on, admits only those that pay. settler is nil when payments are
// off: callers pass a nil interface, not a nil pointer in one.
func New(cfg Config, self peer.ID, backend inference.Backend, settler Settler, log *slog.Logger) *Server {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 64
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 30 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sc := inference.DefaultServeConfig()
	sc.MaxDuration = cfg.MaxDuration
	w := &Server{cfg: cfg, serveCfg: sc, self: self, selfStr: self.String(),
		settler: settler, log: log.With("component", "worker"), simulated: make(map[string]bool)}
	w.live.Store(&live{backend: backend, maxConcurrent: cfg.MaxConcurrent})
	return w
}

// live is the part of a worker an operator changes without a restart.
type live struct {
	backend       inference.Backend
	maxConcurrent int
}

// Update changes the backend (nil keeps it) and the capacity (0 keeps it)
// of a serving worker: requests that started keep what they started with.
func (w *Server) Update(backend inference.Backend, maxConcurrent int) {
	cur := w.live.Load()
	next := *cur
	if backend != nil {
		next.backend = backend
	}
	if maxConcurrent > 0 {
		next.maxConcurrent = maxConcurrent
	}
	w.live.Store(&next)
}

// Capacity is how many requests the worker runs at once.
func (w *Server) Capacity() int { return w.live.Load().maxConcurrent }

// Drain refuses every new request (as overloaded, so proxies go to
// another worker); those being served run to their end. Active tells when
// none is left.
func (w *Server) Drain() { w.draining.Store(true) }

// Draining reports whether Drain was called.
func (w *Server) Draining() bool { return w.draining.Load() }

// Register serves the inference and catalog protocols on sv.
func (w *Server) Register(sv *p2p.Service) {
	// No stream deadline: a stream carries many requests, each bounded by
	// MaxDuration in ServeRequests.
	sv.Handle(p2p.ProtocolID(w.cfg.Network, inference.ProtocolName, inference.ProtocolVersion), 0, w.serveInference)
	sv.Handle(p2p.ProtocolID(w.cfg.Network, inference.CatalogProtocolName, inference.CatalogProtocolVersion), 10*time.Second, w.serveCatalog)
}

// Active is the number of requests being served.
func (w *Server) Active() int { return int(w.active.Load()) }

// Catalog is what the worker announces.
func (w *Server) Catalog(ctx context.Context) (*inference.Catalog, error) {
	lv := w.live.Load()
	models, err := lv.backend.Models(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing backend models: %w", err)
	}
	w.mu.Lock()
	for _, m := range models {
		w.simulated[m.ID] = m.Simulated
	}
	w.mu.Unlock()
	return &inference.Catalog{Models: models, MaxConcurrent: lv.maxConcurrent, Active: w.Active()}, nil
}

func (w *Server) serveCatalog(ctx context.Context, s network.Stream) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := w.Catalog(ctx)
	if err != nil {
		return err
	}
	return inference.ServeCatalog(s, c)
}

func (w *Server) serveInference(ctx context.Context, s network.Stream) error {
	remote := s.Conn().RemotePeer()
	return inference.ServeRequests(ctx, s, w.serveCfg, func() *inference.Error { return nil },
		func(ctx context.Context, req *inference.Request, fw *p2p.FrameWriter) error {
			return w.serveOne(ctx, remote, req, fw)
		})
}

func (w *Server) serveOne(ctx context.Context, remote peer.ID, req *inference.Request, fw *p2p.FrameWriter) error {
	fail := func(e *inference.Error) error {
		if err := inference.WriteError(fw, e); err != nil {
			return err
		}
		return fw.Flush()
	}
	// Built only when something is logged: With formats its attributes.
	log := func() *slog.Logger { return w.log.With("request", req.ID, "model", req.Model, "peer", remote) }

	if w.settler != nil {
		if err := w.settler.Admit(remote); err != nil {
			return fail(inference.Errorf(inference.CodePaymentRequired, "payment required: %v", err))
		}
	}
	lv := w.live.Load()
	if w.draining.Load() {
		return fail(inference.Errorf(inference.CodeOverloaded, "worker draining: it takes no new requests"))
	}
	if n := w.active.Add(1); n > int64(lv.maxConcurrent) {
		w.active.Add(-1)
		return fail(inference.Errorf(inference.CodeOverloaded, "worker at capacity (%d requests)", lv.maxConcurrent))
	}
	var sealer *seal.ResponseSealer // nil: the request came in the clear
	if req.Sealed {
		body, rs, e := w.open(req)
		if e != nil {
			w.active.Add(-1)
			log().Info("sealed request refused", "code", e.Code, "err", e.Message)
			return fail(e)
		}
		sealed := *req
		sealed.Body, sealed.Sealed = body, false
		req, sealer = &sealed, rs
	}
	if e := checkMaxTokens(req); e != nil {
		w.active.Add(-1)
		log().Info("request refused", "code", e.Code, "err", e.Message)
		return fail(e)
	}
	// The slot is freed as soon as the backend returns, before the final
	// frame goes out: a requester that reads that frame and sends its next
	// request must find the slot free. The deferred call covers a backend
	// that panics (the service recovers it).
	release := sync.OnceFunc(func() { w.active.Add(-1) })
	defer release()

	start := w.cfg.Now()
	var first time.Time
	var scratch []byte
	var plain, sealed []byte // a sealed answer's next record, in the clear and sealed
	if sealer != nil {
		bufs := recordBufs.Get().(*[2][]byte)
		plain, sealed = bufs[0][:0], bufs[1][:0]
		defer func() {
			if cap(plain) <= 2*maxRecord && cap(sealed) <= 2*maxRecord+seal.RecordOverhead {
				bufs[0], bufs[1] = plain, sealed
				recordBufs.Put(bufs)
			}
		}()
	}
	var content hash.Hash // of the streamed text and events, for the receipt
	if w.cfg.Receipts != nil {
		content = sha256.New()
	}
	chunks := 0
	var text []byte // c.Text for the hash, reused: the hash takes no string
	emit := func(c inference.Chunk) error {
		if chunks == 0 {
			first = w.cfg.Now()
		}
		if content != nil {
			text = append(text[:0], c.Text...)
			content.Write(text)
			content.Write(c.Event)
		}
		chunks++
		if sealer != nil {
			// Chunks the backend has ready at once share a record, as
			// they share a flush.
			plain = inference.AppendSealedChunk(plain, c)
			if c.Pending && len(plain) < maxRecord {
				return nil
			}
			var err error
			if sealed, err = sealRecord(sealer, fw, &plain, sealed); err != nil {
				return err
			}
			if c.Pending {
				return nil
			}
			return fw.Flush()
		}
		if c.Event != nil {
			if err := fw.Write(inference.FrameEvent, c.Event); err != nil {
				return err
			}
		} else {
			scratch = inference.AppendChunk(scratch[:0], c)
			if err := fw.Write(inference.FrameChunk, scratch); err != nil {
				return err
			}
		}
		if c.Pending {
			return nil
		}
		return fw.Flush()
	}
	res, err := lv.backend.Generate(ctx, req, emit)
	release()
	if err != nil && inference.Stopped(ctx) {
		// The requester's app went away mid-answer: the answer ends as it
		// is, billed for what was streamed, counted here since the engine
		// reports usage only at its end.
		log().Debug("request stopped by requester", "chunks", chunks)
		res = inference.Result{Usage: inference.Usage{Counted: true, Tokens: payments.Tokens{
			Prompt: inference.EstimatePromptTokens(req.Body), Completion: int64(chunks)}}}
		err = nil
	}
	if err != nil {
		if ctx.Err() != nil {
			log().Debug("request cancelled by requester", "chunks", chunks)
			return fmt.Errorf("requester went away: %w", ctx.Err())
		}
		e := inference.AsError(err, inference.CodeEngine)
		log().Info("backend failed", "code", e.Code, "chunks", chunks, "err", err)
		if sealer != nil { // what was streamed reaches the client before the error
			if _, err := sealRecord(sealer, fw, &plain, sealed); err != nil {
				return err
			}
		}
		return fail(e)
	}
	w.mu.Lock()
	sim := w.simulated[req.Model]
	w.mu.Unlock()
	end := &inference.End{Usage: res.Usage, FinishReason: res.FinishReason, Simulated: sim, Worker: w.selfStr}
	if content != nil {
		r, signed, err := w.receipt(req, remote, res.Usage, content)
		if err != nil {
			log().Warn("signing the receipt", "err", err)
		}
		end.Receipt = signed
		if err == nil {
			w.served(remote, r)
		}
	}
	if sealer != nil {
		// The sealed end record comes before the End frame in the clear:
		// a proxy that cuts the answer short and sends an End of its own
		// is caught by the client, which has not seen the end record.
		if _, err := sealRecord(sealer, fw, &plain, sealed); err != nil {
			return err
		}
		rec, err := sealer.End()
		if err != nil {
			return err
		}
		if err := fw.Write(inference.FrameRecord, rec); err != nil {
			return err
		}
	}
	// Counted before the End goes out: whoever reads the End and then
	// asks this worker's status finds the answer served.
	if chunks > 0 {
		end := w.cfg.Now()
		w.measure(first.Sub(start), end.Sub(start), res.Usage.Completion)
	}
	if err := inference.WriteEnd(fw, end); err != nil {
		return err
	}
	if err := fw.Flush(); err != nil {
		return err
	}
	if w.log.Enabled(ctx, slog.LevelDebug) {
		log().Debug("request served", "chunks", chunks, "prompt_tokens", res.Usage.Prompt,
			"completion_tokens", res.Usage.Completion, "duration", w.cfg.Now().Sub(start))
	}
	return nil
}

// maxRecord bounds the chunks one sealed record carries, in bytes of
// plaintext; a record is sealed once it holds this much even if the
// backend has more ready.
const maxRecord = 32 << 10

// recordBufs holds the buffers a sealed answer's records are built in.
var recordBufs = sync.Pool{New: func() any { return &[2][]byte{make([]byte, 0, 8<<10), make([]byte, 0, 8<<10)} }}

// sealRecord seals the chunks in *plain, if any, into one record written
// to fw (not flushed), and empties *plain. buf is scratch for the record;
// it returns it grown.
func sealRecord(sealer *seal.ResponseSealer, fw *p2p.FrameWriter, plain *[]byte, buf []byte) ([]byte, error) {
	if len(*plain) == 0 {
		return buf, nil
	}
	buf, err := sealer.AppendSeal(buf[:0], *plain)
	if err != nil {
		return buf, err
	}
	*plain = (*plain)[:0]
	return buf, fw.Write(inference.FrameRecord, buf)
}

// open opens a sealed request: its body, and the sealer of its answer.
// The request ID the header names must be the one the seal binds. A
// request the worker is not a candidate for (ErrNoRecipient) or cannot
// take now (ErrBusy) is answered with a code the proxy retries on another
// candidate; the rest cannot succeed anywhere as sent.
func (w *Server) open(req *inference.Request) ([]byte, *seal.ResponseSealer, *inference.Error) {
	if w.cfg.Keys == nil {
		return nil, nil, inference.Errorf(inference.CodeBadRequest, "worker %s takes no sealed requests", w.self)
	}
	sr, err := seal.ParseSealedRequest(req.Body) // the body is the request's own copy
	if err != nil {
		return nil, nil, inference.Errorf(inference.CodeBadRequest, "sealed request: %v", err)
	}
	if sr.RequestID != req.ID {
		return nil, nil, inference.Errorf(inference.CodeBadRequest, "sealed request %q arrived as request %q", sr.RequestID, req.ID)
	}
	head := *req
	head.Body = nil
	header, err := inference.AppendHeader(nil, &head)
	if err != nil {
		return nil, nil, inference.Errorf(inference.CodeBadRequest, "sealed request header: %v", err)
	}
	body, rs, err := w.cfg.Keys.OpenRequest(sr, seal.Binding{Network: w.cfg.Network, Peer: w.selfStr}, header)
	switch {
	case err == nil:
		return body, rs, nil
	case errors.Is(err, seal.ErrNoRecipient):
		return nil, nil, inference.Errorf(inference.CodeNotCandidate, "%v", err)
	case errors.Is(err, seal.ErrBusy):
		return nil, nil, inference.Errorf(inference.CodeOverloaded, "%v", err)
	case errors.Is(err, seal.ErrUnknownSession):
		return nil, nil, inference.Errorf(inference.CodeSessionUnknown, "%v", err)
	}
	return nil, nil, inference.Errorf(inference.CodeSealFailed, "%v", err)
}

// receipt signs the receipt of one answer.
func (w *Server) receipt(req *inference.Request, proxy peer.ID, u inference.Usage, content hash.Hash) (*payments.Receipt, []byte, error) {
	r := &payments.Receipt{
		RequestID:   req.ID,
		RequestHash: payments.Hash(req.Body),
		Model:       req.Model,
		Tokens:      u.Billed(),
		Price:       w.cfg.Receipts.Prices.Price(req.Model),
		Worker:      w.self,
		Proxy:       proxy,
		Time:        w.cfg.Now().UnixMilli(),
	}
	content.Sum(r.ResponseHash[:0])
	signed, err := payments.Sign(r, w.cfg.Receipts.Key)
	return r, signed, err
}

// served tells the settler what proxy owes for the answer r signs: the
// worker's amount, its tokens at its price.
func (w *Server) served(proxy peer.ID, r *payments.Receipt) {
	if w.settler == nil {
		return
	}
	if b, err := payments.Cost(r.Tokens, r.Price, 0); err == nil && b.Worker > 0 {
		w.settler.Served(proxy, uint64(b.Worker))
	}
}

// checkMaxTokens refuses a request whose header caps its completion
// (MaxTokens, what the proxy reserved payment for) while its body lets
// the engine write more, or sets no cap: the answer could cost more than
// its payer set aside.
func checkMaxTokens(req *inference.Request) *inference.Error {
	if req.MaxTokens == 0 {
		return nil
	}
	limit, ok := inference.CompletionCap(req.Kind, req.Body)
	switch {
	case !ok:
		return &inference.Error{Code: inference.CodeBadRequest, Param: "max_tokens",
			Message: fmt.Sprintf("the request's header caps its completion at %d tokens, and its body sets no max_tokens", req.MaxTokens)}
	case limit > req.MaxTokens:
		return &inference.Error{Code: inference.CodeBadRequest, Param: "max_tokens",
			Message: fmt.Sprintf("the body asks for up to %d completion tokens, over the %d its header states", limit, req.MaxTokens)}
	}
	return nil
}
