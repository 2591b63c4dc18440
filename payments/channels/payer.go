package channels

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// This file is the paying side: opening a channel, paying on it, and the
// sender that signs, stores and delivers each new state.

// outgoing is a channel this node pays on.
type outgoing struct {
	channel
	wake chan struct{} // cap 1: something to send
	// urgent: what was just signed goes at once, not after Config.Batch
	// (a proxy's payment ahead of its clients).
	urgent atomic.Bool

	// signMu serializes signing and storing a new state: held from reading
	// seqno and sent until the state that follows them is stored.
	signMu sync.Mutex

	mu      sync.Mutex // guards the fields below
	seqno   uint64     // of the newest state signed and stored
	sent    uint64     // its cumulative amount
	enc     []byte     // its encoding
	acked   uint64     // what the payee last said it had stored
	pending []Entry    // answers paid for since acked, in order (a client's)
	covered int        // how many of pending the newest state covers
	queued  uint64     // Σ pending amounts
	synced  bool       // acked is what the payee said, not a guess from before a restart
	settle  bool       // the payee asked to settle: the Opener moves on to a new channel
	closeAt time.Time  // a replaced channel's cooperative close is not tried again before this
	broken  error
}

func (m *Manager) newOutgoing(c channel) *outgoing {
	return &outgoing{channel: c, wake: make(chan struct{}, 1)}
}

func (o *outgoing) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) startSender(o *outgoing) {
	m.wg.Go(func() { m.send(o) })
}

