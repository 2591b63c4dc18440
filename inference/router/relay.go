package router

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
)

// serveInference serves a client's requests. Clients present no evidence:
// the proxy admits them by payment (the settler, when payments are on)
// and the serving limits of ServeRequests.
func (r *Router) serveInference(ctx context.Context, s network.Stream) error {
	client := s.Conn().RemotePeer()
	// Each write to the client has WriteTimeout: one that stops reading
	// fails the write, which ends its request and resets the worker's.
	s = deadlineStream{Stream: s, d: r.cfg.WriteTimeout}
	return inference.ServeRequests(ctx, s, r.serveCfg, func() *inference.Error { return nil },
		func(ctx context.Context, req *inference.Request, out *p2p.FrameWriter) error {
			return r.route(ctx, client, req, out)
		})
}

// route answers one request on out: from a worker, or with an error.
func (r *Router) route(ctx context.Context, client peer.ID, req *inference.Request, out *p2p.FrameWriter) error {
	// Built only when something is logged: With formats its attributes.
	log := func() *slog.Logger { return r.log.With("request", req.ID, "model", req.Model, "peer", client) }
	cl, perr := r.admit(client)
	if perr != nil {
		if err := inference.WriteError(out, perr); err != nil {
			return err
		}
		return out.Flush()
	}
	defer r.leave(client, cl)
	// The max price and the minimum tier are the proxy's to honour;
	// workers get the request without them, as they did before requests
	// carried them.
	if r.settler != nil {
		if err := r.settler.Admit(client); err != nil {
			if err := inference.WriteError(out, inference.Errorf(inference.CodePaymentRequired, "payment required: %v", err)); err != nil {
				return err
			}
			return out.Flush()
		}
	}
	// A sealed request goes to its worker as the client sent it: the seal
	// binds its header, max price and minimum tier included. Only the
	// workers it is sealed to can open it, so only they are picked.
	fwd := req
	var keys []seal.KeyID
	if req.Sealed {
		id, ks, err := seal.Recipients(req.Body)
		if err == nil && id != req.ID {
			err = fmt.Errorf("sealed request %q sent as request %q", id, req.ID)
		}
		if err != nil {
			if err := inference.WriteError(out, inference.Errorf(inference.CodeBadRequest, "%v", err)); err != nil {
				return err
			}
			return out.Flush()
		}
		keys = ks
	} else if req.MaxPrice != 0 || req.MinTier != 0 {
		c := *req
		c.MaxPrice, c.MinTier = 0, 0
		fwd = &c
	}
	var tried []peer.ID
	var last *inference.Error
	for n := 0; n < r.cfg.Attempts; n++ {
		var unreserve func()
		reserve := func(w *worker) (e *inference.Error) {
			unreserve, e = r.reserve(client, w, req)
			return e
		}
		w, perr := r.pickFor(cl, req.Model, req.Kind, req.MaxPrice, req.MinTier, tried, keys, reserve)
		if perr != nil && perr.Code == inference.CodePaymentRequired {
			if err := inference.WriteError(out, perr); err != nil {
				return err
			}
			return out.Flush()
		}
		if perr != nil {
			if last == nil || perr.Code == inference.CodeUnknownModel || perr.Code == inference.CodeNotCandidate {
				last = perr
			}
			break
		}
		tried = append(tried, w.id)
		a := &attempt{client: client, cl: cl, w: w, req: fwd, out: out, log: log, maxPrice: req.MaxPrice}
		if r.prices != nil {
			if p, ok := r.prices.Offered(w.id, req.Model); ok {
				a.offer = &p
			}
		}
		started, e := r.forward(ctx, a, req.MinTier)
		unreserve()
		if ctx.Err() != nil && !(started && inference.Stopped(ctx)) {
			return fmt.Errorf("client went away: %w", ctx.Err())
		}
		if e == nil {
			return nil
		}
		if started {
			// Already streaming: the error frame was forwarded.
			return nil
		}
		if e.Code == inference.CodeUntrusted {
			// Its verdict changed since pick: another worker may do, and
			// this attempt does not count as one.
			n--
			continue
		}
		if e.Code == inference.CodeNotCandidate {
			// pick matched the request's keys with the worker's verdict:
			// the verdict is out of date.
			log().Info("worker refused a request sealed to the key of its verdict; attesting it again", "worker", w.id)
			r.reattest(ctx, w.id)
		}
		if e.Code == inference.CodePaymentRequired {
			// The worker says this proxy owes it: not the client's
			// doing, and another worker may do.
			log().Warn("worker refuses this proxy for payment", "worker", w.id, "err", e.Message)
			last = inference.Errorf(inference.CodeNoWorker, "a worker refused this proxy: %s", e.Message)
			continue
		}
		log().Info("worker failed before first chunk", "worker", w.id, "attempt", n+1, "code", e.Code, "err", e.Message)
		last = e
		if !e.Code.Retryable() {
			break
		}
	}
	if last == nil {
		last = inference.Errorf(inference.CodeNoWorker, "no worker answered")
	} else if last.Code.Retryable() && len(tried) > 0 {
		last = &inference.Error{Code: last.Code, Message: fmt.Sprintf("%d worker(s) tried: %s", len(tried), last.Message)}
	}
	if err := inference.WriteError(out, last); err != nil {
		return err
	}
	return out.Flush()
}

