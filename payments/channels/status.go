package channels

import (
	"maps"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments/ledger"
)

// ChannelStatus is one channel, for status and `cocoon channel list`.
type ChannelStatus struct {
	Peer     peer.ID
	Address  string
	Payer    bool   // this node pays on it
	Deposit  uint64 // nanoTON
	Seqno    uint64
	Sent     uint64 // paid, signed (payer)
	Received uint64 // received, signed (payee)
	Unsigned uint64 // payer: owed, not yet signed or acknowledged; payee: served, not yet paid
	Reserved uint64 // payee: set aside for answers in flight (Reserve)
	State    string // open, closing, closed, replaced, broken
}

// List reports every channel this node has, oldest first.
func (m *Manager) List() []ChannelStatus {
	m.mu.Lock()
	all := make([]channel, len(m.all)) // copies: info changes under m.mu
	for i, c := range m.all {
		all[i] = *c
	}
	outs, ins := maps.Clone(m.outs), make(map[ledger.ID]*incoming)
	for _, in := range m.inAddr {
		ins[in.id] = in
	}
	m.mu.Unlock()
	var list []ChannelStatus
	for _, c := range all {
		list = append(list, m.status(c, outs[c.id], ins[c.id]))
	}
	return list
}

// status reports c: from o when this node pays on it, from in when it is
// paid on it, else (closed or replaced) from the ledger.
func (m *Manager) status(c channel, o *outgoing, in *incoming) ChannelStatus {
	cs := ChannelStatus{Peer: c.peer, Address: c.ch.Address().String(), Payer: c.info.Payer, Deposit: c.info.Deposit, State: "open"}
	switch {
	case o != nil:
		o.mu.Lock()
		cs.Seqno, cs.Sent = o.seqno, o.sent
		cs.Unsigned = max(o.queued, o.sent-min(o.sent, o.acked))
		if o.broken != nil {
			cs.State = stateOf(o.broken)
		}
		o.mu.Unlock()
	case in != nil:
		in.mu.Lock()
		cs.Seqno, cs.Received = in.seqno, in.received
		cs.Unsigned = in.served - min(in.served, in.received)
		cs.Reserved = in.reserved
		if in.broken != nil {
			cs.State = stateOf(in.broken)
		}
		in.mu.Unlock()
	default:
		st, err := m.led.Get(c.id)
		if err == nil {
			cs.Seqno, cs.Sent, cs.Received = st.Seqno, st.Sent, st.Received
		}
		cs.State = "replaced"
		if c.info.Closed || c.info.Payer { // a channel paid on leaves outs only when closed, one paid by in inAddr
			cs.State = "closed"
		}
	}
	return cs
}

// stateOf is the State of a channel that is no longer used, from why.
func stateOf(err error) string {
	if strings.Contains(err.Error(), "closing") {
		return "closing"
	}
	return "broken"
}

// Totals are what a node has paid and been paid, over all its channels,
// as signed states.
func (m *Manager) Totals() (spent, earned uint64) {
	for _, c := range m.List() {
		spent += c.Sent
		earned += c.Received
	}
	return spent, earned
}