// Open opens a channel to p with the configured deposit unless one is
// open with at least Renew left and no settlement asked: it asks p for its key and payout
// address, deploys the channel from the wallet, waits for it to be open on
// chain and tells p. Concurrent calls for one peer share one open.
func (m *Manager) Open(ctx context.Context, p peer.ID) error {
	for {
		m.mu.Lock()
		if o := m.out[p]; o != nil && o.usable(m.cfg.Reserve) == nil && !o.renewDue(m.cfg.Renew) {
			m.mu.Unlock()
			return nil
		}
		wait, busy := m.opening[p]
		if !busy {
			done := make(chan struct{})
			m.opening[p] = done
			m.mu.Unlock()
			err := m.open(ctx, p)
			m.mu.Lock()
			delete(m.opening, p)
			close(done)
			m.mu.Unlock()
			return err
		}
		m.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// open opens a new channel to p; Open runs one at a time per peer.
func (m *Manager) open(ctx context.Context, p peer.ID) error {
	if m.wallet == nil {
		return errors.New("opening a channel: no wallet")
	}
	log := m.log.With("peer", p)
	s, err := m.h.NewStream(network.WithAllowLimitedConn(ctx, "pay"), p, m.proto)
	if err != nil {
		return fmt.Errorf("opening a channel to %s: %w", p, err)
	}
	defer s.Close()
	c, err := m.propose(ctx, s, p)
	if err != nil {
		return err
	}
	// The parameters go to the ledger before the deposit leaves the
	// wallet: a crash after the deploy still knows the channel.
	if err := m.storeInfo(c.id, c.info); err != nil {
		return err
	}
	log.Info("opening payment channel: deploying", "channel", c.ch.Address(), "deposit_nanoton", m.cfg.Deposit)
	if _, err := c.ch.Deploy(ctx, m.wallet, m.key, new(big.Int).SetUint64(m.cfg.Deposit)); err != nil {
		return fmt.Errorf("opening a channel to %s: deploying: %w", p, err)
	}
	if err := m.waitOpen(ctx, c.ch); err != nil {
		return fmt.Errorf("opening a channel to %s: %w", p, err)
	}
	if err := m.announce(s, &c, log); err != nil {
		return err
	}
	// A channel this replaces keeps delivering what it still owes.
	o := m.newOutgoing(c)
	o.synced = true
	m.mu.Lock()
	m.out[p] = o
	m.outs[o.id] = o
	m.all = append(m.all, &o.channel)
	m.mu.Unlock()
	m.startSender(o)
	log.Info("payment channel open", "channel", c.ch.Address(), "deposit_nanoton", m.cfg.Deposit)
	return nil
}

// propose asks p on s for its key and payout address (hello), and returns
// the channel it makes with a fresh ID, once the wallet is seen to hold
// its deposit and fees.
func (m *Manager) propose(ctx context.Context, s network.Stream, p peer.ID) (channel, error) {
	hello, err := roundTrip(s, &request{Type: typeHello})
	if err != nil {
		return channel{}, fmt.Errorf("opening a channel to %s: %w", p, err)
	}
	var id [16]byte
	rand.Read(id[:])
	in := info{Peer: p.String(), Payer: true, ID: id[:], KeyA: m.key.Public().(ed25519.PublicKey), KeyB: hello.Key,
		DestA: m.wallet.Address().String(), DestB: hello.Dest, Deposit: m.cfg.Deposit,
		Quarantine: uint32(m.cfg.Quarantine / time.Second), Opened: m.cfg.Now().UnixMilli(), Credit: hello.Credit}
	if len(hello.Key) != ed25519.PublicKeySize {
		return channel{}, fmt.Errorf("opening a channel to %s: its key has %d bytes", p, len(hello.Key))
	}
	ch, err := in.channel(m.chain)
	if err != nil {
		return channel{}, fmt.Errorf("opening a channel to %s: %w", p, err)
	}
	bal, err := m.wallet.Balance(ctx)
	if err != nil {
		return channel{}, fmt.Errorf("opening a channel to %s: reading the wallet: %w", p, err)
	}
	need := new(big.Int).Add(new(big.Int).SetUint64(m.cfg.Deposit), ton.GasValue)
	if bal.Cmp(need) < 0 {
		return channel{}, fmt.Errorf("opening a channel to %s: %w: wallet %s holds %s nanoTON, a channel needs %s and fees",
			p, ton.ErrInsufficientFunds, m.wallet.Address(), bal, need)
	}
	return channel{info: in, id: idOf(ch), ch: ch, peer: p}, nil
}

// announce tells the payee on s of c, deployed and open (open), and keeps
// the payee's own signed semi-channel it answers with in c's parameters,
// for an uncooperative close should it vanish.
func (m *Manager) announce(s network.Stream, c *channel, log *slog.Logger) error {
	in := c.info
	q := &request{Type: typeOpen, Channel: c.ch.Address().String(), ID: in.ID, KeyA: in.KeyA, DestA: in.DestA,
		Deposit: in.Deposit, Quarantine: in.Quarantine}
	r, err := roundTrip(s, q)
	if err != nil {
		return fmt.Errorf("opening a channel to %s: announcing it: %w", c.peer, err)
	}
	if own, err := ton.DecodeSignedState(r.Own); err != nil || !c.ch.VerifyState(in.KeyB, own) {
		log.Warn("the payee sent no valid own state: an uncooperative close will need it to answer", "err", err)
		return nil
	}
	c.info.OwnB = r.Own
	return m.storeInfo(c.id, c.info)
}

// waitOpen polls the chain until ch is open.
func (m *Manager) waitOpen(ctx context.Context, ch *ton.Channel) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpenTimeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := ch.State(ctx)
		if err == nil && st.Status == ton.StatusOpen {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("status %s", st.Status)
			}
			return fmt.Errorf("channel %s not open on chain: %v", ch.Address(), err)
		case <-t.C:
		}
	}
}

// usable says why o takes no new payments, if it does not: it is broken,
// or less than reserve of its deposit is left.
func (o *outgoing) usable(reserve uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.broken != nil {
		return o.broken
	}
	if o.acked+o.queued+reserve > o.info.Deposit {
		return fmt.Errorf("%w: %d of %d nanoTON spent or owed", ErrExhausted, o.acked+o.queued, o.info.Deposit)
	}
	return nil
}

// renewDue says whether the next channel should be opened now: less than
// renew is left, or the payee asked to settle.
func (o *outgoing) renewDue(renew uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.settle || o.lowLocked(renew)
}

// lowLocked says whether less than renew is left of o's deposit.
func (o *outgoing) lowLocked(renew uint64) bool { return o.acked+o.queued+renew > o.info.Deposit }

// Fresh reports whether p is paid on a channel that needs no successor:
// open, with at least Renew left, and no settlement asked. The Opener opens
// the next channel to a payee that is not.
func (m *Manager) Fresh(p peer.ID) bool {
	o := m.outTo(p)
	return o != nil && o.usable(m.cfg.Reserve) == nil && !o.renewDue(m.cfg.Renew)
}