// reserve sets the worst case of req's answer from w aside in client's
// channel: its prompt (a token per four bytes of its body, which for a
// sealed body is more than the prompt) and its MaxTokens of completion
// (ReserveTokens when it names none) at w's offer, plus the fee. A worker without a price bills nothing, and
// needs nothing set aside.
func (r *Router) reserve(client peer.ID, w *worker, req *inference.Request) (func(), *inference.Error) {
	if r.settler == nil || r.prices == nil {
		return func() {}, nil
	}
	worst, ok := r.prices.Bill(w.id, req.Model, payments.Tokens{Prompt: int64(len(req.Body))/4 + 1, Completion: completionReserve(req, r.cfg.ReserveTokens)}, nil)
	if !ok || worst.Total <= 0 {
		return func() {}, nil
	}
	release, err := r.settler.Reserve(client, uint64(worst.Total))
	if err != nil {
		return nil, inference.Errorf(inference.CodePaymentRequired, "payment required: %v", err)
	}
	return release, nil
}

// attempt is one try of a request on one worker.
type attempt struct {
	client peer.ID
	cl     *clientLoad // the client's load, the attempt counted in it
	w      *worker
	req    *inference.Request // as the worker gets it: in the clear without MaxPrice and MinTier, or sealed
	out    *p2p.FrameWriter   // to the client
	log    func() *slog.Logger
	tier   attest.Tier // w's verified tier, set just before the request is sent
	// offer is w's offered price for the model when it was picked, nil
	// when unknown; maxPrice the request's (0: none). The receipt's price
	// must be that offer, or w's offer now within maxPrice.
	offer    *payments.Price
	maxPrice int64
}

