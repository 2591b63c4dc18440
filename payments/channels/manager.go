package channels

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// Config configures a Manager.
type Config struct {
	Network string
	// Deposit is what the node puts into each channel it opens, in
	// nanoTON; it is the channel's capacity.
	Deposit uint64
	// Reserve: a channel with less than this left is not used for new
	// requests (Payable is false), so that answers in flight still fit.
	Reserve uint64
	// MaxCredit is how much a payee serves beyond the newest state its
	// payer signed, in nanoTON; past it Admit refuses.
	MaxCredit uint64
	// Forward makes the node a proxy: each payment a client makes carries
	// the workers' receipts, and the node pays each worker its part
	// (receipt price times tokens), keeping FeePPM of it as its fee.
	Forward bool
	FeePPM  int64
	// Quarantine is how long an uncooperative close of a channel this node
	// opens can be challenged.
	Quarantine time.Duration
	// OpenTimeout bounds waiting for a deployed channel to show up open
	// on chain.
	OpenTimeout time.Duration
	// Batch is how long a payer waits after an answer to be paid for
	// before it signs, so that one state (one signature, one disk write
	// on each side) pays for every answer in that time. 0 pays each at
	// once.
	Batch time.Duration
	// Watch is how often a payee reads its channels on chain to challenge
	// a close its payer started with an old state; it must be well under
	// the payers' quarantine. 0 does not watch.
	Watch time.Duration
}

// DefaultConfig: 1 TON deposits, 0.01 TON reserve, 0.01 TON of credit, a
// one-hour quarantine.
func DefaultConfig(network string) Config {
	return Config{Network: network, Deposit: 1_000_000_000, Reserve: 10_000_000, MaxCredit: 10_000_000,
		Quarantine: time.Hour, OpenTimeout: time.Minute, Batch: 50 * time.Millisecond,
		Watch: time.Minute}
}

// Errors. ErrNoChannel and ErrCredit are what a payee refuses a request
// with; a payer gets ErrNoChannel and ErrExhausted from Pay.
var (
	ErrNoChannel = errors.New("no open payment channel")
	ErrCredit    = errors.New("unpaid answers beyond the credit limit")
	ErrExhausted = errors.New("payment channel's deposit exhausted")
	ErrBroken    = errors.New("payment channel unusable")
)

