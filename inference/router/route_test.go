package router_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/channels"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The node's attestation and payment channels are what the router and
// its workers are made with.
var (
	_ router.Verdicts = (*attest.Handshaker)(nil)
	_ router.Settler  = (*channels.Manager)(nil)
	_ worker.Settler  = (*channels.Manager)(nil)
)

// behaviour is how a test worker answers each request.
type behaviour struct {
	firstChunk time.Duration  // moves the router's clock before the first chunk
	failBefore bool           // engine_error before any chunk
	failAfter  bool           // engine_error after one chunk
	refuse     inference.Code // answered before any chunk, if not 0
	receipts   receipts       // what the worker signs
	owed       bool           // the worker refuses the proxy for payment
	// signs is the price its receipts name, per million prompt tokens;
	// 0: its offer's.
	signs int64
	// during, if set, runs while the answer is being generated.
	during func()
}

type receipts uint8

const (
	noReceipts     receipts = iota
	ownKey                  // receipts signed with the worker's own key
	someoneElseKey          // receipts signed with another peer's key
)

// backend serves model "m" as b says, moving clock before the first chunk.
func (b behaviour) backend(clock *clocktest.Clock) *inferencetest.Backend {
	return &inferencetest.Backend{Served: []inference.Model{{ID: "m", Simulated: true}},
		Func: func(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
			if b.failBefore {
				return inference.Result{}, inference.Errorf(inference.CodeEngine, "engine down")
			}
			if b.refuse != 0 {
				return inference.Result{}, inference.Errorf(b.refuse, "refused")
			}
			clock.Advance(b.firstChunk)
			if b.during != nil {
				b.during()
			}
			if err := emit(inference.Chunk{Text: "hi"}); err != nil {
				return inference.Result{}, err
			}
			if b.failAfter {
				return inference.Result{}, inference.Errorf(inference.CodeEngine, "engine died")
			}
			return inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 1, Completion: 1}}, FinishReason: "stop"}, nil
		}}
}

// maxPrices are the max prices of the requests b got.
func maxPrices(b *inferencetest.Backend) []int64 {
	var out []int64
	for _, r := range b.Requests() {
		out = append(out, r.MaxPrice)
	}
	return out
}

// minTiers are the minimum tiers of the requests b got.
func minTiers(b *inferencetest.Backend) []attest.Tier {
	var out []attest.Tier
	for _, r := range b.Requests() {
		out = append(out, r.MinTier)
	}
	return out
}

// mesh is a proxy's router on a loopback host, a client host connected to
// it, and workers added one by one, each on its own host.
type mesh struct {
	t      *testing.T
	clock  *clocktest.Clock
	proxy  host.Host
	router *router.Router
	// verdicts are the proxy's: a worker's tier as addTieredWorker set
	// it, dev for any other peer. prices are the workers' offers, for
	// model "m" only.
	verdicts *router.FakeVerdicts
	prices   *router.FakePricer
	pool     *inference.Pool

	mu       sync.Mutex        // guards lastEnd; names and backends are written under it
	lastEnd  *inference.End    // of the last answer sendReq read
	names    map[string]string // worker peer ID -> test name
	backends map[string]*inferencetest.Backend
}

// newMesh is a mesh whose proxy takes no payments.
func newMesh(t *testing.T) *mesh {
	t.Helper()
	return newPaidMesh(t, nil)
}

// newPaidMesh is a mesh whose proxy settles with settler; nil: no payments.
func newPaidMesh(t *testing.T, settler router.Settler) *mesh {
	t.Helper()
	m := &mesh{t: t, clock: clocktest.New(time.Unix(1_700_000_000, 0)),
		verdicts: &router.FakeVerdicts{Default: attest.TierDev}, prices: &router.FakePricer{Model: "m"},
		names: make(map[string]string), backends: make(map[string]*inferencetest.Backend)}
	m.proxy = p2ptest.NewHost(t)
	client := p2ptest.NewHost(t)
	cfg := router.DefaultConfig("local")
	cfg.Now = m.clock.Now
	m.router = router.New(cfg, m.proxy, m.verdicts, m.prices, settler, logtest.Discard)
	sv := p2p.NewService(m.proxy, logtest.Discard)
	m.router.Register(sv)
	m.pool = inference.NewPool(client, "local", inference.DefaultPoolConfig())
	t.Cleanup(func() {
		m.pool.Close()
		sv.Close()
		m.router.Close()
	})
	p2ptest.Connect(t, client, m.proxy)
	return m
}