// forward sends a's request to its worker and relays the response to the
// client. started reports whether anything reached the client; e is the
// failure, if any. It measures the worker: the time to its first frame,
// and whether it failed. It checks the worker's verdict once more, just
// before sending: a worker whose tier fell under minTier since pick gets
// nothing, and e is CodeUntrusted.
func (r *Router) forward(ctx context.Context, a *attempt, minTier attest.Tier) (started bool, e *inference.Error) {
	o := outcomeFailure
	defer func() { r.releaseFor(a.cl, a.w, o) }()

	v, ok := r.verdicts.Verified(a.w.id)
	if !ok {
		return false, inference.Errorf(inference.CodeUnattested, "worker %s has no live attestation verdict", a.w.id)
	}
	a.tier = v.Tier
	if minTier > 0 && knownTier(v.Tier) < minTier {
		o = outcomeNone
		return false, inference.Errorf(inference.CodeUntrusted, "worker %s is at trust tier %q, under %s", a.w.id, v.Tier.String(), minTier)
	}
	// The first frame must come within FirstChunkTimeout; past it the
	// attempt is abandoned (its stream reset) and the next worker tried.
	// The client going away resets it too; a client that stops the
	// answer (its app went away mid-answer) has the worker stop instead,
	// and the answer ends with its End, billed for what was streamed.
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var calling atomic.Pointer[inference.Call]
	unwatch := context.AfterFunc(ctx, func() {
		if c := calling.Load(); c != nil && inference.Stopped(ctx) {
			c.Stop()
			return
		}
		cancel()
	})
	defer unwatch()
	var timedOut atomic.Bool
	timer := time.AfterFunc(r.cfg.FirstChunkTimeout, func() { timedOut.Store(true); cancel() })
	sent := r.now()
	call, err := r.pool.Send(actx, a.w.id, a.req)
	timer.Stop()
	if err != nil {
		o, e = r.unanswered(ctx, a.w, err, timedOut.Load())
		return false, e
	}
	defer call.Done()
	calling.Store(call)
	if inference.Stopped(ctx) {
		call.Stop() // stopped while the first frame was on its way
	}
	typ, p, err := call.Next()
	if err != nil {
		return false, inference.Errorf(inference.CodeInternal, "reading the first frame: %v", err)
	}
	if typ == inference.FrameError {
		o, e = refusal(typ, p)
		return false, e
	}
	r.firstChunk(a.w, r.now().Sub(sent))
	o, e = r.relay(ctx, cancel, a, call, typ, p)
	return true, e
}

// unanswered is the failure of a request its worker took no part in: it
// timed out, the client went away, or the worker could not be reached
// (then it is marked down).
func (r *Router) unanswered(ctx context.Context, w *worker, err error, timedOut bool) (outcome, *inference.Error) {
	switch {
	case timedOut:
		return outcomeFailure, inference.Errorf(inference.CodeTimeout, "worker sent nothing within %s", r.cfg.FirstChunkTimeout)
	case ctx.Err() != nil:
		return outcomeNone, inference.Errorf(inference.CodeCancelled, "client went away")
	}
	if r.h.Network().Connectedness(w.id) != network.Connected {
		r.WorkerDown(w.id)
	}
	return outcomeFailure, inference.Errorf(inference.CodeEngine, "worker failed before answering: %v", err)
}

// refusal is a worker's first frame when it is an error: the worker's
// failure, unless a retry cannot help (then it is the request's fault).
func refusal(typ byte, p []byte) (outcome, *inference.Error) {
	ev, err := inference.DecodeEvent(typ, p)
	if err != nil {
		return outcomeFailure, inference.Errorf(inference.CodeEngine, "worker sent a malformed error: %v", err)
	}
	if !ev.Err.Code.Retryable() {
		return outcomeNone, ev.Err // the request's fault, not the worker's
	}
	return outcomeFailure, ev.Err
}