// Payable reports whether p can be paid now: a channel to it is open with
// at least the reserve left.
func (m *Manager) Payable(p peer.ID) error {
	o := m.outTo(p)
	if o == nil {
		return ErrNoChannel
	}
	return o.usable(m.cfg.Reserve)
}

// Pay pays p amount nanoTON for the answer whose signed receipt is given:
// the entry joins what the next state pays for, which is signed, stored
// and sent in the background, batched with any others waiting.
func (m *Manager) Pay(p peer.ID, receipt []byte, amount uint64) error {
	o := m.outTo(p)
	if o == nil {
		return ErrNoChannel
	}
	o.mu.Lock()
	switch {
	case o.broken != nil:
		o.mu.Unlock()
		return o.broken
	case o.acked+o.queued+amount > o.info.Deposit:
		o.mu.Unlock()
		return fmt.Errorf("%w: paying %d more would pass the deposit of %d", ErrExhausted, amount, o.info.Deposit)
	case len(o.pending) >= MaxEntries:
		o.mu.Unlock()
		return fmt.Errorf("%w: %d payments waiting for the payee", ErrBroken, len(o.pending))
	}
	wasLow := o.lowLocked(m.cfg.Renew)
	o.pending = append(o.pending, Entry{Receipt: receipt, Amount: amount})
	o.queued += amount
	if !wasLow && o.lowLocked(m.cfg.Renew) {
		m.wakeOpener()
	}
	o.mu.Unlock()
	o.poke()
	return nil
}

// wakeOpener wakes the Opener: a channel this node pays on needs its
// successor now.
func (m *Manager) wakeOpener() {
	select {
	case m.renewing <- struct{}{}:
	default:
	}
}

// sign signs and stores, when the pending entries pay for more than the
// newest state, the state that pays for them all.
func (m *Manager) sign(o *outgoing) error {
	o.signMu.Lock()
	defer o.signMu.Unlock()
	o.mu.Lock()
	target, seqno, n := o.acked+o.queued, o.seqno+1, len(o.pending)
	if target <= o.sent {
		o.mu.Unlock()
		return nil
	}
	o.mu.Unlock()
	st, enc, err := m.signState(o, seqno, target)
	if err != nil {
		return err
	}
	if err := m.led.Put(m.ctx, o.id, ledger.State{Seqno: seqno, Sent: target, Signed: enc}); err != nil {
		return err
	}
	o.mu.Lock()
	o.seqno, o.sent, o.enc, o.covered = st.Seqno, target, enc, n
	o.mu.Unlock()
	return nil
}

// signState signs the state of o at seqno paying sent in all, and encodes
// it; it stores nothing.
func (m *Manager) signState(o *outgoing, seqno, sent uint64) (ton.SignedState, []byte, error) {
	st, err := o.ch.SignState(m.key, ton.State{Seqno: seqno, Sent: new(big.Int).SetUint64(sent)})
	if err != nil {
		return ton.SignedState{}, nil, err
	}
	enc, err := st.Encode()
	return st, enc, err
}

// sender is one outgoing channel's delivery; only the goroutine running
// send touches it.
type sender struct {
	m       *Manager
	o       *outgoing
	s       network.Stream // to the payee; nil until needed, and after a failure
	backoff time.Duration  // the wait before the next try after a failure
	log     *slog.Logger
}

// send delivers o's newest state to its payee, with the entries it pays
// for, whenever there is something new, retrying with backoff while the
// payee is unreachable.
func (m *Manager) send(o *outgoing) {
	sd := &sender{m: m, o: o, backoff: 100 * time.Millisecond, log: m.log.With("peer", o.peer, "channel", o.ch.Address())}
	defer func() {
		if sd.s != nil {
			sd.s.Close()
		}
	}()
	batch := time.NewTimer(0)
	defer batch.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-o.wake:
		}
		if m.cfg.Batch > 0 && !o.urgent.Swap(false) {
			// Gather the answers of the next moment into the same state.
			batch.Reset(m.cfg.Batch)
			select {
			case <-m.ctx.Done():
				return
			case <-batch.C:
			}
		}
		if !sd.deliver() {
			return
		}
	}
}

