package channels

import (
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/ledger"
)

// This file is a proxy's forwarding (Config.Forward): checking the entries
// of a client's payment and signing the workers their parts with it.

// maxRelayed bounds the checked receipts Relaying remembers.
const maxRelayed = 1 << 16

// Relaying counts part, worker's share of an answer whose End (with its
// receipt) is about to reach the client, as due to the worker until a
// client's payment for it is forwarded. It is counted before the client
// can pay, so that a payment arriving before the router's check is taken
// from it and the worker is not paid twice. checked follows with the
// receipt once the router compared it with the answer it relayed (so a
// client's payment for it needs no second signature check), or with nil
// when it refused the receipt: then part is no longer due.
//
// When what is due to a worker passes AheadAbove (or a quarter of the
// worker's own credit, if less), the proxy pays it ahead from its own
// channel (payAhead): no client's debt can bring a worker's credit with
// this proxy near its limit.
func (m *Manager) Relaying(worker peer.ID, part uint64) (checked func(receipt []byte)) {
	m.mu.Lock()
	m.due[worker] += part
	m.mu.Unlock()
	return func(receipt []byte) {
		m.mu.Lock()
		if receipt == nil {
			// A part already paid ahead stays in ahead, and is taken from
			// the worker's next answers' payments.
			if m.due[worker] -= min(m.due[worker], part); m.due[worker] == 0 {
				delete(m.due, worker)
			}
			m.mu.Unlock()
			return
		}
		if len(m.relayed) >= maxRelayed {
			clear(m.relayed) // the next payments verify signatures again
		}
		m.relayed[payments.Hash(receipt)] = struct{}{}
		over := m.due[worker] > m.aheadAboveLocked(worker)
		m.mu.Unlock()
		if over {
			m.payAhead(worker)
		}
	}
}

// aheadAboveLocked is what may be due to worker before the proxy pays it
// ahead: AheadAbove, or a quarter of the credit the worker said it gives
// (hello) if that is less, leaving the rest for the answers served while
// the payment travels, so that no worker refuses this proxy for its
// clients' debts whatever its own credit setting.
func (m *Manager) aheadAboveLocked(worker peer.ID) uint64 {
	limit := m.cfg.AheadAbove
	if o := m.out[worker]; o != nil && o.info.Credit > 0 {
		limit = min(limit, o.info.Credit/4)
	}
	return limit
}

// payAhead pays worker what is due to it now, on a state of its own
// stored before it is sent; the clients' payments for those answers then
// pay the worker nothing more (matchAhead). The amount counts as paid
// ahead from the start, so that a client's payment forwarded meanwhile is
// taken from it rather than paid as well; what no channel can take now
// goes back to due.
func (m *Manager) payAhead(worker peer.ID) {
	m.mu.Lock()
	amount := m.due[worker]
	if amount == 0 {
		m.mu.Unlock()
		return
	}
	delete(m.due, worker)
	m.ahead[worker] += amount
	m.mu.Unlock()
	f, err := m.signOwed(map[peer.ID]uint64{worker: amount})
	f.ahead = true
	if err == nil && len(f.chans) > 0 {
		err = m.led.PutAll(m.ctx, f.chans...)
	}
	if err == nil {
		for _, o := range f.outs {
			o.urgent.Store(true) // no batching: the worker's credit is what this is for
		}
		f.commit()
	}
	paid := f.done && f.paid(worker)
	f.unlock()
	if paid {
		return
	}
	// Unpaid, the whole amount is due again. Payments taken meanwhile
	// from ahead were taken from what was paid ahead before, if anything,
	// so ahead loses the amount, or what is left of it.
	m.mu.Lock()
	if m.ahead[worker] -= min(m.ahead[worker], amount); m.ahead[worker] == 0 {
		delete(m.ahead, worker)
	}
	m.due[worker] += amount
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("paying a worker ahead of its clients failed; still due", "worker", worker, "nanoton", amount, "err", err)
	}
}

