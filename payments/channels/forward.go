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

// maxRelayed bounds the receipts Relayed remembers.
const maxRelayed = 1 << 16

// Relayed records that this proxy compared receipt with the answer it
// relayed (the router's check), so that a client's payment for it needs
// no second signature check.
func (m *Manager) Relayed(receipt []byte) {
	h := payments.Hash(receipt)
	m.mu.Lock()
	if len(m.relayed) >= maxRelayed {
		clear(m.relayed) // the next payments verify signatures again
	}
	m.relayed[h] = struct{}{}
	m.mu.Unlock()
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
	locked []*outgoing      // channels whose signMu is held until unlock, in locking order
	outs   []*outgoing      // the channels that get a new state
	chans  []ledger.Channel // their new states, in the order of outs
}

// signOwed signs, for each worker owed, the next state of the channel to
// it, taking the channels in a fixed order so that concurrent payments
// lock them alike. Each channel's signMu stays held until unlock, even on
// error, so that nothing else is signed on it before the states are
// stored; the caller defers unlock. A worker with no channel, or whose
// deposit its new state would pass, gets nothing: its part stays with the
// proxy.
func (m *Manager) signOwed(owed map[peer.ID]uint64) (*owedStates, error) {
	f := &owedStates{}
	for _, w := range sortedPeers(owed) {
		o := m.outTo(w)
		if o == nil {
			m.log.Warn("owing a worker with no channel to it; its part stays with the proxy", "worker", w, "nanoton", owed[w])
			continue
		}
		o.signMu.Lock()
		f.locked = append(f.locked, o)
		o.mu.Lock()
		next := ledger.State{Seqno: o.seqno + 1, Sent: o.sent + owed[w]}
		over := next.Sent > o.info.Deposit
		o.mu.Unlock()
		if over {
			m.log.Error("worker owed more than its channel's deposit; its part stays with the proxy", "worker", w, "nanoton", owed[w])
			continue
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
// and wakes their senders.
func (f *owedStates) commit() {
	for i, o := range f.outs {
		st := f.chans[i].State
		o.mu.Lock()
		o.seqno, o.sent, o.enc = st.Seqno, st.Sent, st.Signed
		o.mu.Unlock()
		o.poke()
	}
}

// unlock releases the channels signOwed locked, last locked first.
func (f *owedStates) unlock() {
	for _, o := range slices.Backward(f.locked) {
		o.signMu.Unlock()
	}
}

func sortedPeers(m map[peer.ID]uint64) []peer.ID {
	out := make([]peer.ID, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