// Manager keeps a node's payment channels: those it pays on (to its proxies,
// or a proxy's to its workers) and those it is paid on. Every state is in
// the ledger before the counterparty hears of it.
type Manager struct {
	cfg    Config
	h      host.Host
	self   peer.ID // h's ID: receipts paid to this proxy must name it
	chain  chain.Chain
	wallet *ton.Wallet
	key    ed25519.PrivateKey
	led    *ledger.Ledger
	log    *slog.Logger
	proto  protocol.ID

	mu      sync.Mutex                // guards out, in, opening, earned, spent
	out     map[peer.ID]*outgoing     // the channel each payee is paid on now
	outs    map[ledger.ID]*outgoing   // every channel this node pays on, replaced ones too
	in      map[peer.ID]*incoming     // the channel each payer pays on now
	inAddr  map[string]*incoming      // every channel this node is paid on, by address
	opening map[peer.ID]chan struct{} // closed when the open in flight ends
	relayed map[[32]byte]struct{}     // receipts a proxy compared with what it relayed, bounded
	all     []*channel                // every channel, for List

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a manager that signs with key (the wallet's, from its seed),
// pays from w and keeps states in led. It starts nothing.
func New(cfg Config, h host.Host, c chain.Chain, w *ton.Wallet, key ed25519.PrivateKey, led *ledger.Ledger, log *slog.Logger) *Manager {
	if cfg.Quarantine <= 0 {
		cfg.Quarantine = time.Hour
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	var self peer.ID
	if h != nil {
		self = h.ID()
	}
	return &Manager{cfg: cfg, h: h, self: self, chain: c, wallet: w, key: key, led: led, log: log.With("component", "payments"),
		proto: p2p.ProtocolID(cfg.Network, ProtocolName, ProtocolVersion),
		out:   make(map[peer.ID]*outgoing), outs: make(map[ledger.ID]*outgoing), in: make(map[peer.ID]*incoming), inAddr: make(map[string]*incoming), opening: make(map[peer.ID]chan struct{}), relayed: make(map[[32]byte]struct{}),
		ctx: ctx, cancel: cancel}
}

// channel is what both sides keep of one channel.
type channel struct {
	info info
	id   ledger.ID
	ch   *ton.Channel
	peer peer.ID
}

// info is a channel's parameters, kept in the ledger beside its states.
type info struct {
	Peer       string `json:"peer"`
	Payer      bool   `json:"payer"` // this node pays on it
	ID         []byte `json:"id"`
	KeyA       []byte `json:"key_a"`
	KeyB       []byte `json:"key_b"`
	DestA      string `json:"dest_a"`
	DestB      string `json:"dest_b"`
	Deposit    uint64 `json:"deposit"`
	Quarantine uint32 `json:"quarantine_s"`
	Opened     int64  `json:"opened"` // unix milliseconds
	Closed     bool   `json:"closed,omitempty"`
	// OwnB is B's own semi-channel, signed by B, kept by the payer for an
	// uncooperative close.
	OwnB []byte `json:"own_b,omitempty"`
}

func (i info) channel(c chain.Chain) (*ton.Channel, error) {
	destA, err := address.ParseAddr(i.DestA)
	if err != nil {
		return nil, fmt.Errorf("dest_a: %w", err)
	}
	destB, err := address.ParseAddr(i.DestB)
	if err != nil {
		return nil, fmt.Errorf("dest_b: %w", err)
	}
	if len(i.ID) != 16 {
		return nil, errors.New("channel ID must be 16 bytes")
	}
	return ton.NewChannel(ton.ChannelConfig{ID: [16]byte(i.ID), KeyA: i.KeyA, KeyB: i.KeyB, DestA: destA, DestB: destB,
		Quarantine: time.Duration(i.Quarantine) * time.Second}, c)
}

func idOf(ch *ton.Channel) ledger.ID { return ledger.ID(ch.Address().Data()) }

// outgoing is a channel this node pays on.
type outgoing struct {
	channel
	wake chan struct{} // cap 1: something to send

	// signMu serializes signing and storing a new state.
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
	broken  error
}

// incoming is a channel this node is paid on.
type incoming struct {
	channel
	payMu    sync.Mutex // one payment (or close) at a time, through its ledger write
	mu       sync.Mutex // guards the fields below; never held across I/O
	seqno    uint64
	received uint64
	served   uint64 // answers served, priced; starts at received
	broken   error
}

// Start loads the channels in the ledger, serves the payment protocol and
// starts sending what is owed. Close stops it.
func (m *Manager) Start(sv *p2p.Service) error {
	infos, err := m.led.Info()
	if err != nil {
		return err
	}
	// Oldest first, so the newest channel with a peer is the one used.
	type loaded struct {
		id ledger.ID
		in info
	}
	var list []loaded
	for id, b := range infos {
		var in info
		if err := json.Unmarshal(b, &in); err != nil {
			return fmt.Errorf("channel %x: %w: %v", id[:8], ledger.ErrCorrupt, err)
		}
		list = append(list, loaded{id, in})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].in.Opened < list[j].in.Opened })
	for _, l := range list {
		ch, err := l.in.channel(m.chain)
		if err != nil {
			return fmt.Errorf("channel %x: %w", l.id[:8], err)
		}
		p, err := peer.Decode(l.in.Peer)
		if err != nil {
			return fmt.Errorf("channel %x: peer: %w", l.id[:8], err)
		}
		st, err := m.led.Get(l.id)
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return err
		}
		c := channel{info: l.in, id: l.id, ch: ch, peer: p}
		m.all = append(m.all, &c)
		if l.in.Closed {
			continue
		}
		if l.in.Payer {
			o := m.newOutgoing(c)
			// What the payee holds is unknown until it says (sync, in the
			// sender); the newest state goes again if it lacks it.
			o.seqno, o.sent, o.enc = st.Seqno, st.Sent, st.Signed
			m.out[p] = o
			m.outs[o.id] = o
			o.poke()
		} else {
			in := &incoming{channel: c, seqno: st.Seqno, received: st.Received, served: st.Received}
			m.in[p] = in
			m.inAddr[ch.Address().String()] = in
		}
	}
	sv.Handle(m.proto, time.Minute, m.serve)
	for _, o := range m.out {
		m.startSender(o)
	}
	if m.cfg.Watch > 0 {
		m.wg.Go(m.watch)
	}
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
		for _, in := range ins {
			if err := m.challenge(m.ctx, in); err != nil && m.ctx.Err() == nil {
				m.log.Warn("watching a channel", "peer", in.peer, "channel", in.ch.Address(), "err", err)
			}
		}
	}
}

