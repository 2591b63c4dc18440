package router

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/seal"
)

// The measurement model; the package doc gives the formula.
const (
	ttftAlpha    = 0.25                 // weight of a new first-chunk latency in the EWMA
	successAlpha = 0.25                 // weight of a new outcome in the EWMA
	latencyBase  = 0.05                 // seconds added to every latency, so near-zero ones compare sanely
	minSuccess   = 0.05                 // the floor of the success ratio in the score
	defaultFade  = time.Minute          // Config.FadeHalfLife when zero
	unknownPrice = int64(math.MinInt64) // a price the router has no offer for
)

// pick chooses the worker for a request for model that was not tried yet,
// and counts the request against it: among reachable workers with free
// capacity, whose verified tier is at least minTier (0: any tier) and
// whose price is at most maxPrice (0: any price), and, for a sealed
// request (keys not nil), whose sealing key is one of keys, the one first
// in the order the package doc gives. It runs on every request: one pass
// over the workers, one clock read, no allocation.
func (r *Router) pick(model string, kind inference.Kind, maxPrice int64, minTier attest.Tier, tried []peer.ID, keys []seal.KeyID) (*worker, *inference.Error) {
	return r.pickFor(nil, model, kind, maxPrice, minTier, tried, keys, nil)
}

// pickFor is pick for a client whose load is cl: a worker of which the
// client holds its share of slots (ClientShare) is passed over, and the
// pick is counted in cl. A nil cl counts no client. admit, when not nil,
// runs on the chosen worker before the pick is counted, under the same
// lock: a request it refuses (its payment reservation) never holds a slot
// or a share, so others are not refused for it meanwhile.
func (r *Router) pickFor(cl *clientLoad, model string, kind inference.Kind, maxPrice int64, minTier attest.Tier, tried []peer.ID, keys []seal.KeyID,
	admit func(*worker) *inference.Error) (*worker, *inference.Error) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.known[model] {
		return nil, inference.Errorf(inference.CodeUnknownModel, "the model %q does not exist in this network", model)
	}
	if e := r.unservedLocked(model, kind); e != nil {
		return nil, e
	}
	var best candidate
	unpayable := false   // a worker was passed over for want of a payment channel
	uncandidate := false // a worker was passed over for not being sealed to
	shared := false      // a worker was passed over for the client's share of it
	for _, w := range r.order {
		if !w.up || w.active >= w.maxConcurrent || slices.Contains(tried, w.id) || now.Before(w.refusedUntil) {
			continue
		}
		if cl != nil && cl.on[w] >= r.shareLocked(w) {
			shared = true
			continue
		}
		if m, ok := w.models[model]; !ok || !m.Serves(kind) {
			continue
		}
		if keys != nil && !r.sealedToLocked(w, keys) {
			uncandidate = true
			continue
		}
		if minTier > 0 && r.tierOf(w.id) < minTier {
			continue
		}
		if !r.payable(w.id) {
			unpayable = true
			continue
		}
		price := r.priceLocked(w.id, model)
		if maxPrice > 0 && (price == unknownPrice || price > maxPrice) {
			continue
		}
		c := candidate{w: w, price: price, score: r.scoreLocked(w, now)}
		if best.w == nil || c.before(best) {
			best = c
		}
	}
	if best.w == nil {
		if minTier > 0 {
			if e := r.untrustedLocked(model, minTier); e != nil {
				return nil, e
			}
		}
		if maxPrice > 0 {
			if e := r.tooExpensiveLocked(model, maxPrice, minTier); e != nil {
				return nil, e
			}
		}
		if unpayable {
			return nil, inference.Errorf(inference.CodeNoWorker, "no worker this proxy has a payment channel to can take model %q now", model)
		}
		if shared {
			return nil, inference.Errorf(inference.CodeOverloaded, "this client holds its share (%d%%) of the slots of every worker that can take model %q", r.cfg.ClientShare, model)
		}
		if uncandidate {
			return nil, inference.Errorf(inference.CodeNotCandidate,
				"none of the %d workers the request is sealed to can take model %q through this proxy now", len(keys), model)
		}
		return nil, inference.Errorf(inference.CodeNoWorker, "no worker can take model %q now", model)
	}
	if admit != nil {
		if e := admit(best.w); e != nil {
			return nil, e
		}
	}
	best.w.active++
	best.w.served++
	if cl != nil {
		cl.on[best.w]++
	}
	return best.w, nil
}

