package router

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/payments"
)

// The fakes of this package's tests, exported for its external tests too.
// All are safe for concurrent use.

// FakeVerdicts holds a verdict tier per peer: one Set, else Default; 0
// is no verdict.
type FakeVerdicts struct {
	mu      sync.Mutex
	tiers   map[peer.ID]attest.Tier
	Default attest.Tier // the tier of a peer never Set
}

// Set gives p a verdict of tier t; 0 takes it away.
func (f *FakeVerdicts) Set(p peer.ID, t attest.Tier) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tiers == nil {
		f.tiers = make(map[peer.ID]attest.Tier)
	}
	f.tiers[p] = t
}

func (f *FakeVerdicts) Verified(p peer.ID) (attest.Verdict, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tiers[p]
	if !ok {
		t = f.Default
	}
	return attest.Verdict{Tier: t, Kind: "fake"}, t != 0
}

// Forget takes p's verdict away.
func (f *FakeVerdicts) Forget(p peer.ID) { f.Set(p, 0) }

// Attest gives back p's verdict; it verifies nobody new.
func (f *FakeVerdicts) Attest(_ context.Context, p peer.ID) (attest.Verdict, error) {
	if v, ok := f.Verified(p); ok {
		return v, nil
	}
	return attest.Verdict{}, errors.New("fake verdicts: no verdict")
}

// FakePricer knows a PerMillion price per worker, for any model or only
// for Model when that is set, and bills answers with the function SetBill
// gave it (none: no answer is priced). PerMillion takes no lock, so that
// BenchmarkPick measures the router.
type FakePricer struct {
	Model string // the one model workers' prices are known for; "": any

	prices atomic.Pointer[map[peer.ID]int64] // replaced, never changed, by Set

	mu   sync.Mutex // guards bill, and serializes Set
	bill func(p peer.ID, model string, t payments.Tokens, receipt *payments.Price) (payments.Bill, bool)
}

// Set makes v what a client pays through worker p per million tokens.
func (f *FakePricer) Set(p peer.ID, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[peer.ID]int64)
	if old := f.prices.Load(); old != nil {
		maps.Copy(m, *old)
	}
	m[p] = v
	f.prices.Store(&m)
}

// SetBill makes bill price every answer from now on.
func (f *FakePricer) SetBill(bill func(p peer.ID, model string, t payments.Tokens, receipt *payments.Price) (payments.Bill, bool)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bill = bill
}

func (f *FakePricer) PerMillion(p peer.ID, model string) (int64, bool) {
	m := f.prices.Load()
	if m == nil {
		return 0, false
	}
	v, ok := (*m)[p]
	return v, ok && (f.Model == "" || model == f.Model)
}

// Offered is worker p's offer: its PerMillion price, all of it on prompt
// tokens.
func (f *FakePricer) Offered(p peer.ID, model string) (payments.Price, bool) {
	v, ok := f.PerMillion(p, model)
	return payments.Price{Prompt: v}, ok
}

func (f *FakePricer) Bill(p peer.ID, model string, t payments.Tokens, receipt *payments.Price) (payments.Bill, bool) {
	f.mu.Lock()
	bill := f.bill
	f.mu.Unlock()
	if bill == nil {
		return payments.Bill{}, false
	}
	return bill(p, model, t, receipt)
}

// FakeSettler admits peers unless Refuse gave a reason not to, can pay every peer
// but those marked unpayable, and records what it is told of answers. It
// is a worker.Settler too.
type FakeSettler struct {
	mu        sync.Mutex
	refuse    error
	unpayable map[peer.ID]bool
	served    []uint64
	relayed   [][]byte
	paid      []uint64 // the worker parts of receipts Relaying's checked was given
	// budget, when not zero, is what Reserve lets be set aside at once;
	// reserved is what is, and peak the most there was.
	budget, reserved, peak uint64
}

// Budget makes Reserve refuse to set aside more than b at once.
func (f *FakeSettler) Budget(b uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.budget = b
}

// Reserved is what is set aside now, and the most there ever was.
func (f *FakeSettler) Reserved() (now, peak uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reserved, f.peak
}

func (f *FakeSettler) Reserve(_ peer.ID, amount uint64) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget > 0 && f.reserved+amount > f.budget {
		return nil, fmt.Errorf("fake settler: %d reserved, %d more is over the budget of %d", f.reserved, amount, f.budget)
	}
	f.reserved += amount
	f.peak = max(f.peak, f.reserved)
	return sync.OnceFunc(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reserved -= amount
	}), nil
}

// Refuse makes Admit answer err (nil: admit).
func (f *FakeSettler) Refuse(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse = err
}

// Unpayable makes Payable refuse p.
func (f *FakeSettler) Unpayable(p peer.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unpayable == nil {
		f.unpayable = make(map[peer.ID]bool)
	}
	f.unpayable[p] = true
}

// ServedAmounts returns the amounts Served was told of, in order.
func (f *FakeSettler) ServedAmounts() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.served...)
}

// WorkerParts returns the parts of the receipts the router checked, in order.
func (f *FakeSettler) WorkerParts() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.paid...)
}

// RelayedReceipts returns the receipts the router checked, in order.
func (f *FakeSettler) RelayedReceipts() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.relayed...)
}

func (f *FakeSettler) Admit(peer.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refuse
}

func (f *FakeSettler) Payable(p peer.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unpayable[p] {
		return errors.New("fake settler: no channel")
	}
	return nil
}

func (f *FakeSettler) Served(_ peer.ID, amount uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served = append(f.served, amount)
}

func (f *FakeSettler) Relaying(worker peer.ID, part uint64) func(receipt []byte) {
	return func(receipt []byte) {
		if receipt == nil {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.relayed = append(f.relayed, receipt)
		f.paid = append(f.paid, part)
	}
}

var (
	_ Verdicts = (*FakeVerdicts)(nil)
	_ Pricer   = (*FakePricer)(nil)
	_ Settler  = (*FakeSettler)(nil)
)