// matchAhead takes from owed, what a client's payment owes each worker,
// what this proxy paid that worker ahead, and what is left of owed from
// what is due; restore gives both back, for a payment that is not stored
// (and will be sent again).
func (m *Manager) matchAhead(owed map[peer.ID]uint64) (restore func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	type took struct{ ahead, due uint64 }
	var taken map[peer.ID]took // made only when something was taken
	for w, x := range owed {
		var tk took
		if tk.ahead = min(x, m.ahead[w]); tk.ahead > 0 {
			if m.ahead[w] -= tk.ahead; m.ahead[w] == 0 {
				delete(m.ahead, w)
			}
			owed[w] = x - tk.ahead
		}
		if tk.due = min(m.due[w], owed[w]); tk.due > 0 {
			if m.due[w] -= tk.due; m.due[w] == 0 {
				delete(m.due, w)
			}
		}
		if tk != (took{}) {
			if taken == nil {
				taken = make(map[peer.ID]took)
			}
			taken[w] = tk
		}
	}
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for w, tk := range taken {
			if tk.ahead > 0 {
				m.ahead[w] += tk.ahead
			}
			if tk.due > 0 {
				m.due[w] += tk.due
			}
		}
	}
}

// split checks a client's payment entries and says what each worker is
// owed for the new ones: the entries from q.Base up to received are held
// already, the rest must add up to sent − received, and each must be a
// receipt its worker signed for an answer through this proxy, priced at
// its price plus this proxy's fee.
func (m *Manager) split(q *request, received, sent uint64) (map[peer.ID]uint64, error) {
	if q.Base > received {
		return nil, fmt.Errorf("payment counts from %d, above the %d held", q.Base, received)
	}
	cum, i := q.Base, 0
	for i < len(q.Entries) && cum < received {
		next := cum + q.Entries[i].Amount
		if next < cum {
			return nil, errors.New("entries overflow")
		}
		cum = next
		i++
	}
	if cum != received {
		return nil, fmt.Errorf("entries from %d do not meet the %d held", q.Base, received)
	}
	owed := make(map[peer.ID]uint64)
	var sum uint64
	for _, e := range q.Entries[i:] {
		w, part, err := m.entry(e)
		if err != nil {
			return nil, err
		}
		owed[w] += part
		sum += e.Amount // each is a bill in int64, at most 1,024 of them: no wrap
	}
	if sum != sent-received {
		return nil, fmt.Errorf("entries add up to %d, the state pays %d more", sum, sent-received)
	}
	return owed, nil
}

// entry checks one new entry of a client's payment and returns the worker
// it pays and that worker's part.
func (m *Manager) entry(e Entry) (peer.ID, uint64, error) {
	// A receipt this proxy compared with the answer it relayed needs no
	// second signature check; one from before a restart does.
	h := payments.Hash(e.Receipt)
	m.mu.Lock()
	_, seen := m.relayed[h]
	delete(m.relayed, h)
	m.mu.Unlock()
	open := payments.VerifyNamed
	if seen {
		open = payments.OpenNamed
	}
	r, err := open(e.Receipt)
	if err != nil {
		return "", 0, fmt.Errorf("receipt: %w", err)
	}
	if r.Proxy != m.self {
		return "", 0, fmt.Errorf("receipt %s is for proxy %s", r.RequestID, r.Proxy)
	}
	bill, err := payments.Cost(r.Tokens, r.Price, m.cfg.FeePPM)
	if err != nil {
		return "", 0, fmt.Errorf("receipt %s: %w", r.RequestID, err)
	}
	if uint64(bill.Total) != e.Amount {
		return "", 0, fmt.Errorf("receipt %s costs %d, paid %d", r.RequestID, bill.Total, e.Amount)
	}
	return r.Worker, uint64(bill.Worker), nil
}

