package channels

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/p2p"
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
	// Renew: when a channel this node pays on has less than this left
	// (or its payee asked to settle), the Opener opens the next one while
	// this one still pays (make before break), then closes this one
	// cooperatively once its payee holds every state. Reserve if lower.
	Renew uint64
	// SettleAbove and SettleAfter: a payee asks its payer to settle a
	// channel (move to a new one and close this one, which pays the payee
	// out on chain) once it has received this much on it, or once it is
	// this old. 0 does not ask.
	SettleAbove uint64
	SettleAfter time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// MaxCredit is how much a payee serves beyond the newest state its
	// payer signed, in nanoTON; past it Admit refuses.
	MaxCredit uint64
	// Forward makes the node a proxy: each payment a client makes carries
	// the workers' receipts, and the node pays each worker its part
	// (receipt price times tokens), keeping FeePPM of it as its fee.
	Forward bool
	FeePPM  int64
	// AheadAbove: a proxy pays a worker ahead of its clients' payments
	// once the parts of answers it relayed from that worker and has not
	// paid pass this, in nanoTON; MaxCredit/2 if zero.
	AheadAbove uint64
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
	// MinQuarantine and MaxQuarantine bound the quarantine a payee
	// accepts in a channel opened to it. The payer chooses it, and a payer
	// that closes with an old state wins if the close ends before the
	// payee's watcher challenges it: the minimum is at least
	// MinWatchPasses watch passes. 10 minutes and 30 days if zero.
	MinQuarantine, MaxQuarantine time.Duration
	// Rules, when not nil, are the network's rules from its root
	// contract: a payee refuses a channel whose deposit is under their
	// minimum.
	Rules Rules
}

// Rules are the root contract's rules a payee enforces;
// *registry.Reader implements them.
type Rules interface {
	// MinDeposit is the smallest deposit a channel may hold, in nanoTON;
	// 0 when not known yet.
	MinDeposit() uint64
}

// MinWatchPasses is how many watch passes a channel's quarantine must
// span at least, so that one slow or failed pass does not lose a
// challenge.
const MinWatchPasses = 4

// DefaultConfig: 1 TON deposits, renewed with 0.1 TON left, 0.01 TON
// reserve, 0.01 TON of credit, a one-hour quarantine, channels accepted
// with quarantines from 10 minutes to 30 days, and settled once they hold
// 0.5 TON or are a day old.
func DefaultConfig(network string) Config {
	return Config{Network: network, Deposit: 1_000_000_000, Reserve: 10_000_000, Renew: 100_000_000, MaxCredit: 10_000_000,
		Quarantine: time.Hour, OpenTimeout: time.Minute, Batch: 50 * time.Millisecond,
		Watch: time.Minute, SettleAbove: 500_000_000, SettleAfter: 24 * time.Hour}
}

// Errors. A payee refuses a request with ErrNoChannel, ErrCredit or
// ErrBroken (from Admit), or ErrDeposit (from Reserve); a payer gets ErrNoChannel, ErrExhausted and
// ErrBroken from Pay and Payable.
var (
	// ErrNoChannel: no open channel with the peer. Retrying helps once one
	// is open.
	ErrNoChannel = errors.New("no open payment channel")
	// ErrCredit: the payee has served more than MaxCredit beyond the
	// newest state its payer signed. Retrying helps once a payment lands.
	ErrCredit = errors.New("unpaid answers beyond the credit limit")
	// ErrExhausted: the channel's deposit (less the reserve, for Payable)
	// is spent or owed. Only a new channel helps.
	ErrExhausted = errors.New("payment channel's deposit exhausted")
	// ErrBroken: the channel is closing, or its payee refused a payment,
	// or a payment's ledger write failed; it is no longer used. Only a new
	// channel helps.
	ErrBroken = errors.New("payment channel unusable")
	// ErrDeposit: the answers in flight on the payer's channel may cost
	// what is left of its deposit. Retrying helps once some are paid; a
	// larger deposit lets more run at once.
	ErrDeposit = errors.New("the channel's deposit does not cover the answers in flight")
)

// Manager keeps a node's payment channels: those it pays on (to its proxies,
// or a proxy's to its workers) and those it is paid on. Every state is in
// the ledger before the counterparty hears of it.
//
// The paying side is in payer.go, the paid side in payee.go, a proxy's
// forwarding to its workers in forward.go, closes and the watcher in
// close.go, and List in status.go.
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

	// mu guards the maps and the list below, and info.Closed of the
	// channels in all. It is never held across I/O; a channel's own mu
	// may be taken while it is held, never the other way round.
	mu      sync.Mutex
	out     map[peer.ID]*outgoing     // the channel each payee is paid on now
	outs    map[ledger.ID]*outgoing   // every channel this node pays on, replaced ones too, until closed
	in      map[peer.ID]*incoming     // the channel each payer pays on now
	inAddr  map[string]*incoming      // every channel this node is paid on, by address
	opening map[peer.ID]chan struct{} // closed when the open in flight ends
	relayed map[[32]byte]struct{}     // receipts a proxy compared with what it relayed, bounded
	behind  map[peer.ID]uint64        // workers' parts a proxy could sign on no channel yet: paid on the next state to each
	due     map[peer.ID]uint64        // workers' parts of answers a proxy relayed and has not paid yet (Relaying)
	ahead   map[peer.ID]uint64        // what a proxy paid workers ahead of its clients' payments, not yet matched by them
	all     []*channel                // every channel, for List
	// draining: SettleAll was called; no new channel is accepted.
	draining bool
	// renewing wakes the Opener when a channel this node pays on becomes
	// due for a successor, so a busy payer does not spend the old one
	// down while the Opener waits for its next tick.
	renewing chan struct{}

	ctx    context.Context // ends at Close; the senders and the watcher run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup // the senders and the watcher
}

