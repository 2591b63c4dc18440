package channels

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// This file is closing channels: cooperatively (CloseChannel, and the
// payee's signature on it), uncooperatively (Dispute, FinishClose), and a
// payee's watch for a payer's close with an old state.

// CloseChannel closes the channel to p cooperatively: it waits until the
// payee holds every state, gets its signature on the final split, checks
// it and sends the close from the wallet.
func (m *Manager) CloseChannel(ctx context.Context, p peer.ID) error {
	o := m.outTo(p)
	if o == nil {
		return ErrNoChannel
	}
	return m.closeOut(ctx, o)
}

// settleReplaced closes cooperatively each channel this node pays on that
// a newer one to the same payee replaced, once its payee holds every state
// on it: that pays the payee out on chain and returns the rest of the
// deposit.
func (m *Manager) settleReplaced(ctx context.Context) {
	m.mu.Lock()
	var done []*outgoing
	for _, o := range m.outs {
		if m.out[o.peer] != o {
			done = append(done, o)
		}
	}
	m.mu.Unlock()
	now := m.cfg.Now()
	for _, o := range done {
		o.mu.Lock()
		ready := o.synced && (o.broken == nil || o.broken == errClosing) && o.acked == o.sent && len(o.pending) == 0 &&
			!now.Before(o.closeAt)
		o.mu.Unlock()
		if !ready {
			continue
		}
		if err := m.closeOut(ctx, o); err != nil && ctx.Err() == nil {
			o.mu.Lock()
			o.closeAt = now.Add(settleRetry)
			o.mu.Unlock()
			m.log.Warn("settling a replaced channel", "peer", o.peer, "channel", o.ch.Address(), "retry_in", settleRetry, "err", err)
		}
	}
}

// errClosing breaks a channel that is being closed cooperatively; a close
// that failed is tried again settleRetry later.
var errClosing = fmt.Errorf("%w: closing", ErrBroken)

const settleRetry = 30 * time.Second

// closeOut closes o cooperatively.
func (m *Manager) closeOut(ctx context.Context, o *outgoing) error {
	p := o.peer
	// signMu: a proxy's forwarding (signOwed) signs on o while holding it,
	// and stores the state before it lets go; the close waits for that and
	// then sees the state, or the forwarding sees o closing.
	o.signMu.Lock()
	o.mu.Lock()
	if o.acked != o.sent || len(o.pending) > 0 {
		o.mu.Unlock()
		o.signMu.Unlock()
		return fmt.Errorf("closing: %d nanoTON not yet acknowledged by the payee; try again shortly", o.acked+o.queued-min(o.acked, o.sent))
	}
	o.broken = errClosing
	seqno, sent := o.seqno, o.sent
	o.mu.Unlock()
	o.signMu.Unlock()
	s, err := m.h.NewStream(network.WithAllowLimitedConn(ctx, "pay"), p, m.proto)
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := roundTrip(s, &request{Type: typeClose, Channel: o.ch.Address().String()})
	if err != nil {
		return err
	}
	if r.Received != sent || r.Seqno != seqno {
		return fmt.Errorf("closing: payee holds %d at seqno %d, this node signed %d at %d", r.Received, r.Seqno, sent, seqno)
	}
	c := ton.CloseFor(new(big.Int).SetUint64(o.info.Deposit), ton.State{Seqno: seqno, Sent: new(big.Int).SetUint64(sent)})
	if !o.ch.VerifyClose(o.info.KeyB, c, r.Signature) {
		return errors.New("closing: the payee's signature on the close does not verify")
	}
	sigA, err := o.ch.SignClose(m.key, c)
	if err != nil {
		return err
	}
	if _, err := o.ch.CooperativeClose(ctx, m.wallet, c, sigA, r.Signature); err != nil {
		return fmt.Errorf("closing: %w", err)
	}
	if err := m.closed(o); err != nil {
		return err
	}
	m.log.Info("payment channel closed", "peer", p, "channel", o.ch.Address(), "paid_nanoton", sent,
		"returned_nanoton", o.info.Deposit-sent)
	return nil
}

// closed records that o is closed on chain, in the ledger and in memory:
// it is no longer paid on.
func (m *Manager) closed(o *outgoing) error {
	closed := o.info
	closed.Closed = true
	if err := m.storeInfo(o.id, closed); err != nil {
		return err
	}
	m.mu.Lock()
	o.info.Closed = true
	if m.out[o.peer] == o {
		delete(m.out, o.peer)
	}
	delete(m.outs, o.id)
	m.mu.Unlock()
	return nil
}