// clientLoad is what one client has in flight here: requests, and the
// attempts on each worker.
type clientLoad struct {
	active int
	on     map[*worker]int
}

// shareLocked is how many of w's slots one client may hold.
func (r *Router) shareLocked(w *worker) int {
	return max(1, w.maxConcurrent*r.cfg.ClientShare/100)
}

// admit counts a request of client, or refuses it when the client has
// MaxPerClient in flight. leave undoes it.
func (r *Router) admit(client peer.ID) (*clientLoad, *inference.Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cl := r.clients[client]
	if cl == nil {
		cl = &clientLoad{on: make(map[*worker]int)}
		r.clients[client] = cl
	}
	if cl.active >= r.cfg.MaxPerClient {
		return nil, inference.Errorf(inference.CodeOverloaded, "this client has %d requests in flight at this proxy, the most it may", cl.active)
	}
	cl.active++
	return cl, nil
}

func (r *Router) leave(client peer.ID, cl *clientLoad) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cl.active--; cl.active == 0 {
		delete(r.clients, client)
	}
}

// sealedToLocked reports whether w's sealing key, as its live verdict
// binds it, is one of keys. The key's ID is computed once per key.
func (r *Router) sealedToLocked(w *worker, keys []seal.KeyID) bool {
	if r.verdicts == nil {
		return false
	}
	v, ok := r.verdicts.Verified(w.id)
	if !ok || len(v.SealKey) == 0 {
		return false
	}
	if !bytes.Equal(v.SealKey, w.sealKey) {
		pub, err := seal.ParsePublicKey(v.SealKey)
		if err != nil {
			return false
		}
		w.sealKey, w.sealID = v.SealKey, pub.ID()
	}
	return slices.Contains(keys, w.sealID)
}

// priceLocked is what a client pays for model through p per million
// prompt plus completion tokens (Pricer.PerMillion), or unknownPrice.
func (r *Router) priceLocked(p peer.ID, model string) int64 {
	if r.prices == nil {
		return unknownPrice
	}
	if v, ok := r.prices.PerMillion(p, model); ok {
		return v
	}
	return unknownPrice
}

// payable reports whether the proxy can pay p: always, without payments.
func (r *Router) payable(p peer.ID) bool {
	return r.settler == nil || r.settler.Payable(p) == nil
}

// unservedLocked is the error for a request of a kind that no reachable
// worker serves model for (an embedding request for a chat model), or nil.
func (r *Router) unservedLocked(model string, kind inference.Kind) *inference.Error {
	var announced [][]string
	for _, w := range r.order {
		m, ok := w.models[model]
		if !ok || !w.up {
			continue
		}
		if m.Serves(kind) {
			return nil
		}
		announced = append(announced, m.Endpoints)
	}
	if announced == nil {
		return nil // no worker is up: the pick says so
	}
	return inference.NotServed(model, kind, inference.UnionEndpoints(announced...))
}

// untrustedLocked explains a failed pick with a minimum tier: nil when
// some reachable worker serving model is trusted enough (it is busy or was
// tried, so the request failed for another reason) or none has a live
// verdict at all, else the error naming the tier wanted and the best one
// available.
func (r *Router) untrustedLocked(model string, minTier attest.Tier) *inference.Error {
	var best attest.Tier
	for _, w := range r.order {
		if _, ok := w.models[model]; !ok || !w.up {
			continue
		}
		best = max(best, r.tierOf(w.id))
	}
	if best == 0 || best >= minTier {
		return nil
	}
	return inference.Errorf(inference.CodeUntrusted, "no worker serves model %q at trust tier %s or above (best available: %s)",
		model, minTier, best)
}

// tooExpensiveLocked explains a failed pick with a price ceiling, among
// the workers trusted enough for minTier: nil when some reachable one
// serving model is within it (it is busy or was tried, so the request
// failed for another reason), else the error naming the cheapest price
// on offer.
func (r *Router) tooExpensiveLocked(model string, maxPrice int64, minTier attest.Tier) *inference.Error {
	cheapest := unknownPrice
	for _, w := range r.order {
		if _, ok := w.models[model]; !ok || !w.up {
			continue
		}
		if minTier > 0 && r.tierOf(w.id) < minTier {
			continue
		}
		price := r.priceLocked(w.id, model)
		if price == unknownPrice {
			continue
		}
		if price <= maxPrice {
			return nil
		}
		if cheapest == unknownPrice || price < cheapest {
			cheapest = price
		}
	}
	e := inference.Errorf(inference.CodeTooExpensive, "no worker offers model %q at or under %d nanoTON per million tokens", model, maxPrice)
	if cheapest == unknownPrice {
		e.Message += " (no worker's price for it is known)"
	} else {
		e.Message += fmt.Sprintf(" (cheapest: %d)", cheapest)
	}
	return e
}