// New returns a manager that signs with key (the wallet's, from its seed),
// pays from w and keeps states in led. It starts nothing.
func New(cfg Config, h host.Host, c chain.Chain, w *ton.Wallet, key ed25519.PrivateKey, led *ledger.Ledger, log *slog.Logger) *Manager {
	if cfg.Quarantine <= 0 {
		cfg.Quarantine = time.Hour
	}
	if cfg.AheadAbove == 0 {
		cfg.AheadAbove = cfg.MaxCredit / 2
	}
	if cfg.MinQuarantine <= 0 {
		cfg.MinQuarantine = 10 * time.Minute
	}
	cfg.MinQuarantine = max(cfg.MinQuarantine, MinWatchPasses*cfg.Watch)
	if cfg.MaxQuarantine <= 0 {
		cfg.MaxQuarantine = 30 * 24 * time.Hour
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = time.Minute
	}
	cfg.Renew = max(cfg.Renew, cfg.Reserve)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	var self peer.ID
	if h != nil {
		self = h.ID()
	}
	return &Manager{cfg: cfg, h: h, self: self, chain: c, wallet: w, key: key, led: led, log: log.With("component", "payments"),
		proto: p2p.ProtocolID(cfg.Network, ProtocolName, ProtocolVersion),
		out:   make(map[peer.ID]*outgoing), outs: make(map[ledger.ID]*outgoing), in: make(map[peer.ID]*incoming), inAddr: make(map[string]*incoming), opening: make(map[peer.ID]chan struct{}), relayed: make(map[[32]byte]struct{}), behind: make(map[peer.ID]uint64),
		due: make(map[peer.ID]uint64), ahead: make(map[peer.ID]uint64),
		renewing: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
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
	// Credit is what the payee said it serves beyond the newest state
	// (hello); 0 if it did not say.
	Credit uint64 `json:"credit,omitempty"`
	// Ahead is what a proxy had paid the worker ahead of its clients when
	// it stopped (Close); load takes it back and clears it.
	Ahead uint64 `json:"ahead,omitempty"`
}

// storeInfo stores in as the ledger's record of channel id's parameters.
func (m *Manager) storeInfo(id ledger.ID, in info) error {
	b, _ := json.Marshal(in) // plain fields: cannot fail
	return m.led.SetInfo(id, b)
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

// Start loads the channels in the ledger, serves the payment protocol and
// starts sending what is owed. Close stops it.
func (m *Manager) Start(sv *p2p.Service) error {
	if err := m.load(); err != nil {
		return err
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

// load fills the maps from the ledger's channels. It runs in Start, before
// anything else can reach them, so it takes no lock.
func (m *Manager) load() error {
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
		switch {
		case l.in.Closed:
			m.all = append(m.all, &c)
		case l.in.Payer:
			o := m.newOutgoing(c)
			// What the payee holds is unknown until it says (sync, in the
			// sender); the newest state goes again if it lacks it.
			o.seqno, o.sent, o.enc = st.Seqno, st.Sent, st.Signed
			if l.in.Ahead > 0 {
				m.ahead[p] += l.in.Ahead
				o.info.Ahead = 0
				if err := m.storeInfo(l.id, o.info); err != nil { // a crash later must not count it twice
					return err
				}
			}
			m.out[p] = o
			m.outs[o.id] = o
			m.all = append(m.all, &o.channel)
			o.poke()
		default:
			in := &incoming{channel: c, seqno: st.Seqno, received: st.Received, served: st.Received}
			m.in[p] = in
			m.inAddr[ch.Address().String()] = in
			m.all = append(m.all, &in.channel)
		}
	}
	return nil
}

// Close stops serving the payment protocol, the senders and the watcher,
// and waits for them. The ledger stays open. A proxy keeps what it paid
// workers ahead of its clients (ahead) with each worker's channel, for
// load to pick up: its clients' payments for those answers after a
// restart then pay the workers nothing more. (After a crash that is lost,
// and they pay them again: at most about AheadAbove per worker.)
func (m *Manager) Close() {
	m.h.RemoveStreamHandler(m.proto)
	type kept struct {
		worker peer.ID
		id     ledger.ID
		in     info
	}
	var keep []kept // stored after m.mu is let go
	m.mu.Lock()
	for w, a := range m.ahead {
		if o := m.out[w]; o != nil {
			in := o.info
			in.Ahead = a
			keep = append(keep, kept{w, o.id, in})
		}
	}
	m.mu.Unlock()
	for _, k := range keep {
		if err := m.storeInfo(k.id, k.in); err != nil {
			m.log.Warn("keeping what a worker was paid ahead", "worker", k.worker, "err", err)
		}
	}
	m.cancel()
	m.wg.Wait()
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