// closeSig signs the cooperative close of the payer's channel at the
// newest state this node holds, and stops serving on it.
func (m *Manager) closeSig(from peer.ID, q *request) *reply {
	in, r := m.incoming(from, q.Channel)
	if r != nil {
		return r
	}
	in.payMu.Lock()
	defer in.payMu.Unlock()
	in.mu.Lock()
	defer in.mu.Unlock()
	c := ton.CloseFor(new(big.Int).SetUint64(in.info.Deposit), ton.State{Seqno: in.seqno, Sent: new(big.Int).SetUint64(in.received)})
	sig, err := in.ch.SignClose(m.key, c)
	if err != nil {
		return &reply{Code: codeBusy, Message: err.Error()}
	}
	in.broken = fmt.Errorf("%w: closing", ErrBroken)
	m.wg.Go(func() { m.awaitPayout(in) })
	return &reply{Received: in.received, Seqno: in.seqno, Signature: sig}
}

// awaitPayout reads in on chain every second, for up to payoutWait after
// this node signed its cooperative close, to count it settled as soon as
// the payer's close lands rather than at the next watch pass.
func (m *Manager) awaitPayout(in *incoming) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	deadline := time.After(payoutWait)
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-deadline:
			return
		case <-t.C:
		}
		if st, err := in.ch.State(m.ctx); closedOnChain(st, err) {
			if err := m.paidOut(in); err != nil {
				m.log.Warn("recording a payout", "channel", in.ch.Address(), "err", err)
			}
			return
		}
	}
}

// closedOnChain says whether a channel this node was paid on, open when it
// was accepted, is closed and paid out, from the chain's answer st, err: the
// contract is gone, or reset to wait for a new deposit.
func closedOnChain(st *ton.OnChain, err error) bool {
	if err != nil {
		return errors.Is(err, ton.ErrNotDeployed)
	}
	return st.Status == ton.StatusClosed || st.Status == ton.StatusUninit
}

// payoutWait is how long a payee watches for the close it signed.
const payoutWait = 5 * time.Minute

// Dispute starts the uncooperative close of the channel p pays this node
// on, with the newest state p signed (from the ledger), for a payee whose
// payer is gone: no more answers are served on it, and once the quarantine
// (and the conditional window) is over, FinishClose pays out. p may
// challenge meanwhile with a newer state, which only it could sign. With
// no channel from p, it disputes the channel this node pays p on instead.
func (m *Manager) Dispute(ctx context.Context, p peer.ID) error {
	in := m.inFrom(p)
	if in == nil {
		if o := m.outTo(p); o != nil {
			return m.disputeAsPayer(ctx, o)
		}
		return ErrNoChannel
	}
	in.payMu.Lock()
	defer in.payMu.Unlock()
	stored, err := m.led.Get(in.id)
	if err != nil {
		return fmt.Errorf("uncooperative close: nothing to claim on channel %s: %w", in.ch.Address(), err)
	}
	last, err := ton.DecodeSignedState(stored.Signed)
	if err != nil {
		return fmt.Errorf("uncooperative close: the stored state: %w", err)
	}
	own, err := m.stopForClose(in)
	if err != nil {
		return err
	}
	if _, err := in.ch.StartClose(ctx, m.wallet, m.key, false, last, own); err != nil {
		return fmt.Errorf("uncooperative close: %w", err)
	}
	m.log.Info("uncooperative close started", "peer", p, "channel", in.ch.Address(), "claimed_nanoton", stored.Received,
		"quarantine", time.Duration(in.info.Quarantine)*time.Second)
	return nil
}

// disputeAsPayer starts the uncooperative close of a channel this node pays
// on, for a payer whose payee is gone: with its own newest state and the
// payee's own semi-channel it sent at the open. The payee may challenge
// with the same newest state; nothing newer exists.
func (m *Manager) disputeAsPayer(ctx context.Context, o *outgoing) error {
	o.signMu.Lock()
	defer o.signMu.Unlock()
	o.mu.Lock()
	enc, ownB := o.enc, o.info.OwnB
	o.broken = fmt.Errorf("%w: closing", ErrBroken)
	o.mu.Unlock()
	if len(ownB) == 0 {
		return fmt.Errorf("uncooperative close of %s: the payee never sent its own state; only it can start a close", o.ch.Address())
	}
	b, err := ton.DecodeSignedState(ownB)
	if err != nil {
		return err
	}
	a := ton.SignedState{State: ton.State{Seqno: 0, Sent: new(big.Int)}}
	if len(enc) > 0 {
		if a, err = ton.DecodeSignedState(enc); err != nil {
			return err
		}
	} else if a, err = o.ch.SignState(m.key, a.State); err != nil {
		return err
	}
	if _, err := o.ch.StartClose(ctx, m.wallet, m.key, true, a, b); err != nil {
		return fmt.Errorf("uncooperative close: %w", err)
	}
	m.log.Info("uncooperative close started", "peer", o.peer, "channel", o.ch.Address(), "paid_nanoton", a.Sent)
	return nil
}