// flatPrice is a worker's price for every model.
type flatPrice payments.Price

func (p flatPrice) Price(string) payments.Price { return payments.Price(p) }

// addWorker starts a worker named name; price < 0 means it has no offer.
func (m *mesh) addWorker(name string, price int64, b behaviour) peer.ID {
	m.t.Helper()
	return m.addTieredWorker(name, price, attest.TierDev, b)
}

// addTieredWorker is addWorker for a worker whose verdict has tier; 0
// means it has no live verdict.
func (m *mesh) addTieredWorker(name string, price int64, tier attest.Tier, b behaviour) peer.ID {
	m.t.Helper()
	h := p2ptest.NewHost(m.t)
	be := b.backend(m.clock)
	sv := p2p.NewService(h, logtest.Discard)
	m.t.Cleanup(sv.Close)
	cfg := worker.Config{Network: "local", MaxConcurrent: 4}
	signed := flatPrice{Prompt: max(price, 0)} // its offer, as FakePricer.Offered has it
	if b.signs != 0 {
		signed = flatPrice{Prompt: b.signs}
	}
	switch b.receipts {
	case ownKey:
		cfg.Receipts = &worker.Receipts{Key: h.Peerstore().PrivKey(h.ID()), Prices: signed}
	case someoneElseKey:
		other := p2ptest.NewHost(m.t)
		cfg.Receipts = &worker.Receipts{Key: other.Peerstore().PrivKey(other.ID()), Prices: signed}
	}
	var settler worker.Settler // the worker's: nil, no payments
	if b.owed {
		s := &router.FakeSettler{}
		s.Refuse(errors.New("proxy owes 5 nanoTON beyond credit"))
		settler = s
	}
	// The worker serves every peer: these tests are of the proxy's verdicts.
	w := worker.New(cfg, h.ID(), be, settler, logtest.Discard)
	w.Register(sv)
	p2ptest.Connect(m.t, m.proxy, h)
	c, err := w.Catalog(m.t.Context())
	if err != nil {
		m.t.Fatal(err)
	}
	if price >= 0 {
		m.prices.Set(h.ID(), price)
	}
	m.verdicts.Set(h.ID(), tier)
	m.mu.Lock()
	m.names[h.ID().String()] = name
	m.backends[name] = be
	m.mu.Unlock()
	m.router.SetWorker(h.ID(), c)
	return h.ID()
}

