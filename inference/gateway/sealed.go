package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/directory"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Workers is what the client knows of the workers behind its proxies:
// those whose evidence it verified itself, from each proxy's directory.
// *directory.Client implements it.
type Workers interface {
	// Workers returns the workers behind proxy the client verified, with
	// its own verdicts; refresh asks for the proxy's directory afresh.
	Workers(ctx context.Context, proxy peer.ID, refresh bool) ([]directory.Worker, error)
}

// MaxCandidates is how many workers a request is sealed to at most: the
// proxy chooses among them by load, and retries on another before the
// first chunk.
const MaxCandidates = 4

// sealer seals requests to the workers the client verified and opens
// their answers.
type sealer struct {
	network string
	workers Workers
	client  *seal.Client

	mu       sync.Mutex               // guards sessions and known
	sessions map[peer.ID]*sealSession // the session with each worker's current key
	known    map[string]bool          // models served before or listed by a proxy: asked for with no worker, they are busy, not unknown
}

// sealSession is a session with a worker's key, kept while the verdict
// that named the key is live.
type sealSession struct {
	s      *seal.Session
	key    []byte // the sealing key, as the verdict's evidence binds it
	expiry time.Time
	tier   attest.Tier // the client's verdict on the worker
}

// maxSessions bounds the session cache: one per verified worker.
const maxSessions = 4096

func newSealer(network string, workers Workers) *sealer {
	return &sealer{network: network, workers: workers, client: seal.NewClient(nil, nil),
		sessions: make(map[peer.ID]*sealSession), known: make(map[string]bool)}
}

// candidate is a worker a request may be sealed to.
type candidate struct {
	w directory.Worker
}

// candidates picks the workers behind proxy that req may be sealed to:
// verified by the client itself, serving req.Model, at or above its
// minimum tier, at or under its max price (the worker's own; the proxy
// adds its fee and checks again), up to MaxCandidates of them at random.
// With none in the directory as kept, it is read afresh; with none there
// either, the error is an *inference.Error saying why.
func (s *sealer) candidates(ctx context.Context, proxy peer.ID, req *inference.Request, refresh bool) ([]candidate, error) {
	var why *inference.Error
	tries := []bool{false, true}
	if refresh {
		tries = tries[1:]
	}
	for _, refresh := range tries {
		ws, err := s.workers.Workers(ctx, proxy, refresh)
		if err != nil {
			return nil, fmt.Errorf("proxy %s's directory: %w", proxy, err)
		}
		var out []candidate
		out, why = choose(ws, req)
		if len(out) > 0 {
			s.know(req.Model)
			return out, nil
		}
	}
	if why.Code == inference.CodeUnknownModel && s.knows(req.Model) {
		why = inference.Errorf(inference.CodeNoWorker, "no worker this client verified serves model %q now", req.Model)
	}
	return nil, why
}

// maxKnown bounds the models the sealer remembers.
const maxKnown = 4096

// know remembers a model the client sealed a request for.
func (s *sealer) know(model string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.knowLocked(model)
}

// learnCatalog remembers the models of a proxy's catalog.
func (s *sealer) learnCatalog(c *inference.Catalog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range c.Models {
		s.knowLocked(m.ID)
	}
}

func (s *sealer) knowLocked(model string) {
	if len(s.known) < maxKnown {
		s.known[model] = true
	}
}

func (s *sealer) knows(model string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.known[model]
}

