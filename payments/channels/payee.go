package channels

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// This file is the paid side: admitting payers on credit, serving the
// payment protocol, accepting channels and taking payments.

// incoming is a channel this node is paid on.
type incoming struct {
	channel
	// payMu lets one payment (or close) at a time through, from its checks
	// to its ledger write.
	payMu sync.Mutex

	mu       sync.Mutex // guards the fields below; never held across I/O
	seqno    uint64     // of the newest state the payer signed, stored
	received uint64     // its cumulative amount
	served   uint64     // answers served, priced; starts at received
	reserved uint64     // set aside for answers in flight (Reserve)
	broken   error
}

// Admit says whether p may be served another answer: it has an open
// channel to this node, and what it has been served beyond its newest
// signed state is within the credit limit.
func (m *Manager) Admit(p peer.ID) error {
	in := m.inFrom(p)
	if in == nil {
		return ErrNoChannel
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.broken != nil {
		return in.broken
	}
	if in.served > in.received && in.served-in.received > m.cfg.MaxCredit {
		return fmt.Errorf("%w: %d nanoTON served and not paid, limit %d", ErrCredit, in.served-in.received, m.cfg.MaxCredit)
	}
	return nil
}

// Reserve sets amount aside in p's channel for an answer about to be
// served, its worst case: refused (ErrDeposit) when what the channel holds
// unspent, its deposit less what was served or paid (whichever is more)
// and less what answers in flight have set aside, does not cover it. So a
// payer's answers in flight can never cost more than its deposit, however
// many it sends at once. release gives the amount back: after Served,
// or when the answer failed.
func (m *Manager) Reserve(p peer.ID, amount uint64) (release func(), err error) {
	in := m.inFrom(p)
	if in == nil {
		return nil, ErrNoChannel
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	used := max(in.served, in.received) + in.reserved
	if used > in.info.Deposit || in.info.Deposit-used < amount {
		return nil, fmt.Errorf("%w: %d nanoTON of the channel's %d are spent or set aside for answers in flight; this one may cost up to %d",
			ErrDeposit, min(used, in.info.Deposit), in.info.Deposit, amount)
	}
	in.reserved += amount
	return sync.OnceFunc(func() {
		in.mu.Lock()
		defer in.mu.Unlock()
		in.reserved -= amount
	}), nil
}

// Served records that p was served an answer costing amount.
func (m *Manager) Served(p peer.ID, amount uint64) {
	in := m.inFrom(p)
	if in == nil {
		return
	}
	in.mu.Lock()
	in.served += amount
	in.mu.Unlock()
}

// serve answers a payer's messages on s, one reply each, until it closes
// the stream.
func (m *Manager) serve(ctx context.Context, s network.Stream) error {
	from := s.Conn().RemotePeer()
	for {
		b, err := readFrame(s)
		if err != nil {
			if errors.Is(err, errMessage) {
				return err
			}
			return nil // the payer closed the stream
		}
		s.SetDeadline(time.Now().Add(time.Minute))
		var r *reply
		q, err := decodeRequest(b)
		if err != nil {
			r = &reply{Code: codeRefused, Message: err.Error()}
		} else {
			r = m.handle(ctx, from, q)
		}
		if err := writeMessage(s, r); err != nil {
			return err
		}
	}
}

func refuse(format string, args ...any) *reply {
	return &reply{Code: codeRefused, Message: fmt.Sprintf(format, args...)}
}

// handle answers one message from a payer.
func (m *Manager) handle(ctx context.Context, from peer.ID, q *request) *reply {
	switch q.Type {
	case typeHello:
		if m.wallet == nil {
			return refuse("this node has no wallet to be paid to")
		}
		m.mu.Lock()
		draining := m.draining
		m.mu.Unlock()
		if draining { // refused before the payer deploys a channel, not after
			return refuse("this node is draining: it takes no new channel")
		}
		return &reply{Key: m.key.Public().(ed25519.PublicKey), Dest: m.wallet.Address().String(), Credit: m.cfg.MaxCredit}
	case typeOpen:
		return m.accept(ctx, from, q)
	case typePay:
		return m.paid(ctx, from, q)
	case typeClose:
		return m.closeSig(from, q)
	case typeSettle:
		return m.settleAsked(from, q)
	case typeSync:
		in, r := m.incoming(from, q.Channel)
		if r != nil {
			return r
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		return &reply{Received: in.received, Seqno: in.seqno}
	}
	return refuse("unknown message type %q", q.Type)
}

// incoming finds the channel at addr that from pays on, or the reply that
// it has none.
func (m *Manager) incoming(from peer.ID, addr string) (*incoming, *reply) {
	m.mu.Lock()
	in := m.inAddr[addr]
	m.mu.Unlock()
	if in == nil || in.peer != from {
		return nil, &reply{Code: codeUnknown, Message: fmt.Sprintf("no open channel %s from %s", addr, from)}
	}
	return in, nil
}

// acceptable is the refusal of a channel from's payer proposes, or nil:
// a quarantine outside this node's bounds, or a payer that still owes on
// the channel it has (a new channel would leave that debt behind).
func (m *Manager) acceptable(from peer.ID, q *request) *reply {
	if m.cfg.Rules != nil {
		if least := m.cfg.Rules.MinDeposit(); q.Deposit < least {
			return refuse("a deposit of %d nanoTON is under the network's minimum of %d (its root contract's min_deposit)", q.Deposit, least)
		}
	}
	if d := time.Duration(q.Quarantine) * time.Second; d < m.cfg.MinQuarantine || d > m.cfg.MaxQuarantine {
		return refuse("a quarantine of %v is outside the %v to %v this node accepts: a shorter one could end an uncooperative close before its watcher (every %v) challenges it",
			d, m.cfg.MinQuarantine, m.cfg.MaxQuarantine, m.cfg.Watch)
	}
	m.mu.Lock()
	old, draining := m.in[from], m.draining
	m.mu.Unlock()
	if draining {
		return refuse("this node is draining: it takes no new channel")
	}
	if old == nil || old.ch.Address().String() == q.Channel {
		return nil
	}
	old.mu.Lock()
	owed := old.served - min(old.received, old.served)
	old.mu.Unlock()
	if owed > m.cfg.MaxCredit {
		return refuse("%d nanoTON served on channel %s are unpaid, over the credit limit of %d: pay them before opening another channel", owed, old.ch.Address(), m.cfg.MaxCredit)
	}
	return nil
}

// carryDebt moves what from owes on old (served, not yet paid) to new,
// the channel it pays on from now on: a new channel does not forget a
// debt, and Admit and Reserve on new count it. What old is paid later,
// for answers served before the move, comes off new's debt (paid).
func carryDebt(old, new *incoming) {
	old.mu.Lock()
	owed := old.served - min(old.received, old.served)
	old.served -= owed
	old.mu.Unlock()
	new.mu.Lock()
	new.served += owed
	new.mu.Unlock()
}

// accept takes a channel a payer opened to this node, once the chain shows
// it open with the deposit claimed, at the address the parameters give.
func (m *Manager) accept(ctx context.Context, from peer.ID, q *request) *reply {
	if r := m.acceptable(from, q); r != nil {
		return r
	}
	if m.wallet == nil {
		return refuse("this node has no wallet to be paid to")
	}
	in := info{Peer: from.String(), ID: q.ID, KeyA: q.KeyA, KeyB: m.key.Public().(ed25519.PublicKey), DestA: q.DestA,
		DestB: m.wallet.Address().String(), Deposit: q.Deposit, Quarantine: q.Quarantine, Opened: m.cfg.Now().UnixMilli()}
	ch, err := in.channel(m.chain)
	if err != nil {
		return refuse("channel parameters: %v", err)
	}
	if ch.Address().String() != q.Channel {
		return refuse("the parameters give channel %s, not %s", ch.Address(), q.Channel)
	}
	st, err := ch.State(ctx)
	if err != nil {
		return &reply{Code: codeBusy, Message: fmt.Sprintf("reading the channel: %v", err)}
	}
	if st.Status != ton.StatusOpen || st.BalanceA.Cmp(new(big.Int).SetUint64(q.Deposit)) < 0 {
		return refuse("channel %s is %s with %s nanoTON from A, not open with %d", ch.Address(), st.Status, st.BalanceA, q.Deposit)
	}
	c := channel{info: in, id: idOf(ch), ch: ch, peer: from}
	m.mu.Lock()
	_, known := m.inAddr[q.Channel]
	m.mu.Unlock()
	if known {
		return m.ownReply(ch) // announced again
	}
	if err := m.storeInfo(c.id, in); err != nil {
		return &reply{Code: codeBusy, Message: "storing the channel: " + err.Error()}
	}
	in2 := &incoming{channel: c}
	m.mu.Lock()
	old := m.in[from]
	m.in[from] = in2
	m.inAddr[q.Channel] = in2
	m.all = append(m.all, &in2.channel)
	m.mu.Unlock()
	if old != nil {
		carryDebt(old, in2)
	}
	m.log.Info("payment channel accepted", "peer", from, "channel", ch.Address(), "deposit_nanoton", q.Deposit)
	return m.ownReply(ch)
}

// ownReply answers an open with this node's own semi-channel, signed.
func (m *Manager) ownReply(ch *ton.Channel) *reply {
	own, err := m.ownState(ch)
	if err != nil {
		return &reply{Code: codeBusy, Message: err.Error()}
	}
	return &reply{Own: own}
}

// ownState is a payee's own semi-channel, signed: it never sends nor
// commits, so seqno 0 and nothing sent, encoded.
func (m *Manager) ownState(ch *ton.Channel) ([]byte, error) {
	st, err := ch.SignState(m.key, ton.State{Seqno: 0, Sent: new(big.Int)})
	if err != nil {
		return nil, err
	}
	return st.Encode()
}

// paid takes a payment: a newer signed state, and for a proxy the receipts
// it pays for. The state, and a proxy's new states to the workers it owes,
// are stored together before the payer hears back.
func (m *Manager) paid(ctx context.Context, from peer.ID, q *request) *reply {
	in, r := m.incoming(from, q.Channel)
	if r != nil {
		return r
	}
	st, err := ton.DecodeSignedState(q.State)
	if err != nil {
		return refuse("%v", err)
	}
	if !st.Sent.IsUint64() {
		return refuse("amount out of range")
	}
	sent := st.Sent.Uint64()

	// One payment at a time per channel; Admit and Served take only
	// in.mu, so they never wait for this payment's disk write.
	in.payMu.Lock()
	defer in.payMu.Unlock()
	received, r := m.checkStateLocked(in, st, sent)
	if r != nil {
		return r
	}
	chans := []ledger.Channel{{ID: in.id, State: ledger.State{Seqno: st.Seqno, Received: sent, Signed: q.State}}}
	var owed map[peer.ID]uint64
	if m.cfg.Forward {
		if owed, err = m.split(q, received, sent); err != nil {
			return refuse("%v", err)
		}
	}
	// What the proxy paid ahead for these answers is not paid again.
	restore := m.matchAhead(owed)
	fw, err := m.signOwed(owed)
	defer fw.unlock()
	if err != nil {
		restore()
		return &reply{Code: codeBusy, Message: err.Error()}
	}
	if err := m.led.PutAll(ctx, append(chans, fw.chans...)...); err != nil {
		restore()
		// Whether it landed is unknown: stop using the channel rather than
		// answer a resend from memory that may not match the disk.
		in.mu.Lock()
		in.broken = fmt.Errorf("%w: storing a payment: %v", ErrBroken, err)
		in.mu.Unlock()
		m.log.Error("storing a payment failed; channel no longer used", "peer", from, "err", err)
		return &reply{Code: codeBusy, Message: "storing the payment failed"}
	}
	in.mu.Lock()
	in.seqno, in.received = st.Seqno, sent
	early := sent - min(sent, in.served) // paid here for answers counted on the channel after it
	in.served = max(in.served, sent)
	in.mu.Unlock()
	if early > 0 {
		if cur := m.inFrom(from); cur != nil && cur != in {
			cur.mu.Lock()
			cur.served -= min(early, cur.served-min(cur.served, cur.received))
			cur.mu.Unlock()
		}
	}
	fw.commit()
	return &reply{Received: sent, Seqno: st.Seqno, Settle: m.settleDue(in, sent)}
}

// settleDue says whether the payer of in should settle it: it has paid
// SettleAbove on it, or it is SettleAfter old.
func (m *Manager) settleDue(in *incoming, received uint64) bool {
	if m.cfg.SettleAbove > 0 && received >= m.cfg.SettleAbove {
		return true
	}
	return m.cfg.SettleAfter > 0 && m.cfg.Now().Sub(time.UnixMilli(in.info.Opened)) >= m.cfg.SettleAfter
}

// checkStateLocked checks a payment's state st, paying sent in all,
// against what in holds, and returns the amount held. A non-nil reply
// answers the payment instead: a refusal, or what is held when st is a
// resend. in.payMu must be held.
func (m *Manager) checkStateLocked(in *incoming, st ton.SignedState, sent uint64) (received uint64, r *reply) {
	in.mu.Lock()
	broken, seqno, received := in.broken, in.seqno, in.received
	in.mu.Unlock()
	if broken != nil {
		return 0, refuse("%v", broken)
	}
	if st.Seqno <= seqno {
		if sent <= received {
			// A resend of a state already held: say what is held.
			return 0, &reply{Received: received, Seqno: seqno}
		}
		return 0, refuse("seqno %d is not above %d", st.Seqno, seqno)
	}
	if sent < received {
		return 0, refuse("cumulative amount %d is below %d", sent, received)
	}
	if sent > in.info.Deposit {
		return 0, refuse("cumulative amount %d is above the deposit %d", sent, in.info.Deposit)
	}
	if !in.ch.VerifyState(in.info.KeyA, st) {
		return 0, refuse("state signature does not verify")
	}
	return received, nil
}