// send makes one request through the proxy and returns the name of the
// worker that answered, or the error the client got. It returns once the
// router has released every worker, so the next request sees this one's
// measurements.
func (m *mesh) send(maxPrice int64) (string, *inference.Error) {
	m.t.Helper()
	return m.sendReq(&inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", MaxPrice: maxPrice, Body: []byte(`{}`)})
}

// sendReq is send for any request for model "m".
func (m *mesh) sendReq(req *inference.Request) (string, *inference.Error) {
	m.t.Helper()
	defer p2ptest.Eventually(m.t, "the router to release its workers", func() bool {
		for _, w := range m.router.Workers() {
			if w.Active != 0 {
				return false
			}
		}
		return true
	})
	call, err := m.pool.Send(m.t.Context(), m.proxy.ID(), req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer call.Done()
	for {
		typ, p, err := call.Next()
		if err != nil {
			m.t.Fatalf("reading the response: %v", err)
		}
		ev, err := inference.DecodeEvent(typ, p)
		if err != nil {
			m.t.Fatal(err)
		}
		switch ev.Type {
		case inference.FrameEnd:
			m.mu.Lock()
			m.lastEnd = ev.End
			m.mu.Unlock()
			return m.names[ev.End.Worker], nil
		case inference.FrameError:
			return "", ev.Err
		}
	}
}

// served counts the responses by worker name over n requests.
func (m *mesh) served(n int, maxPrice int64) map[string]int {
	m.t.Helper()
	got := make(map[string]int)
	for range n {
		name, e := m.send(maxPrice)
		if e != nil {
			m.t.Fatalf("request failed: %v", e)
		}
		got[name]++
	}
	return got
}

func (m *mesh) stats(name string) router.WorkerStats {
	m.t.Helper()
	for _, w := range m.router.Workers() {
		if m.names[w.Peer.String()] == name {
			return w
		}
	}
	m.t.Fatalf("no stats for worker %s", name)
	return router.WorkerStats{}
}

// TestBilling: the proxy puts each answer's cost in its End frame, priced
// by the Pricer from the tokens the worker reported; without a known
// price, no cost.
func TestBilling(t *testing.T) {
	m := newMesh(t)
	m.addWorker("priced", 100, behaviour{})
	m.prices.SetBill(func(p peer.ID, model string, u payments.Tokens, _ *payments.Price) (payments.Bill, bool) {
		if m.names[p.String()] != "priced" || model != "m" {
			return payments.Bill{}, false
		}
		w := 1000 * (u.Prompt + u.Completion)
		return payments.Bill{Worker: w, Fee: w / 50, Total: w + w/50}, true
	})
	if got, e := m.send(0); e != nil || got != "priced" {
		t.Fatalf("got %q, %v", got, e)
	}
	m.mu.Lock()
	cost := m.lastEnd.Cost
	m.mu.Unlock()
	if cost == nil || *cost != (payments.Bill{Worker: 2000, Fee: 40, Total: 2040}) {
		t.Fatalf("cost %+v, want 2000 + 40 for 1 prompt and 1 completion token", cost)
	}
	m.prices.SetBill(func(peer.ID, string, payments.Tokens, *payments.Price) (payments.Bill, bool) {
		return payments.Bill{}, false
	})
	if _, e := m.send(0); e != nil {
		t.Fatal(e)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastEnd.Cost != nil {
		t.Fatalf("cost %+v without a known price, want none", m.lastEnd.Cost)
	}
}

// TestPayments: a client the payments refuse gets payment_required and
// reaches no worker; workers the proxy cannot pay get no requests; a worker
// that refuses the proxy for payment is passed over for the next; each
// answer's cost is reported as served to its client, and its receipt as
// relayed.
func TestPayments(t *testing.T) {
	settler := &router.FakeSettler{}
	m := newPaidMesh(t, settler)
	m.addWorker("owed", 100, behaviour{owed: true})
	m.addWorker("paid", 200, behaviour{receipts: ownKey})
	settler.Unpayable(m.addWorker("unpayable", 50, behaviour{}))
	m.prices.SetBill(func(peer.ID, string, payments.Tokens, *payments.Price) (payments.Bill, bool) {
		return payments.Bill{Worker: 10, Fee: 1, Total: 11}, true
	})
	if got, e := m.send(0); e != nil || got != "paid" {
		t.Fatalf("got %q, %v; want the answer from the worker that is paid up", got, e)
	}
	if st := m.stats("unpayable"); st.Served != 0 {
		t.Errorf("a worker the proxy cannot pay was sent %d requests", st.Served)
	}
	if served := settler.ServedAmounts(); len(served) != 1 || served[0] != 11 {
		t.Errorf("served = %v, want one answer of 11", served)
	}
	if relayed := settler.RelayedReceipts(); len(relayed) != 1 || len(relayed[0]) == 0 {
		t.Errorf("relayed %d receipts, want the paid worker's one", len(relayed))
	}
	if parts := settler.WorkerParts(); len(parts) != 1 || parts[0] == 0 || parts[0] > 11 {
		t.Errorf("paid the worker %v, want its part of the 11 once", parts)
	}
	settler.Refuse(errors.New("no channel"))
	before := m.stats("paid").Served
	if _, e := m.send(0); e == nil || e.Code != inference.CodePaymentRequired || e.Message != "payment required: no channel" {
		t.Fatalf("client without a channel: %v, want payment_required", e)
	}
	if m.stats("paid").Served != before {
		t.Error("a refused client's request reached a worker")
	}
}

// TestReceipts: the proxy checks each worker's signed receipt against what
// it relayed, and verifies the signature of its first receipt and every
// sixteenth: a worker whose receipts are forged is caught on its first and
// counted as failing.
func TestReceipts(t *testing.T) {
	m := newMesh(t)
	m.addWorker("honest", 100, behaviour{receipts: ownKey})
	m.addWorker("forger", 100, behaviour{receipts: someoneElseKey})
	for range 6 {
		if _, e := m.send(0); e != nil {
			t.Fatal(e)
		}
	}
	stats := map[string]router.WorkerStats{}
	for _, w := range m.router.Workers() {
		stats[m.names[w.Peer.String()]] = w
	}
	if h, f := stats["honest"], stats["forger"]; h.Served == 0 || f.Served == 0 || h.Failures != 0 || f.Failures < 1 {
		t.Fatalf("honest served %d, failed %d; forger served %d, failed %d: want the forger's first answer counted failed",
			h.Served, h.Failures, f.Served, f.Failures)
	}
}

// TestReceiptPrice: a worker that offers a low price to be routed first,
// then signs receipts at a higher one, has its answer refused
// (receipt_invalid, not billed) and gets no more requests; a worker whose
// offer changed while it answered may bill at its new price, unless that
// is over the request's max price.
func TestReceiptPrice(t *testing.T) {
	settler := &router.FakeSettler{}
	m := newPaidMesh(t, settler)
	m.prices.SetBill(func(_ peer.ID, _ string, _ payments.Tokens, p *payments.Price) (payments.Bill, bool) {
		if p == nil {
			return payments.Bill{}, false // the worst case is not this test's
		}
		return payments.Bill{Worker: p.Prompt, Total: p.Prompt}, true
	})
	m.addWorker("honest", 200, behaviour{receipts: ownKey})
	m.addWorker("greedy", 100, behaviour{receipts: ownKey, signs: 5000})
	if got, e := m.send(0); e == nil || e.Code != inference.CodeBadReceipt || !strings.Contains(e.Message, "not its offer's") {
		t.Fatalf("got %q, %v; want the greedy worker's answer refused", got, e)
	}
	for range 3 {
		if got, e := m.send(0); e != nil || got != "honest" {
			t.Fatalf("got %q, %v; want the honest worker: the greedy one is routed around", got, e)
		}
	}
	if st := m.stats("greedy"); st.Served != 1 || st.Failures != 1 || st.RefusedUntil.IsZero() {
		t.Errorf("greedy: served %d, failed %d, refused until %v; want one request, failed, and refused", st.Served, st.Failures, st.RefusedUntil)
	}
	if served := settler.ServedAmounts(); !slices.Equal(served, []uint64{200, 200, 200}) {
		t.Errorf("billed %v, want the honest worker's three answers at its price", served)
	}

	// A price raised while answering: billed at the new offer, within the
	// max price; refused over it.
	m2 := newPaidMesh(t, &router.FakeSettler{})
	m2.prices.SetBill(func(_ peer.ID, _ string, _ payments.Tokens, p *payments.Price) (payments.Bill, bool) {
		if p == nil {
			return payments.Bill{}, false // the worst case is not this test's
		}
		return payments.Bill{Worker: p.Prompt, Total: p.Prompt}, true
	})
	var id peer.ID
	id = m2.addWorker("raiser", 100, behaviour{receipts: ownKey, signs: 300, during: func() { m2.prices.Set(id, 300) }})
	if got, e := m2.send(0); e != nil || got != "raiser" {
		t.Fatalf("got %q, %v; want the answer billed at the new price", got, e)
	}
	m2.prices.Set(id, 100)
	if got, e := m2.send(200); e == nil || e.Code != inference.CodeBadReceipt || !strings.Contains(e.Message, "over the request's max price") {
		t.Fatalf("got %q, %v; want the answer at a price raised over the max price refused", got, e)
	}
}

// TestReservations: a client sends 64 requests at once whose worst cases
// its channel covers two of: two are served, the other 62 get
// payment_required at once, what is set aside never passes the deposit,
// and all of it is given back once the two are served.
func TestReservations(t *testing.T) {
	settler := &router.FakeSettler{}
	m := newPaidMesh(t, settler)
	m.prices.SetBill(func(_ peer.ID, _ string, tk payments.Tokens, _ *payments.Price) (payments.Bill, bool) {
		return payments.Bill{Worker: tk.Prompt + tk.Completion, Total: tk.Prompt + tk.Completion}, true
	})
	gate := make(chan struct{})
	open := sync.OnceFunc(func() { close(gate) })
	m.addWorker("w", 100, behaviour{during: func() { <-gate }})
	t.Cleanup(open)                         // before the mesh's: a failed test leaves no answer held
	worst := uint64(len(`{}`)/4 + 1 + 4096) // the prompt's bytes over four, and ReserveTokens
	settler.Budget(2 * worst)
	type result struct {
		code inference.Code
		ok   bool
	}
	results := make(chan result, 64)
	for range 64 {
		go func() {
			call, err := m.pool.Send(t.Context(), m.proxy.ID(), &inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", Body: []byte(`{}`)})
			if err != nil {
				results <- result{}
				return
			}
			defer call.Done()
			for {
				typ, p, err := call.Next()
				if err != nil {
					results <- result{}
					return
				}
				ev, _ := inference.DecodeEvent(typ, p)
				switch ev.Type {
				case inference.FrameEnd:
					results <- result{ok: true}
					return
				case inference.FrameError:
					results <- result{code: ev.Err.Code}
					return
				}
			}
		}()
	}
	refused := 0
	for range 62 {
		r := p2ptest.WaitFor(t, results, "a refusal")
		if r.code != inference.CodePaymentRequired {
			t.Fatalf("got %+v while two answers were in flight, want payment_required", r)
		}
		refused++
	}
	open()
	for range 2 {
		if r := p2ptest.WaitFor(t, results, "an answer"); !r.ok {
			t.Fatalf("got %+v, want one of the two answers in flight", r)
		}
	}
	p2ptest.Eventually(t, "what was set aside to be given back", func() bool {
		now, _ := settler.Reserved()
		return now == 0
	})
	if _, peak := settler.Reserved(); peak > 2*worst {
		t.Errorf("set aside up to %d, the deposit covers %d", peak, 2*worst)
	}
}

// TestReserveByMaxTokens: a request whose header caps its completion
// reserves that, not ReserveTokens: a deposit too small for the default
// worst case serves it.
func TestReserveByMaxTokens(t *testing.T) {
	settler := &router.FakeSettler{}
	m := newPaidMesh(t, settler)
	m.prices.SetBill(func(_ peer.ID, _ string, tk payments.Tokens, _ *payments.Price) (payments.Bill, bool) {
		return payments.Bill{Worker: tk.Prompt + tk.Completion, Total: tk.Prompt + tk.Completion}, true
	})
	m.addWorker("w", 100, behaviour{})
	const body = `{"max_tokens":64}`
	capped := uint64(len(body)/4 + 1 + 64)
	settler.Budget(capped)
	for _, tt := range []struct {
		maxTokens int64
		want      inference.Code // 0 for an answer
	}{{64, 0}, {0, inference.CodePaymentRequired}, {65, inference.CodePaymentRequired}} {
		call, err := m.pool.Send(t.Context(), m.proxy.ID(), &inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", MaxTokens: tt.maxTokens, Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		var got inference.Code
		for done := false; !done; {
			typ, p, err := call.Next()
			if err != nil {
				t.Fatal(err)
			}
			ev, _ := inference.DecodeEvent(typ, p)
			switch ev.Type {
			case inference.FrameEnd:
				done = true
			case inference.FrameError:
				got, done = ev.Err.Code, true
			}
		}
		call.Done()
		if got != tt.want {
			t.Errorf("max tokens %d against a deposit of %d: got %q, want %q", tt.maxTokens, capped, got, tt.want)
		}
	}
	if _, peak := settler.Reserved(); peak != capped {
		t.Errorf("set aside up to %d, want %d", peak, capped)
	}
}

func TestMaxPrice(t *testing.T) {
	type w struct {
		name  string
		price int64 // < 0: no offer
	}
	tests := []struct {
		name     string
		workers  []w
		maxPrice int64
		want     string         // the worker that answers
		code     inference.Code // or the error the client gets
		msg      string
	}{
		{"no limit", []w{{"dear", 500}, {"cheap", 100}}, 0, "cheap", 0, ""},
		{"at the limit", []w{{"dear", 500}, {"cheap", 100}}, 100, "cheap", 0, ""},
		{"only the dear one is cheap enough", []w{{"dear", 500}, {"cheaper", 400}}, 450, "cheaper", 0, ""},
		{"too expensive", []w{{"dear", 500}, {"cheap", 100}}, 99, "", inference.CodeTooExpensive,
			`no worker offers model "m" at or under 99 nanoTON per million tokens (cheapest: 100)`},
		{"unknown price without a limit", []w{{"unpriced", -1}}, 0, "unpriced", 0, ""},
		{"unknown price with a limit", []w{{"unpriced", -1}}, 1_000_000, "", inference.CodeTooExpensive,
			`no worker offers model "m" at or under 1000000 nanoTON per million tokens (no worker's price for it is known)`},
		{"unknown price skipped for a known one", []w{{"unpriced", -1}, {"dear", 500}}, 500, "dear", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			for _, w := range tt.workers {
				m.addWorker(w.name, w.price, behaviour{})
			}
			got, e := m.send(tt.maxPrice)
			if tt.code != 0 {
				if e == nil || e.Code != tt.code || e.Message != tt.msg {
					t.Fatalf("got %q, %v; want %v %q", got, e, tt.code, tt.msg)
				}
				if s := e.Code.HTTPStatus(); s != 503 {
					t.Fatalf("HTTP status %d, want 503", s)
				}
				return
			}
			if e != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, e, tt.want)
			}
			// The ceiling is the proxy's business: the worker never sees it.
			if mp := maxPrices(m.backends[got]); len(mp) != 1 || mp[0] != 0 {
				t.Fatalf("the worker got max prices %v, want [0]", mp)
			}
		})
	}
}

// TestMinTier: a worker whose verdict is under the request's minimum tier
// never gets it; when no worker serving the model is trusted enough, the
// client gets trust_too_low naming the tier wanted and the best there is.
func TestMinTier(t *testing.T) {
	type w struct {
		name  string
		tier  attest.Tier // 0: no live verdict
		price int64
	}
	tests := []struct {
		name     string
		workers  []w
		minTier  attest.Tier
		maxPrice int64
		want     string         // the worker that answers
		code     inference.Code // or the error the client gets
		msg      string
	}{
		{"any tier", []w{{"dev", attest.TierDev, 100}}, 0, 0, "dev", 0, ""},
		{"dev accepted for dev", []w{{"dev", attest.TierDev, 100}}, attest.TierDev, 0, "dev", 0, ""},
		{"dev refused for tee", []w{{"dev", attest.TierDev, 100}}, attest.TierTEE, 0, "", inference.CodeUntrusted,
			`no worker serves model "m" at trust tier tee or above (best available: dev)`},
		{"tee refused for tee-gpu", []w{{"dev", attest.TierDev, 100}, {"tee", attest.TierTEE, 100}}, attest.TierTEEGPU, 0, "", inference.CodeUntrusted,
			`no worker serves model "m" at trust tier tee-gpu or above (best available: tee)`},
		{"the trusted one, though dearer", []w{{"dev", attest.TierDev, 100}, {"gpu", attest.TierTEEGPU, 900}}, attest.TierTEE, 0, "gpu", 0, ""},
		{"trusted ones only count for the price", []w{{"dev", attest.TierDev, 100}, {"tee", attest.TierTEE, 900}}, attest.TierTEE, 500, "", inference.CodeTooExpensive,
			`no worker offers model "m" at or under 500 nanoTON per million tokens (cheapest: 900)`},
		{"no verdict is no tier", []w{{"unattested", 0, 100}, {"dev", attest.TierDev, 100}}, attest.TierDev, 0, "dev", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			for _, w := range tt.workers {
				m.addTieredWorker(w.name, w.price, w.tier, behaviour{})
			}
			got, e := m.sendReq(&inference.Request{ID: "r", Kind: inference.KindChat, Model: "m",
				MaxPrice: tt.maxPrice, MinTier: tt.minTier, Body: []byte(`{}`)})
			if tt.code != 0 {
				if e == nil || e.Code != tt.code || e.Message != tt.msg {
					t.Fatalf("got %q, %v; want %v %q", got, e, tt.code, tt.msg)
				}
				for name, b := range m.backends {
					if n := b.Calls(); n != 0 {
						t.Fatalf("worker %s got %d requests, want none", name, n)
					}
				}
				return
			}
			if e != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, e, tt.want)
			}
			// The minimum is the proxy's business: the worker never sees it.
			if mt := minTiers(m.backends[got]); len(mt) != 1 || mt[0] != 0 {
				t.Fatalf("the worker got minimum tiers %v, want [0]", mt)
			}
		})
	}
}