// choose filters ws for req; with none left, the error says which
// condition left none.
func choose(ws []directory.Worker, req *inference.Request) ([]candidate, *inference.Error) {
	var listed, serving, trusted, sealing int
	var best attest.Tier     // the best tier among the workers serving the model
	var announced [][]string // the endpoints of the workers not serving the model for req.Kind
	var out []candidate
	for _, w := range ws {
		m, ok := modelOf(w, req.Model)
		if !ok {
			continue
		}
		listed++
		if !inference.ServesKind(m.Endpoints, req.Kind) {
			announced = append(announced, m.Endpoints)
			continue
		}
		serving++
		if w.Verdict.Tier <= attest.TierTEEGPU {
			best = max(best, w.Verdict.Tier)
		}
		if req.MinTier > 0 && (w.Verdict.Tier > attest.TierTEEGPU || w.Verdict.Tier < req.MinTier) {
			continue
		}
		trusted++
		if len(w.Verdict.SealKey) == 0 {
			continue
		}
		sealing++
		if req.MaxPrice > 0 && (m.Price == nil || m.Price.Prompt+m.Price.Completion > req.MaxPrice) {
			continue
		}
		out = append(out, candidate{w: w})
	}
	switch {
	case len(out) > 0:
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out[:min(len(out), MaxCandidates)], nil
	case listed == 0:
		return nil, inference.Errorf(inference.CodeUnknownModel,
			"the model %q does not exist in this network: no worker this client verified serves it", req.Model)
	case serving == 0:
		return nil, inference.NotServed(req.Model, req.Kind, inference.UnionEndpoints(announced...))
	case trusted == 0:
		return nil, inference.Errorf(inference.CodeUntrusted,
			"no worker this client verified serves model %q at trust tier %s or above (best available: %s)", req.Model, req.MinTier, best)
	case sealing == 0:
		return nil, inference.Errorf(inference.CodeNoWorker,
			"no worker serving model %q binds a sealing key to its evidence, and requests are sent sealed only", req.Model)
	}
	return nil, inference.Errorf(inference.CodeTooExpensive,
		"no worker this client verified serves model %q at or under the max price of %d nanoTON per million tokens", req.Model, req.MaxPrice)
}

func modelOf(w directory.Worker, id string) (directory.Model, bool) {
	for _, m := range w.Models {
		if m.ID == id {
			return m, true
		}
	}
	return directory.Model{}, false
}

// session returns the session with c's key, made on first use and when
// the worker's key changes (a new key replaces the old one's session).
func (s *sealer) session(c candidate) (*sealSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.sessions[c.w.Peer]; ok && bytes.Equal(ss.key, c.w.Verdict.SealKey) {
		if c.w.Verdict.Expiry.After(ss.expiry) {
			ss.expiry, ss.tier = c.w.Verdict.Expiry, c.w.Verdict.Tier
		}
		return ss, nil
	}
	ss, err := seal.NewSession(c.w.Verdict.SealKey, seal.Binding{Network: s.network, Peer: c.w.Peer.String()})
	if err != nil {
		// Its evidence verified with this key: a KEM this build does not
		// know, or a key that does not parse.
		return nil, fmt.Errorf("worker %s's sealing key: %w", c.w.Peer, err)
	}
	if _, ok := s.sessions[c.w.Peer]; !ok && len(s.sessions) >= maxSessions {
		s.pruneLocked(time.Now())
	}
	sess := &sealSession{s: ss, key: c.w.Verdict.SealKey, expiry: c.w.Verdict.Expiry, tier: c.w.Verdict.Tier}
	s.sessions[c.w.Peer] = sess
	return sess, nil
}

// pruneLocked drops sessions whose verdicts have expired, then, if the
// cache is still full, arbitrary ones: they are made again when used.
func (s *sealer) pruneLocked(now time.Time) {
	for k, ss := range s.sessions {
		if !now.Before(ss.expiry) {
			delete(s.sessions, k)
		}
	}
	for k := range s.sessions {
		if len(s.sessions) < maxSessions {
			break
		}
		delete(s.sessions, k)
	}
}

// seal returns req sealed to cs, the opener of its answer, and the
// client's tier for each candidate, by peer ID string (as the opener
// names the worker that answered). The sealed request carries req's
// header; its body is the sealed request.
// chosen is what the client knows of a worker it sealed a request to: its
// own verdict's tier, and the price its proxy listed for the model (nil
// when none).
type chosen struct {
	tier  attest.Tier
	price *payments.Price
}