// challenge answers a close of in that its payer started with an older
// state than the newest this node holds, with that newest state.
func (m *Manager) challenge(ctx context.Context, in *incoming) error {
	st, err := in.ch.State(ctx)
	if errors.Is(err, ton.ErrNotDeployed) {
		return nil // closed and paid out
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

// Close stops serving the payment protocol and the senders, and waits for
// them. The ledger stays open.
func (m *Manager) Close() {
	m.h.RemoveStreamHandler(m.proto)
	m.cancel()
	m.wg.Wait()
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

// --- payer side ---

// Open opens a channel to p with the configured deposit unless one is
// open with at least the reserve left: it asks p for its key and payout
// address, deploys the channel from the wallet, waits for it to be open on
// chain and tells p. Concurrent calls for one peer share one open.
func (m *Manager) Open(ctx context.Context, p peer.ID) error {
	for {
		m.mu.Lock()
		if o := m.out[p]; o != nil && o.usable(m.cfg.Reserve) == nil {
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
	hello, err := roundTrip(s, &request{Type: typeHello})
	if err != nil {
		return fmt.Errorf("opening a channel to %s: %w", p, err)
	}
	var id [16]byte
	rand.Read(id[:])
	in := info{Peer: p.String(), Payer: true, ID: id[:], KeyA: m.key.Public().(ed25519.PublicKey), KeyB: hello.Key,
		DestA: m.wallet.Address().String(), DestB: hello.Dest, Deposit: m.cfg.Deposit,
		Quarantine: uint32(m.cfg.Quarantine / time.Second), Opened: time.Now().UnixMilli()}
	if len(hello.Key) != ed25519.PublicKeySize {
		return fmt.Errorf("opening a channel to %s: its key has %d bytes", p, len(hello.Key))
	}
	ch, err := in.channel(m.chain)
	if err != nil {
		return fmt.Errorf("opening a channel to %s: %w", p, err)
	}
	bal, err := m.wallet.Balance(ctx)
	if err != nil {
		return fmt.Errorf("opening a channel to %s: reading the wallet: %w", p, err)
	}
	need := new(big.Int).Add(new(big.Int).SetUint64(m.cfg.Deposit), ton.GasValue)
	if bal.Cmp(need) < 0 {
		return fmt.Errorf("opening a channel to %s: %w: wallet %s holds %s nanoTON, a channel needs %s and fees",
			p, ton.ErrInsufficientFunds, m.wallet.Address(), bal, need)
	}
	c := channel{info: in, id: idOf(ch), ch: ch, peer: p}
	b, _ := json.Marshal(in)
	// The parameters go to the ledger before the deposit leaves the
	// wallet: a crash after the deploy still knows the channel.
	if err := m.led.SetInfo(c.id, b); err != nil {
		return err
	}
	log.Info("opening payment channel: deploying", "channel", ch.Address(), "deposit_nanoton", m.cfg.Deposit)
	if _, err := ch.Deploy(ctx, m.wallet, m.key, new(big.Int).SetUint64(m.cfg.Deposit)); err != nil {
		return fmt.Errorf("opening a channel to %s: deploying: %w", p, err)
	}
	if err := m.waitOpen(ctx, ch); err != nil {
		return fmt.Errorf("opening a channel to %s: %w", p, err)
	}
	q := &request{Type: typeOpen, Channel: ch.Address().String(), ID: in.ID, KeyA: in.KeyA, DestA: in.DestA,
		Deposit: in.Deposit, Quarantine: in.Quarantine}
	r, err := roundTrip(s, q)
	if err != nil {
		return fmt.Errorf("opening a channel to %s: announcing it: %w", p, err)
	}
	// The payee's own signed semi-channel, for an uncooperative close
	// should it vanish; kept with the parameters.
	if own, err := ton.DecodeSignedState(r.Own); err != nil || !ch.VerifyState(in.KeyB, own) {
		log.Warn("the payee sent no valid own state: an uncooperative close will need it to answer", "err", err)
	} else {
		c.info.OwnB = r.Own
		b, _ := json.Marshal(c.info)
		if err := m.led.SetInfo(c.id, b); err != nil {
			return err
		}
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
	log.Info("payment channel open", "channel", ch.Address(), "deposit_nanoton", m.cfg.Deposit)
	return nil
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

// outTo is the channel p is paid on now, or nil.
func (m *Manager) outTo(p peer.ID) *outgoing {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out[p]
}

// inFrom is the channel p pays on now, or nil.
func (m *Manager) inFrom(p peer.ID) *incoming {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.in[p]
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
	o.pending = append(o.pending, Entry{Receipt: receipt, Amount: amount})
	o.queued += amount
	o.mu.Unlock()
	o.poke()
	return nil
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

func (m *Manager) signState(o *outgoing, seqno, sent uint64) (ton.SignedState, []byte, error) {
	st, err := o.ch.SignState(m.key, ton.State{Seqno: seqno, Sent: new(big.Int).SetUint64(sent)})
	if err != nil {
		return ton.SignedState{}, nil, err
	}
	enc, err := st.Encode()
	return st, enc, err
}

// send delivers o's newest state to its payee, with the entries it pays
// for, whenever there is something new, retrying with backoff while the
// payee is unreachable.
func (m *Manager) send(o *outgoing) {
	var s network.Stream
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	backoff := 100 * time.Millisecond
	log := m.log.With("peer", o.peer, "channel", o.ch.Address())
	batch := time.NewTimer(0)
	defer batch.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-o.wake:
		}
		if m.cfg.Batch > 0 {
			// Gather the answers of the next moment into the same state.
			batch.Reset(m.cfg.Batch)
			select {
			case <-m.ctx.Done():
				return
			case <-batch.C:
			}
		}
	deliver:
		for {
			o.mu.Lock()
			synced := o.synced
			o.mu.Unlock()
			var err error
			if !synced {
				if s == nil {
					s, err = m.h.NewStream(network.WithAllowLimitedConn(m.ctx, "pay"), o.peer, m.proto)
				}
				if err == nil {
					s.SetDeadline(time.Now().Add(30 * time.Second))
					err = m.sync(s, o)
				}
			}
			if err == nil {
				err = m.sign(o)
			}
			var q *request
			if err == nil {
				o.mu.Lock()
				if o.sent > o.acked && o.broken == nil {
					q = &request{Type: typePay, Channel: o.ch.Address().String(), Base: o.acked,
						Entries: slices.Clone(o.pending[:o.covered]), State: o.enc}
				}
				o.mu.Unlock()
			}
			if q == nil && err == nil {
				break // all acknowledged
			}
			var r *reply
			if err == nil {
				if s == nil {
					s, err = m.h.NewStream(network.WithAllowLimitedConn(m.ctx, "pay"), o.peer, m.proto)
				}
				if err == nil {
					s.SetDeadline(time.Now().Add(30 * time.Second))
					r, err = roundTrip(s, q)
				}
			}
			var re *ReplyError
			switch {
			case err == nil:
				// Delivered. What arrived meanwhile waits for the next
				// batch (its Pay woke the sender), so that one state pays
				// for all of it.
				m.acked(o, q, r)
				backoff = 100 * time.Millisecond
				break deliver
			case errors.As(err, &re) && re.Code == codeRefused:
				log.Error("payee refused payment; channel no longer used", "err", err)
				o.mu.Lock()
				o.broken = fmt.Errorf("%w: %v", ErrBroken, err)
				o.mu.Unlock()
				return
			}
			if m.ctx.Err() != nil {
				return
			}
			log.Debug("payment not delivered yet", "err", err, "retry_in", backoff)
			if s != nil {
				s.Reset()
				s = nil
			}
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
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

// roundTrip sends q on s and reads the reply; a refusal is a *ReplyError.
func roundTrip(s network.Stream, q *request) (*reply, error) {
	if err := writeMessage(s, q); err != nil {
		return nil, err
	}
	b, err := readFrame(s)
	if err != nil {
		return nil, err
	}
	r, err := decodeReply(b)
	if err != nil {
		return nil, err
	}
	if r.Code != "" {
		return nil, &ReplyError{Code: r.Code, Message: r.Message}
	}
	return r, nil
}

// --- payee side ---

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

func (m *Manager) handle(ctx context.Context, from peer.ID, q *request) *reply {
	switch q.Type {
	case typeHello:
		if m.wallet == nil {
			return refuse("this node has no wallet to be paid to")
		}
		return &reply{Key: m.key.Public().(ed25519.PublicKey), Dest: m.wallet.Address().String()}
	case typeOpen:
		return m.accept(ctx, from, q)
	case typePay:
		return m.paid(ctx, from, q)
	case typeClose:
		return m.closeSig(from, q)
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

// accept takes a channel a payer opened to this node, once the chain shows
// it open with the deposit claimed, at the address the parameters give.
func (m *Manager) accept(ctx context.Context, from peer.ID, q *request) *reply {
	if m.wallet == nil {
		return refuse("this node has no wallet to be paid to")
	}
	in := info{Peer: from.String(), ID: q.ID, KeyA: q.KeyA, KeyB: m.key.Public().(ed25519.PublicKey), DestA: q.DestA,
		DestB: m.wallet.Address().String(), Deposit: q.Deposit, Quarantine: q.Quarantine, Opened: time.Now().UnixMilli()}
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
	b, _ := json.Marshal(in)
	if err := m.led.SetInfo(c.id, b); err != nil {
		return &reply{Code: codeBusy, Message: "storing the channel: " + err.Error()}
	}
	in2 := &incoming{channel: c}
	m.mu.Lock()
	m.in[from] = in2
	m.inAddr[q.Channel] = in2
	m.all = append(m.all, &c)
	m.mu.Unlock()
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
	in.mu.Lock()
	broken, seqno, received := in.broken, in.seqno, in.received
	in.mu.Unlock()
	if broken != nil {
		return refuse("%v", broken)
	}
	if st.Seqno <= seqno {
		if sent <= received {
			// A resend of a state already held: say what is held.
			return &reply{Received: received, Seqno: seqno}
		}
		return refuse("seqno %d is not above %d", st.Seqno, seqno)
	}
	if sent < received {
		return refuse("cumulative amount %d is below %d", sent, received)
	}
	if sent > in.info.Deposit {
		return refuse("cumulative amount %d is above the deposit %d", sent, in.info.Deposit)
	}
	if !in.ch.VerifyState(in.info.KeyA, st) {
		return refuse("state signature does not verify")
	}
	chans := []ledger.Channel{{ID: in.id, State: ledger.State{Seqno: st.Seqno, Received: sent, Signed: q.State}}}
	var owed map[peer.ID]uint64
	if m.cfg.Forward {
		if owed, err = m.split(q, received, sent); err != nil {
			return refuse("%v", err)
		}
	}
	// The workers' channels, in a fixed order so that concurrent payments
	// lock them alike.
	var outs []*outgoing
	var states []ledger.State
	for _, w := range sortedPeers(owed) {
		o := m.outTo(w)
		if o == nil {
			m.log.Warn("owing a worker with no channel to it; its part stays with the proxy", "worker", w, "nanoton", owed[w])
			continue
		}
		o.signMu.Lock()
		defer o.signMu.Unlock()
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
			return &reply{Code: codeBusy, Message: err.Error()}
		}
		next.Signed = enc
		outs = append(outs, o)
		states = append(states, next)
		chans = append(chans, ledger.Channel{ID: o.id, State: next})
	}
	if err := m.led.PutAll(ctx, chans...); err != nil {
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
	in.served = max(in.served, sent)
	in.mu.Unlock()
	for i, o := range outs {
		o.mu.Lock()
		o.seqno, o.sent, o.enc = states[i].Seqno, states[i].Sent, states[i].Signed
		o.mu.Unlock()
		o.poke()
	}
	return &reply{Received: sent, Seqno: st.Seqno}
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
	self := m.self
	for _, e := range q.Entries[i:] {
		// A receipt this proxy compared with the answer it relayed needs
		// no second signature check; one from before a restart does.
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
			return nil, fmt.Errorf("receipt: %w", err)
		}
		if r.Proxy != self {
			return nil, fmt.Errorf("receipt %s is for proxy %s", r.RequestID, r.Proxy)
		}
		bill, err := payments.Cost(r.Tokens, r.Price, m.cfg.FeePPM)
		if err != nil {
			return nil, fmt.Errorf("receipt %s: %w", r.RequestID, err)
		}
		if uint64(bill.Total) != e.Amount {
			return nil, fmt.Errorf("receipt %s costs %d, paid %d", r.RequestID, bill.Total, e.Amount)
		}
		owed[r.Worker] += uint64(bill.Worker)
		sum += e.Amount // each is a bill in int64, at most 1,024 of them: no wrap
	}
	if sum != sent-received {
		return nil, fmt.Errorf("entries add up to %d, the state pays %d more", sum, sent-received)
	}
	return owed, nil
}

func sortedPeers(m map[peer.ID]uint64) []peer.ID {
	out := make([]peer.ID, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
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
	return &reply{Received: in.received, Seqno: in.seqno, Signature: sig}
}

// CloseChannel closes the channel to p cooperatively: it waits until the
// payee holds every state, gets its signature on the final split, checks
// it and sends the close from the wallet.
func (m *Manager) CloseChannel(ctx context.Context, p peer.ID) error {
	o := m.outTo(p)
	if o == nil {
		return ErrNoChannel
	}
	o.mu.Lock()
	if o.acked != o.sent || len(o.pending) > 0 {
		o.mu.Unlock()
		return fmt.Errorf("closing: %d nanoTON not yet acknowledged by the payee; try again shortly", o.acked+o.queued-min(o.acked, o.sent))
	}
	o.broken = fmt.Errorf("%w: closing", ErrBroken)
	seqno, sent := o.seqno, o.sent
	o.mu.Unlock()
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
	closed := o.info
	closed.Closed = true
	b, _ := json.Marshal(closed)
	if err := m.led.SetInfo(o.id, b); err != nil {
		return err
	}
	m.mu.Lock()
	o.info.Closed = true
	if m.out[p] == o {
		delete(m.out, p)
	}
	delete(m.outs, o.id)
	m.mu.Unlock()
	m.log.Info("payment channel closed", "peer", p, "channel", o.ch.Address(), "paid_nanoton", sent,
		"returned_nanoton", o.info.Deposit-sent)
	return nil
}

// Dispute starts the uncooperative close of the channel p pays this node
// on, with the newest state p signed (from the ledger), for a payee whose
// payer is gone: no more answers are served on it, and once the quarantine
// (and the conditional window) is over, FinishClose pays out. p may
// challenge meanwhile with a newer state, which only it could sign.
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
	State    string // open, closing, closed, broken
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
		cs := ChannelStatus{Peer: c.peer, Address: c.ch.Address().String(), Payer: c.info.Payer, Deposit: c.info.Deposit, State: "open"}
		switch o, in := outs[c.id], ins[c.id]; {
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
			if c.info.Closed || (c.info.Payer && outs[c.id] == nil) {
				cs.State = "closed"
			}
		}
		list = append(list, cs)
	}
	return list
}

func stateOf(err error) string {
	if bytes.Contains([]byte(err.Error()), []byte("closing")) {
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