// candidate is a worker that can take a request, with what pick compares.
type candidate struct {
	w     *worker
	price int64 // unknownPrice when unknown
	score float64
}

// before orders candidates: the cheaper first when both prices are known
// (the cheapest offer sells first), then the lower score, then the one
// that served fewer requests. pick keeps the earlier of equals, so
// insertion order breaks the last tie.
func (c candidate) before(b candidate) bool {
	if c.price != unknownPrice && b.price != unknownPrice && c.price != b.price {
		return c.price < b.price
	}
	if c.score != b.score {
		return c.score < b.score
	}
	return c.w.served < b.w.served
}

// scoreLocked estimates the wait for a first chunk from w, in seconds:
// its first-chunk latency, stretched by its load and by the retries its
// failures cost. Lower is better.
func (r *Router) scoreLocked(w *worker, now time.Time) float64 {
	ttft, success := r.estimateLocked(w, now)
	load := float64(w.active) / float64(w.maxConcurrent)
	return (ttft + latencyBase) * (1 + load) / max(success, minSuccess)
}

// estimateLocked is w's first-chunk latency and success ratio as of now:
// its measurements, faded towards the prior for the time since they were
// made. A worker never measured gets the prior: the latency of all
// workers, and a success ratio of 1.
func (r *Router) estimateLocked(w *worker, now time.Time) (ttft, success float64) {
	prior := r.ttftAll
	if w.observed.IsZero() {
		return prior, 1
	}
	k := r.keptLocked(w, now)
	ttft = prior
	if w.hasTTFT {
		ttft = prior + (w.ttft-prior)*k
	}
	return ttft, 1 - (1-w.success)*k
}

// keptLocked is the weight w's measurements keep at now: halved every
// half-life since they were made.
func (r *Router) keptLocked(w *worker, now time.Time) float64 {
	age := now.Sub(w.observed)
	if age <= 0 || r.halfLife == 0 {
		return 1
	}
	return math.Exp2(-age.Seconds() / r.halfLife)
}

// foldLocked makes w's faded estimate its new state, before a new
// measurement is added to it.
func (r *Router) foldLocked(w *worker, now time.Time) {
	if w.observed.IsZero() {
		return
	}
	ttft, success := r.estimateLocked(w, now)
	if w.hasTTFT {
		w.ttft = ttft
	}
	w.success = success
}

// firstChunk records that w sent its first frame d after the request.
func (r *Router) firstChunk(w *worker, d time.Duration) {
	now := r.now()
	s := max(d.Seconds(), 0)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.foldLocked(w, now)
	if w.hasTTFT {
		w.ttft += ttftAlpha * (s - w.ttft)
	} else {
		w.ttft, w.hasTTFT = s, true
	}
	if r.hasAll {
		r.ttftAll += ttftAlpha * (s - r.ttftAll)
	} else {
		r.ttftAll, r.hasAll = s, true
	}
	w.observed = now
}

// outcome is how an attempt on a worker went, as far as the worker is
// concerned.
type outcome uint8

const (
	outcomeNone    outcome = iota // not the worker's doing: the client left, or the request was bad
	outcomeSuccess                // the response ended with End
	outcomeFailure                // the worker failed, before its first chunk or after
)

// release ends an attempt on w and records its outcome.
func (r *Router) release(w *worker, o outcome) { r.releaseFor(nil, w, o) }

// releaseFor is release of an attempt counted in cl (nil: none).
func (r *Router) releaseFor(cl *clientLoad, w *worker, o outcome) {
	var now time.Time
	if o != outcomeNone {
		now = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w.active--
	if cl != nil {
		if cl.on[w]--; cl.on[w] <= 0 {
			delete(cl.on, w)
		}
	}
	if o == outcomeNone {
		return
	}
	r.foldLocked(w, now)
	x := 1.0
	if o == outcomeFailure {
		x = 0
		w.failures++
	}
	w.success += successAlpha * (x - w.success)
	w.observed = now
}