// owedStates are the new states a proxy signs to the workers a client's
// payment owes, to be stored in the same ledger transaction as it.
type owedStates struct {
	m      *Manager
	locked []*outgoing        // channels whose signMu is held until unlock, in locking order
	outs   []*outgoing        // the channels that get a new state
	chans  []ledger.Channel   // their new states, in the order of outs
	took   map[peer.ID]uint64 // parts owed from before that these states pay: back to behind unless committed
	later  map[peer.ID]uint64 // parts no channel could take now: into behind once committed
	done   bool               // committed
	ahead  bool               // payAhead's: what no channel took stays due, not behind
}

// signOwed signs, for each worker owed, the next state of the channel to
// it, taking the channels in a fixed order so that concurrent payments
// lock them alike. Each channel's signMu stays held until unlock, even on
// error, so that nothing else is signed on it before the states are
// stored; the caller defers unlock. The state also pays what the worker
// was owed from before (behind). A worker with no channel it can be paid
// on now (none, closing, or one whose deposit the state would pass) gets
// its part on the next state to it, once a channel is open: commit keeps
// it in behind.
func (m *Manager) signOwed(owed map[peer.ID]uint64) (*owedStates, error) {
	f := &owedStates{m: m, took: make(map[peer.ID]uint64), later: make(map[peer.ID]uint64)}
	m.mu.Lock()
	for w := range m.behind {
		if _, ok := owed[w]; !ok {
			if owed == nil {
				owed = make(map[peer.ID]uint64)
			}
			owed[w] = 0 // owed from before only
		}
	}
	m.mu.Unlock()
	for _, w := range sortedPeers(owed) {
		o := m.outTo(w)
		if o == nil {
			f.later[w] = owed[w]
			continue
		}
		o.signMu.Lock()
		f.locked = append(f.locked, o)
		m.mu.Lock()
		before := m.behind[w]
		delete(m.behind, w)
		m.mu.Unlock()
		f.took[w] = before
		o.mu.Lock()
		next := ledger.State{Seqno: o.seqno + 1, Sent: o.sent + owed[w] + before}
		usable := o.broken == nil && next.Sent <= o.info.Deposit
		o.mu.Unlock()
		if !usable {
			f.later[w] = owed[w]
			continue
		}
		if next.Sent == o.sent {
			continue // nothing owed
		}
		_, enc, err := m.signState(o, next.Seqno, next.Sent)
		if err != nil {
			return f, err
		}
		next.Signed = enc
		f.outs = append(f.outs, o)
		f.chans = append(f.chans, ledger.Channel{ID: o.id, State: next})
	}
	return f, nil
}

// commit records the new states, once stored, as their channels' newest,
// and wakes their senders; the parts no channel took are owed on the next
// states to their workers.
func (f *owedStates) commit() {
	for i, o := range f.outs {
		st := f.chans[i].State
		o.mu.Lock()
		o.seqno, o.sent, o.enc = st.Seqno, st.Sent, st.Signed
		o.mu.Unlock()
		o.poke()
	}
	f.done = true
	for w, part := range f.later {
		if part > 0 && !f.ahead {
			f.m.log.Warn("no channel to pay a worker on now; its part is owed on the next one", "worker", w, "nanoton", part)
		}
	}
}

// unlock releases the channels signOwed locked, last locked first, and
// settles behind: what a committed payment could not pay joins it, and
// what an uncommitted one took returns to it.
func (f *owedStates) unlock() {
	f.m.mu.Lock()
	for w, part := range f.later {
		if f.done && part > 0 && !f.ahead {
			f.m.behind[w] += part
		}
	}
	for w, part := range f.took {
		if part > 0 && (!f.done || !f.paid(w)) {
			f.m.behind[w] += part
		}
	}
	f.m.mu.Unlock()
	for _, o := range slices.Backward(f.locked) {
		o.signMu.Unlock()
	}
}

// paid says whether a committed state pays worker w.
func (f *owedStates) paid(w peer.ID) bool {
	for _, o := range f.outs {
		if o.peer == w {
			return true
		}
	}
	return false
}

func sortedPeers(m map[peer.ID]uint64) []peer.ID {
	out := make([]peer.ID, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