// deliver tries until the payee holds the newest state, backing off while
// it cannot be reached. It reports false when the sender must stop: the
// manager is closing, or the payee refused a payment.
func (sd *sender) deliver() bool {
	m, o := sd.m, sd.o
	for {
		q, r, err := sd.try()
		if q == nil && err == nil {
			return true // all acknowledged
		}
		var re *ReplyError
		switch {
		case err == nil:
			// Delivered. What arrived meanwhile waits for the next
			// batch (its Pay woke the sender), so that one state pays
			// for all of it.
			m.acked(o, q, r)
			sd.backoff = 100 * time.Millisecond
			return true
		case errors.As(err, &re) && re.Code == codeRefused:
			sd.log.Error("payee refused payment; channel no longer used", "err", err)
			o.mu.Lock()
			o.broken = fmt.Errorf("%w: %v", ErrBroken, err)
			o.mu.Unlock()
			return false
		}
		if m.ctx.Err() != nil {
			return false
		}
		sd.log.Debug("payment not delivered yet", "err", err, "retry_in", sd.backoff)
		if sd.s != nil {
			sd.s.Reset()
			sd.s = nil
		}
		select {
		case <-m.ctx.Done():
			return false
		case <-time.After(sd.backoff):
		}
		sd.backoff = min(2*sd.backoff, 5*time.Second)
	}
}

// try is one attempt: it asks the payee what it holds if that is not
// known yet (sync), signs what is pending, and sends the newest state if
// the payee has not acknowledged it. q is what it sent, nil when nothing
// was to be sent; r is the payee's reply to it.
func (sd *sender) try() (q *request, r *reply, err error) {
	m, o := sd.m, sd.o
	o.mu.Lock()
	synced := o.synced
	o.mu.Unlock()
	if !synced {
		if err = sd.dial(); err == nil {
			err = m.sync(sd.s, o)
		}
	}
	if err == nil {
		err = m.sign(o)
	}
	if err != nil {
		return nil, nil, err
	}
	o.mu.Lock()
	if o.sent > o.acked && o.broken == nil {
		q = &request{Type: typePay, Channel: o.ch.Address().String(), Base: o.acked,
			Entries: slices.Clone(o.pending[:o.covered]), State: o.enc}
	}
	o.mu.Unlock()
	if q == nil {
		return nil, nil, nil
	}
	if err = sd.dial(); err == nil {
		r, err = roundTrip(sd.s, q)
	}
	return q, r, err
}

// dial opens the stream to the payee unless it is open, and gives it 30 s
// for the next exchange.
func (sd *sender) dial() error {
	var err error
	if sd.s == nil {
		sd.s, err = sd.m.h.NewStream(network.WithAllowLimitedConn(sd.m.ctx, "pay"), sd.o.peer, sd.m.proto)
	}
	if err == nil {
		sd.s.SetDeadline(time.Now().Add(30 * time.Second))
	}
	return err
}

// acked records the payee's answer to q: it has stored r.Received.
func (m *Manager) acked(o *outgoing, q *request, r *reply) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.Received < o.acked || r.Received > o.sent {
		// The payee holds less than it acknowledged before, or more than
		// was ever signed: nothing to trust.
		o.broken = fmt.Errorf("%w: payee says it holds %d, acknowledged %d, signed %d", ErrBroken, r.Received, o.acked, o.sent)
		return
	}
	// Drop the entries the payee now holds.
	cum, i := q.Base, 0
	for i < len(o.pending) && i < o.covered && cum+o.pending[i].Amount <= r.Received {
		cum += o.pending[i].Amount
		o.queued -= o.pending[i].Amount
		i++
	}
	o.pending = o.pending[i:]
	o.covered -= i
	o.acked = r.Received
	if r.Settle && !o.settle {
		o.settle = true
		m.wakeOpener()
	}
}

// sync asks the payee what it holds of o, after a restart: the entries it
// holds are dropped, and the newest state goes again if it lacks it.
func (m *Manager) sync(s network.Stream, o *outgoing) error {
	r, err := roundTrip(s, &request{Type: typeSync, Channel: o.ch.Address().String()})
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.Received > o.sent {
		o.broken = fmt.Errorf("%w: payee says it holds %d, this node signed %d", ErrBroken, r.Received, o.sent)
		return o.broken
	}
	o.acked, o.synced = r.Received, true
	return nil
}