// relay streams the worker's response to the client, from its first frame
// (typ, p) on, flushing whenever no further frame is waiting. Each frame
// must follow the last within ChunkTimeout; past it cancel aborts the call.
// It returns how the attempt went for the worker and the failure, if any;
// a failure has reached the client as an error frame where it could.
func (r *Router) relay(ctx context.Context, cancel context.CancelFunc, a *attempt, call *inference.Call, typ byte, p []byte) (outcome, *inference.Error) {
	var stalled atomic.Bool
	gap := time.AfterFunc(r.cfg.ChunkTimeout, func() { stalled.Store(true); cancel() })
	defer gap.Stop()
	frames := 0
	var content hash.Hash // of the streamed text and events, to check the receipt; nil when sealed
	if !a.req.Sealed {
		content = sha256.New()
	}
	for {
		switch typ {
		case inference.FrameChunk:
			if a.req.Sealed {
				// A worker answers a sealed request only in records: a
				// chunk in the clear would reach the app unchecked.
				return outcomeFailure, r.abort(a.out, inference.Errorf(inference.CodeSealFailed, "worker answered a sealed request in the clear"))
			}
			if text, _, err := inference.DecodeChunk(p); err == nil {
				content.Write(text)
			}
		case inference.FrameEvent:
			if a.req.Sealed {
				return outcomeFailure, r.abort(a.out, inference.Errorf(inference.CodeSealFailed, "worker answered a sealed request in the clear"))
			}
			content.Write(p)
		case inference.FrameRecord:
			if !a.req.Sealed {
				return outcomeFailure, r.abort(a.out, inference.Errorf(inference.CodeEngine, "worker sealed an answer to a request in the clear"))
			}
			// Relayed as it is: only the client can open it.
		case inference.FrameEnd:
			return r.finish(a, p, content)
		case inference.FrameError:
			o := outcomeFailure
			if ev, err := inference.DecodeEvent(typ, p); err == nil && !ev.Err.Code.Retryable() {
				o = outcomeNone // not the worker failing: the request, or its requester
			}
			if err := a.out.Write(typ, p); err == nil {
				a.out.Flush()
			}
			return o, inference.Errorf(inference.CodeEngine, "worker reported an error mid-stream")
		default:
			return outcomeFailure, r.abort(a.out, inference.Errorf(inference.CodeEngine, "worker sent frame type %d", typ))
		}
		if err := a.out.Write(typ, p); err != nil {
			return outcomeNone, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
		}
		frames++
		if !call.Buffered() {
			if err := a.out.Flush(); err != nil {
				return outcomeNone, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
			}
		}
		gap.Reset(r.cfg.ChunkTimeout)
		var err error
		if typ, p, err = call.Next(); err != nil {
			return r.broken(ctx, a, err, frames, stalled.Load())
		}
	}
}

// broken is the failure of a worker whose stream broke after frames
// chunks were relayed: the client went away, or the worker stalled or
// failed, which ends the client's response with an error.
func (r *Router) broken(ctx context.Context, a *attempt, err error, frames int, stalled bool) (outcome, *inference.Error) {
	switch {
	case ctx.Err() != nil && !inference.Stopped(ctx):
		return outcomeNone, inference.Errorf(inference.CodeCancelled, "client went away")
	case stalled:
		a.log().Info("worker stalled mid-stream", "worker", a.w.id, "chunks", frames, "gap", r.cfg.ChunkTimeout)
		return outcomeFailure, r.abort(a.out, inference.Errorf(inference.CodeTimeout, "worker sent nothing for %s after %d chunks", r.cfg.ChunkTimeout, frames))
	}
	a.log().Info("worker failed mid-stream", "worker", a.w.id, "chunks", frames, "err", err)
	return outcomeFailure, r.abort(a.out, inference.Errorf(inference.CodeEngine, "worker failed after %d chunks: %v", frames, err))
}

// abort ends a response that has started with an error frame.
func (r *Router) abort(out *p2p.FrameWriter, e *inference.Error) *inference.Error {
	if err := inference.WriteError(out, e); err == nil {
		out.Flush()
	}
	return e
}

// deadlineStream sets a write deadline d ahead before each write.
type deadlineStream struct {
	network.Stream
	d time.Duration
}

func (s deadlineStream) Write(p []byte) (int, error) {
	if err := s.Stream.SetWriteDeadline(time.Now().Add(s.d)); err != nil {
		return 0, fmt.Errorf("setting a write deadline: %w", err)
	}
	return s.Stream.Write(p)
}

// completionReserve is the completion a request's reservation counts: its
// MaxTokens, which the worker holds the body to, or dflt when it names
// none.
func completionReserve(req *inference.Request, dflt int64) int64 {
	if req.MaxTokens > 0 {
		return req.MaxTokens
	}
	return dflt
}