// TestMeasuredRouting: at equal price and load, a worker that fails or is
// slow to its first chunk loses the traffic to a healthy, fast one.
func TestMeasuredRouting(t *testing.T) {
	type w struct {
		name string
		b    behaviour
	}
	tests := []struct {
		name    string
		workers []w // in the order added: the first takes the first request
		n       int
		want    map[string]int // responses by worker
		// stats of the first worker afterwards
		failures int
		ttft     time.Duration
		success  float64
	}{
		{"failing before the first chunk", []w{{"flaky", behaviour{failBefore: true}}, {"healthy", behaviour{}}}, 10,
			// The first request fails on flaky and is retried on healthy.
			map[string]int{"healthy": 10}, 1, 0, 0.75},
		{"failing mid-stream", []w{{"flaky", behaviour{failAfter: true}}, {"healthy", behaviour{}}}, 1,
			nil, 1, 0, 0.75},
		{"slow first chunk", []w{{"slow", behaviour{firstChunk: 2 * time.Second}}, {"fast", behaviour{firstChunk: 10 * time.Millisecond}}}, 10,
			// slow takes the first; fast, unmeasured, ties on the prior
			// (slow's 2 s) and wins on requests served; then it is faster.
			map[string]int{"slow": 1, "fast": 9}, 0, 2 * time.Second, 1},
		{"healthy and equal", []w{{"a", behaviour{firstChunk: time.Second}}, {"b", behaviour{firstChunk: time.Second}}}, 10,
			// Equal measurements tie; requests served alternate them.
			map[string]int{"a": 5, "b": 5}, 0, time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			for _, w := range tt.workers {
				m.addWorker(w.name, 100, w.b)
			}
			if tt.want == nil {
				// A response that broke mid-stream reaches the client as an error.
				if _, e := m.send(0); e == nil || e.Code != inference.CodeEngine {
					t.Fatalf("got %v, want engine_error", e)
				}
				if got := m.served(10, 0); got["healthy"] != 10 {
					t.Fatalf("after the failure, served %v; want all by healthy", got)
				}
			} else if got := m.served(tt.n, 0); !equal(got, tt.want) {
				t.Fatalf("served %v, want %v", got, tt.want)
			}
			st := m.stats(tt.workers[0].name)
			if st.Failures != tt.failures || st.TTFT.Round(time.Millisecond) != tt.ttft || st.Success != tt.success || st.Active != 0 {
				t.Fatalf("stats of %s: %+v; want %d failures, ttft %s, success %g", tt.workers[0].name, st, tt.failures, tt.ttft, tt.success)
			}
		})
	}
}