func (s *sealer) seal(req *inference.Request, cs []candidate) (*inference.Request, *seal.ResponseOpener, map[string]chosen, error) {
	sessions := make([]*seal.Session, 0, len(cs))
	chose := make(map[string]chosen, len(cs))
	var bad error
	for _, c := range cs {
		ss, err := s.session(c)
		if err != nil {
			bad = err // another candidate may do
			continue
		}
		sessions = append(sessions, ss.s)
		m, _ := modelOf(c.w, req.Model)
		chose[ss.s.Worker().Peer] = chosen{tier: ss.tier, price: m.Price}
	}
	if len(sessions) == 0 {
		return nil, nil, nil, bad
	}
	out := *req
	out.Sealed, out.Body = true, nil
	header, err := inference.AppendHeader(nil, &out)
	if err != nil {
		return nil, nil, nil, err
	}
	sr, opener, err := s.client.SealRequest(sessions, req.ID, header, req.Body)
	if err != nil {
		return nil, nil, nil, err
	}
	if out.Body, err = seal.AppendSealedRequest(nil, sr); err != nil {
		return nil, nil, nil, err
	}
	return &out, opener, chose, nil
}

// sealedResponse opens a sealed answer as it arrives. Every chunk the app
// gets comes from a record the worker sealed, in order; the answer's End
// is accepted only after the worker's end record, from the worker that
// sealed the records, and carries the tier the client verified for it.
type sealedResponse struct {
	*callResponse
	pending *inference.Event // the first event, read by Open, to return first
	opener  *seal.ResponseOpener
	rest    []byte            // the chunks of the last record not returned yet
	chosen  map[string]chosen // the candidates, by peer ID string
	ended   bool              // the end record was opened
	failed  bool              // an error event was returned: nothing follows
}

func (r *sealedResponse) Next() (inference.Event, error) {
	if r.failed {
		return inference.Event{}, io.ErrUnexpectedEOF
	}
	if len(r.rest) > 0 {
		ev, rest, err := inference.NextSealedChunk(r.rest)
		if err != nil {
			return r.fail("a sealed record does not decode: %v", err)
		}
		r.rest = rest
		return ev, nil
	}
	var ev inference.Event
	if r.pending != nil {
		ev, r.pending = *r.pending, nil
	} else {
		var err error
		if ev, err = r.callResponse.Next(); err != nil {
			return ev, err
		}
	}
	switch ev.Type {
	case inference.FrameRecord:
		plain, err := r.opener.Open(ev.Text)
		if errors.Is(err, io.EOF) {
			r.ended = true
			return r.Next()
		}
		if err != nil {
			return r.fail("the answer failed its seal: %v", err)
		}
		if len(plain) == 0 {
			return r.fail("a sealed record holds no chunk")
		}
		r.rest = plain // valid until the next Open, which waits until it is used up
		return r.Next()
	case inference.FrameChunk, inference.FrameEvent:
		return r.fail("the proxy sent a chunk in the clear for a sealed request")
	case inference.FrameEnd:
		if err := r.opener.Done(); err != nil || !r.ended {
			return r.fail("the answer ended without the worker's end record: %v", err)
		}
		b, _, _ := r.opener.Worker()
		if ev.End.Worker != b.Peer {
			return r.fail("the proxy names worker %q for an answer sealed by %s", ev.End.Worker, b.Peer)
		}
		// The tier is the client's own verdict on the worker that sealed
		// the answer, not the proxy's word.
		ev.End.Tier = r.chosen[b.Peer].tier.String()
		return ev, nil
	}
	return ev, nil
}

// Listed is the price the proxy's directory listed for worker when the
// client chose it.
func (r *sealedResponse) Listed(worker string) (payments.Price, bool) {
	if c, ok := r.chosen[worker]; ok && c.price != nil {
		return *c.price, true
	}
	return payments.Price{}, false
}

// Buffered reports whether another event is waiting: a chunk of the last
// record, or a frame.
func (r *sealedResponse) Buffered() bool { return len(r.rest) > 0 || r.callResponse.Buffered() }

// fail ends the answer with a seal error: nothing after a broken record
// reaches the app.
func (r *sealedResponse) fail(format string, args ...any) (inference.Event, error) {
	r.failed = true
	return inference.Event{Type: inference.FrameError, Err: inference.Errorf(inference.CodeSealFailed, format, args...)}, nil
}