// FinishClose finishes the uncooperative close of the channel with p (paid
// to or paid by this node) once its quarantine is over: the contract pays
// out both balances.
func (m *Manager) FinishClose(ctx context.Context, p peer.ID) error {
	var ch *ton.Channel
	if in := m.inFrom(p); in != nil {
		ch = in.ch
	} else if o := m.outTo(p); o != nil {
		ch = o.ch
	} else {
		return ErrNoChannel
	}
	st, err := ch.State(ctx)
	if err != nil {
		return err
	}
	if st.Status != ton.StatusAwaitingFinalization {
		return fmt.Errorf("finishing the close of %s: it is %s; the quarantine must be over first", ch.Address(), st.Status)
	}
	if _, err := ch.FinishClose(ctx, m.wallet); err != nil {
		return fmt.Errorf("finishing the close of %s: %w", ch.Address(), err)
	}
	m.log.Info("channel closed on chain", "peer", p, "channel", ch.Address())
	return nil
}

// watch reads the channels this node is paid on every Watch, and
// challenges a close that a payer started with less than the newest state
// it signed here.
func (m *Manager) watch() {
	t := time.NewTicker(m.cfg.Watch)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		ins := slices.Collect(maps.Values(m.inAddr))
		m.mu.Unlock()
		m.watchPass(ins)
	}
}

// watchParallel is how many channels a watch pass reads at once: a pass
// over a thousand channels takes the time of about thirty reads, not a
// thousand, so a close started with an old state is seen well inside its
// quarantine however many channels the payee has.
const watchParallel = 32

// watchPass challenges, where needed, each of ins, watchParallel at a time.
func (m *Manager) watchPass(ins []*incoming) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, watchParallel)
	defer wg.Wait()
	for _, in := range ins {
		select {
		case slots <- struct{}{}:
		case <-m.ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := m.challenge(m.ctx, in); err != nil && m.ctx.Err() == nil {
				m.log.Warn("watching a channel", "peer", in.peer, "channel", in.ch.Address(), "err", err)
			}
		})
	}
}

// challenge answers a close of in that its payer started with an older
// state than the newest this node holds, with that newest state.
func (m *Manager) challenge(ctx context.Context, in *incoming) error {
	st, err := in.ch.State(ctx)
	if closedOnChain(st, err) {
		return m.paidOut(in)
	}
	if err != nil {
		return err
	}
	q := st.Quarantine
	if st.Status != ton.StatusClosureStarted || q == nil || q.StateChallenged || !q.StateCommittedByA {
		return nil // open, or this node's own close, or already answered
	}
	stored, err := m.led.Get(in.id)
	if err != nil {
		return nil // nothing was ever paid: nothing to defend
	}
	if q.StateA.Seqno >= stored.Seqno && q.StateA.Sent.Nano().Cmp(new(big.Int).SetUint64(stored.Received)) >= 0 {
		return nil // the payer closed with the newest state
	}
	newest, err := ton.DecodeSignedState(stored.Signed)
	if err != nil {
		return err
	}
	own, err := m.stopForClose(in)
	if err != nil {
		return err
	}
	if _, err := in.ch.Challenge(ctx, m.wallet, m.key, false, newest, own); err != nil {
		return fmt.Errorf("challenging: %w", err)
	}
	m.log.Warn("payer started a close with an old state; challenged with the newest", "peer", in.peer, "channel", in.ch.Address(),
		"their_seqno", q.StateA.Seqno, "newest_seqno", stored.Seqno, "newest_nanoton", stored.Received)
	return nil
}

// stopForClose readies in for a close this node sends on chain (a
// challenge or a dispute): it serves no more answers on it, and it signs
// this node's own semi-channel, empty since a payee never sends nor commits.
func (m *Manager) stopForClose(in *incoming) (ton.SignedState, error) {
	own, err := in.ch.SignState(m.key, ton.State{Seqno: 0, Sent: new(big.Int)})
	if err != nil {
		return own, err
	}
	in.mu.Lock()
	in.broken = fmt.Errorf("%w: closing", ErrBroken)
	in.mu.Unlock()
	return own, nil
}

// paidOut records that in is closed on chain and paid out: it leaves the
// watch, and status counts what it received as settled.
func (m *Manager) paidOut(in *incoming) error {
	closed := in.info
	closed.Closed = true
	if err := m.storeInfo(in.id, closed); err != nil {
		return err
	}
	m.mu.Lock()
	in.info.Closed = true
	delete(m.inAddr, in.ch.Address().String())
	if m.in[in.peer] == in {
		delete(m.in, in.peer)
	}
	m.mu.Unlock()
	in.mu.Lock()
	received := in.received
	in.mu.Unlock()
	m.log.Info("payment channel settled on chain", "peer", in.peer, "channel", in.ch.Address(), "received_nanoton", received)
	return nil
}