// TestNewWorkerGetsTraffic: a worker added to a running proxy, with no
// measurements yet, takes the next request from workers as good as the
// average, and keeps sharing the traffic.
func TestNewWorkerGetsTraffic(t *testing.T) {
	m := newMesh(t)
	m.addWorker("a", 100, behaviour{firstChunk: 300 * time.Millisecond})
	m.addWorker("b", 100, behaviour{firstChunk: 300 * time.Millisecond})
	if got := m.served(6, 0); !equal(got, map[string]int{"a": 3, "b": 3}) {
		t.Fatalf("before: served %v", got)
	}
	m.addWorker("new", 100, behaviour{firstChunk: 300 * time.Millisecond})
	if got, e := m.send(0); got != "new" || e != nil {
		t.Fatalf("next request served by %q, %v; want the new worker", got, e)
	}
	if got := m.served(6, 0); got["new"] == 0 {
		t.Fatalf("then served %v; want the new worker among them", got)
	}
	st := m.stats("new")
	if st.Served == 0 || st.TTFT.Round(time.Millisecond) != 300*time.Millisecond || st.Success != 1 || !st.Up ||
		len(st.Models) != 1 || st.Models[0] != "m" || st.Prices["m"] != 100 || st.MaxConcurrent != 4 || st.Observed.IsZero() {
		t.Fatalf("stats of the new worker: %+v", st)
	}
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestForgottenSession: a worker that no longer holds the sealing session
// a request names goes back to the client as seal_session_unknown, not to
// another worker (the client must learn it, and resends with the
// session's key), and is not counted as the worker's failure.
func TestForgottenSession(t *testing.T) {
	m := newMesh(t)
	m.addWorker("forgot", 100, behaviour{refuse: inference.CodeSessionUnknown})
	m.addWorker("other", 100, behaviour{})
	refused := 0
	for range 4 {
		got, e := m.send(0)
		switch {
		case e != nil && e.Code == inference.CodeSessionUnknown:
			refused++
		case e != nil || got != "other":
			t.Fatalf("served by %q, %v; want other's answer or seal_session_unknown", got, e)
		}
	}
	if picked := len(m.backends["forgot"].Requests()); refused == 0 || refused != picked {
		t.Fatalf("%d requests refused as seal_session_unknown, %d picked the worker that forgot: want the same, not 0", refused, picked)
	}
	if st := m.stats("forgot"); st.Failures != 0 || st.Success != 1 {
		t.Fatalf("stats of the worker: %+v; want no failure counted", st)
	}
}
