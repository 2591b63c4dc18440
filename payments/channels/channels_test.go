package channels_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/xssnick/tonutils-go/address"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/chain/sandbox"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/channels"
	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chainAhead is how far the tests moved the emulator's clock past the real
// one; wallets sign messages valid by the emulator's time.
var chainAhead atomic.Int64

func chainNow() time.Time { return time.Now().Add(time.Duration(chainAhead.Load())) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func startSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the sandbox chain runs @ton/sandbox in Node.js")
	}
	sb := sandbox.New(sandbox.Config{}, logtest.NewAt(t, slog.LevelWarn))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // npm ci, the first time
	defer cancel()
	if err := sb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
	})
	return sb
}

// party is one node's payments: a host, a ledger, a wallet and a manager.
type party struct {
	t    *testing.T
	h    host.Host
	sv   *p2p.Service
	dir  string
	led  *ledger.Ledger
	w    *ton.Wallet
	key  ed25519.PrivateKey
	m    *channels.Manager
	cfg  channels.Config
	sb   *sandbox.Sandbox
	down bool
}

func newParty(t *testing.T, sb *sandbox.Sandbox, cfg channels.Config, fund int64) *party {
	t.Helper()
	p := &party{t: t, h: p2ptest.NewHost(t), dir: t.TempDir(), cfg: cfg, sb: sb}
	key, err := ton.LoadKey(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	p.key = key
	if p.w, err = ton.NewWallet(key, sb, ton.WalletConfig{Now: chainNow}); err != nil {
		t.Fatal(err)
	}
	if fund > 0 {
		if err := sb.Fund(ctxFor(t), p.w.Address(), big.NewInt(fund)); err != nil {
			t.Fatal(err)
		}
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *party) start() {
	p.t.Helper()
	var err error
	if p.led, err = ledger.Open(filepath.Join(p.dir, "ledger.db"), ledger.Options{}); err != nil {
		p.t.Fatal(err)
	}
	p.sv = p2p.NewService(p.h, logtest.NewAt(p.t, slog.LevelInfo))
	p.m = channels.New(p.cfg, p.h, p.sb, p.w, p.key, p.led, logtest.NewAt(p.t, slog.LevelInfo).With("self", p.h.ID()))
	if err := p.m.Start(p.sv); err != nil {
		p.t.Fatal(err)
	}
	p.down = false
}

func (p *party) stop() {
	if p.down {
		return
	}
	p.down = true
	p.m.Close()
	if err := p.led.Close(); err != nil {
		p.t.Error(err)
	}
}

func (p *party) channel(peerID peer.ID) channels.ChannelStatus {
	p.t.Helper()
	var found channels.ChannelStatus
	for _, c := range p.m.List() {
		if c.Peer == peerID && c.State == "open" {
			found = c
		}
	}
	return found
}

const (
	deposit = 2_000_000_000
	feePPM  = 10_000
)

func config(forward bool) channels.Config {
	cfg := channels.DefaultConfig("test")
	cfg.Deposit = deposit
	cfg.Forward = forward
	cfg.FeePPM = feePPM
	cfg.MaxCredit = 100_000
	cfg.Watch = 100 * time.Millisecond
	return cfg
}

// network is a client paying a proxy paying a worker, with channels open.
type network struct {
	sb                    *sandbox.Sandbox
	client, proxy, worker *party
}

func newNetwork(t *testing.T) *network {
	sb := startSandbox(t)
	n := &network{sb: sb}
	n.client = newParty(t, sb, config(false), 5_000_000_000)
	n.proxy = newParty(t, sb, config(true), 5_000_000_000)
	n.worker = newParty(t, sb, config(false), 0) // paid to, pays nothing
	p2ptest.Connect(t, n.client.h, n.proxy.h)
	p2ptest.Connect(t, n.proxy.h, n.worker.h)
	if err := n.proxy.m.Open(ctxFor(t), n.worker.h.ID()); err != nil {
		t.Fatal(err)
	}
	if err := n.client.m.Open(ctxFor(t), n.proxy.h.ID()); err != nil {
		t.Fatal(err)
	}
	return n
}

// answer makes the receipt of one answer the worker gave through the proxy,
// and what the client pays for it.
func (n *network) answer(t *testing.T, i int, completion int64) (receipt []byte, bill payments.Bill) {
	t.Helper()
	r := &payments.Receipt{
		RequestID: "req-" + string(rune('a'+i%26)) + time.Now().Format("150405.000000000"),
		Model:     "m", Tokens: payments.Tokens{Prompt: 20, Completion: completion},
		Price:  payments.Price{Prompt: 100_000_000, Cached: 10_000_000, Completion: 400_000_000},
		Worker: n.worker.h.ID(), Proxy: n.proxy.h.ID(), Time: time.Now().UnixMilli(),
	}
	signed, err := payments.Sign(r, n.worker.h.Peerstore().PrivKey(n.worker.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	bill, err = payments.Cost(r.Tokens, r.Price, feePPM)
	if err != nil {
		t.Fatal(err)
	}
	return signed, bill
}

// relay has the worker serve answer i through the proxy, as a router
// would have it: the worker counts it served to the proxy, the proxy
// counts it served to the client and, having checked the receipt, pays the
// worker its part.
func (n *network) relay(t *testing.T, i int, completion int64) (receipt []byte, bill payments.Bill) {
	t.Helper()
	receipt, bill = n.answer(t, i, completion)
	n.worker.m.Served(n.proxy.h.ID(), uint64(bill.Worker))
	n.proxy.m.Served(n.client.h.ID(), uint64(bill.Total))
	n.proxy.m.Relaying(n.worker.h.ID(), uint64(bill.Worker))(receipt)
	return receipt, bill
}

// paid tallies what the client paid: in all, and the worker's part.
type paid struct{ total, worker uint64 }

// pay has the worker serve answer i with completion tokens through the
// proxy, which pays the worker its part as it relays it, and the client
// pay for it; it adds it to p, and returns its bill.
func (n *network) pay(t *testing.T, p *paid, i int, completion int64) payments.Bill {
	t.Helper()
	r, bill := n.relay(t, i, completion)
	if err := n.client.m.Pay(n.proxy.h.ID(), r, uint64(bill.Total)); err != nil {
		t.Fatal(err)
	}
	p.total += uint64(bill.Total)
	p.worker += uint64(bill.Worker)
	return bill
}

// settled waits until the proxy holds p.total from the client and the
// worker holds p.worker from the proxy.
func (n *network) settled(t *testing.T, p paid) {
	t.Helper()
	clientPaid, workerPaid := p.total, p.worker
	var fromClient, toWorker uint64
	defer func() {
		if t.Failed() {
			t.Logf("proxy holds %d from the client (want %d), worker %d from the proxy (want %d)",
				fromClient, clientPaid, toWorker, workerPaid)
		}
	}()
	p2ptest.Eventually(t, "the payments to settle", func() bool { // nothing signals it
		fromClient = n.proxy.channel(n.client.h.ID()).Received
		toWorker = n.worker.channel(n.proxy.h.ID()).Received
		return fromClient == clientPaid && toWorker == workerPaid
	})
}

// TestPaymentsFlow: a client pays for answers with the workers' receipts;
// the proxy passes each worker its part and keeps its fee; every side's
// ledger agrees, and the client's channel closes cooperatively on chain.
func TestPaymentsFlow(t *testing.T) {
	n := newNetwork(t)
	var p paid
	for i := range 25 {
		n.pay(t, &p, i, int64(10_000+1000*i))
	}
	n.settled(t, p)

	// Every ledger says the same: client sent = proxy received; proxy sent
	// = worker received; the difference is the proxy's fee.
	if got := n.client.channel(n.proxy.h.ID()).Sent; got != p.total {
		t.Errorf("client's ledger: sent %d, want %d", got, p.total)
	}
	if got := n.proxy.channel(n.worker.h.ID()).Sent; got != p.worker {
		t.Errorf("proxy's ledger: sent %d to the worker, want %d", got, p.worker)
	}
	spent, earned := n.proxy.m.Totals()
	if earned-spent != p.total-p.worker || p.total-p.worker == 0 {
		t.Errorf("proxy earned %d, spent %d: fee %d, want %d", earned, spent, earned-spent, p.total-p.worker)
	}

	// Credit: the worker admits the proxy until what it served unpaid
	// passes the limit.
	if err := n.worker.m.Admit(n.proxy.h.ID()); err != nil {
		t.Fatalf("worker refuses a proxy that paid everything: %v", err)
	}
	n.worker.m.Served(n.proxy.h.ID(), p.worker+100_001)
	if err := n.worker.m.Admit(n.proxy.h.ID()); !errors.Is(err, channels.ErrCredit) {
		t.Errorf("worker admits a proxy 100,001 nanoTON behind (limit 100,000): %v", err)
	}
	if err := n.worker.m.Admit(n.client.h.ID()); !errors.Is(err, channels.ErrNoChannel) {
		t.Errorf("worker admits a peer with no channel: %v", err)
	}

	// The client closes its channel: the payee signs the split, the chain
	// pays it out.
	before := balance(t, n.sb, n.proxy.w)
	if err := n.client.m.CloseChannel(ctxFor(t), n.proxy.h.ID()); err != nil {
		t.Fatal(err)
	}
	gain := new(big.Int).Sub(balance(t, n.sb, n.proxy.w), before)
	// The payout message pays its own forward fee (0.0004 TON in the
	// emulator), so the answers above are large enough to be worth it.
	if low := new(big.Int).SetUint64(p.total - 1_000_000); gain.Cmp(low) < 0 || gain.Cmp(new(big.Int).SetUint64(p.total)) > 0 {
		t.Errorf("proxy's wallet gained %s at the close, want %d less the forward fee", gain, p.total)
	}
	if err := n.client.m.Payable(n.proxy.h.ID()); !errors.Is(err, channels.ErrNoChannel) {
		t.Errorf("client can still pay on a closed channel: %v", err)
	}
}

func balance(t *testing.T, sb *sandbox.Sandbox, w *ton.Wallet) *big.Int {
	t.Helper()
	b, err := w.Balance(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPaymentsRefused: a payment whose entry does not match its receipt's
// price is refused, nothing of it is stored, and the client stops using
// the channel.
func TestPaymentsRefused(t *testing.T) {
	n := newNetwork(t)
	r, bill := n.answer(t, 0, 10)
	if err := n.client.m.Pay(n.proxy.h.ID(), r, uint64(bill.Total)-1); err != nil {
		t.Fatal(err)
	}
	p2ptest.Eventually(t, "the client to stop using a channel whose payment was refused", func() bool {
		return n.client.m.Payable(n.proxy.h.ID()) != nil // nothing signals it
	})
	if err := n.client.m.Payable(n.proxy.h.ID()); !errors.Is(err, channels.ErrBroken) {
		t.Errorf("Payable = %v, want ErrBroken", err)
	}
	if got := n.proxy.channel(n.client.h.ID()).Received; got != 0 {
		t.Errorf("proxy holds %d from a refused payment", got)
	}
	if got := n.worker.channel(n.proxy.h.ID()).Received; got != 0 {
		t.Errorf("worker was paid %d from a refused payment", got)
	}
}

// TestPaymentsSurviveRestart: the proxy stops between payments and starts
// again from its ledger; the client's next payments land on top of what
// it held, and the worker is paid for all.
func TestPaymentsSurviveRestart(t *testing.T) {
	n := newNetwork(t)
	var p paid
	pay := func(i int) { n.pay(t, &p, i, 30) }
	for i := range 5 {
		pay(i)
	}
	n.settled(t, p)
	// Relayed just before the proxy stops, and paid by the client while it
	// is down: the worker's parts, which the proxy stored as it stopped,
	// and the client's payments are delivered once it is back.
	type relayed struct {
		receipt []byte
		bill    payments.Bill
	}
	var later []relayed
	for i := 5; i < 10; i++ {
		r, bill := n.relay(t, i, 30)
		later = append(later, relayed{r, bill})
	}
	n.proxy.stop()
	for _, a := range later {
		if err := n.client.m.Pay(n.proxy.h.ID(), a.receipt, uint64(a.bill.Total)); err != nil {
			t.Fatal(err)
		}
		p.total += uint64(a.bill.Total)
		p.worker += uint64(a.bill.Worker)
	}
	n.proxy.start()
	n.settled(t, p)
	// The client's sender and the proxy's restarted one deliver again.
	for i := 10; i < 15; i++ {
		pay(i)
	}
	n.settled(t, p)
}

// TestPayeeDispute: the client pays and disappears; the proxy starts an
// uncooperative close with the newest state the client signed, cannot
// finish it during the quarantine, and after it is paid out on chain.
func TestPayeeDispute(t *testing.T) {
	n := newNetwork(t)
	ctx := ctxFor(t)
	var p paid
	for i := range 3 {
		n.pay(t, &p, i, 1_000_000) // 0.4 TON each: well above the fees
	}
	n.settled(t, p)
	n.client.stop() // gone, with its channel open

	before := balance(t, n.sb, n.proxy.w)
	if err := n.proxy.m.Dispute(ctx, n.client.h.ID()); err != nil {
		t.Fatal(err)
	}
	if err := n.proxy.m.Admit(n.client.h.ID()); err == nil {
		t.Error("the proxy still serves a client whose channel it is closing")
	}
	if err := n.proxy.m.FinishClose(ctx, n.client.h.ID()); err == nil {
		t.Fatal("finished a close during its quarantine")
	}
	n.finishAfterQuarantine(t, n.proxy, n.client)
	gain := new(big.Int).Sub(balance(t, n.sb, n.proxy.w), before)
	// Paid out: the claimed total, less the payout's forward fee and the
	// gas of the two messages the proxy sent (under 0.15 TON together).
	low := new(big.Int).SetUint64(p.total - 150_000_000)
	if gain.Cmp(low) < 0 || gain.Cmp(new(big.Int).SetUint64(p.total)) > 0 {
		t.Errorf("proxy's wallet gained %s after the close, want about %d", gain, p.total)
	}
}

// TestOldStateChallenged: the client tries to close its channel with the
// first state it signed instead of the newest; the proxy's watcher sees
// the close on chain and challenges with the newest, and the payout is the
// newest amount.
func TestOldStateChallenged(t *testing.T) { oldStateChallenged(t, 0) }

// oldStateChallenged has the client close its channel to the proxy with an
// old state while the proxy also watches others channels, and checks the
// proxy challenges it with the newest.
func oldStateChallenged(t *testing.T, others int) {
	n := newNetwork(t)
	ctx := ctxFor(t)
	var p paid
	n.pay(t, &p, 0, 1_000_000)
	n.settled(t, p)
	if others > 0 {
		n.proxy.stop()
		watchMore(t, n.sb, n.proxy, others)
		n.proxy.start()
		if got := len(n.proxy.m.List()); got < others {
			t.Fatalf("the proxy lists %d channels, want over %d", got, others)
		}
	}
	chAddr := n.proxy.channel(n.client.h.ID()).Address
	addr, err := address.ParseAddr(chAddr)
	if err != nil {
		t.Fatal(err)
	}
	id := ledger.ID(addr.Data())
	first, err := n.proxy.led.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		n.pay(t, &p, i, 1_000_000)
	}
	n.settled(t, p)

	// The client cheats, outside its manager: the channel from its ledger's
	// parameters, its first state, and the proxy's own state from the open.
	infos, err := n.client.led.Info()
	if err != nil {
		t.Fatal(err)
	}
	var in struct {
		ID         []byte `json:"id"`
		KeyA       []byte `json:"key_a"`
		KeyB       []byte `json:"key_b"`
		DestA      string `json:"dest_a"`
		DestB      string `json:"dest_b"`
		Quarantine uint32 `json:"quarantine_s"`
		OwnB       []byte `json:"own_b"`
	}
	raw := infos[id]
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	destA, _ := address.ParseAddr(in.DestA)
	destB, _ := address.ParseAddr(in.DestB)
	ch, err := ton.NewChannel(ton.ChannelConfig{ID: [16]byte(in.ID), KeyA: in.KeyA, KeyB: in.KeyB, DestA: destA, DestB: destB,
		Quarantine: time.Duration(in.Quarantine) * time.Second}, n.sb)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Address().String() != chAddr {
		t.Fatalf("rebuilt channel %s, want %s", ch.Address(), chAddr)
	}
	old, err := ton.DecodeSignedState(first.Signed)
	if err != nil {
		t.Fatal(err)
	}
	ownB, err := ton.DecodeSignedState(in.OwnB)
	if err != nil {
		t.Fatalf("the client holds no own state of the proxy: %v", err)
	}
	started := time.Now()
	if _, err := ch.StartClose(ctx, n.client.w, n.client.key, true, old, ownB); err != nil {
		t.Fatal(err)
	}

	// The proxy's watcher challenges.
	var st *ton.OnChain
	p2ptest.Eventually(t, "the proxy to challenge the old state", func() bool { // the chain signals nothing
		if st, err = ch.State(ctx); err != nil {
			t.Fatal(err)
		}
		return st.Quarantine != nil && st.Quarantine.StateChallenged
	})
	t.Logf("challenged %v after the close started, watching %d other channels", time.Since(started).Round(time.Millisecond), others)
	if got := st.Quarantine.StateA.Sent.Nano(); got.Cmp(new(big.Int).SetUint64(p.total)) != 0 {
		t.Fatalf("quarantined amount after the challenge %s, want the newest %d", got, p.total)
	}
	before := balance(t, n.sb, n.proxy.w)
	n.finishAfterQuarantine(t, n.proxy, n.client)
	gain := new(big.Int).Sub(balance(t, n.sb, n.proxy.w), before)
	if low := new(big.Int).SetUint64(p.total - 100_000_000); gain.Cmp(low) < 0 {
		t.Errorf("proxy's wallet gained %s, want about the newest total %d (the old state paid %d)", gain, p.total, first.Received)
	}
}

// TestPayerDispute: the proxy vanishes; the client closes its channel
// uncooperatively with its newest state and the proxy's own state from the
// open, and after the quarantine gets back its deposit less what it paid.
func TestPayerDispute(t *testing.T) {
	n := newNetwork(t)
	ctx := ctxFor(t)
	var p paid
	bill := n.pay(t, &p, 0, 1_000_000)
	n.settled(t, p)
	n.proxy.stop()
	before := balance(t, n.sb, n.client.w)
	if err := n.client.m.Dispute(ctx, n.proxy.h.ID()); err != nil {
		t.Fatal(err)
	}
	if err := n.client.m.Payable(n.proxy.h.ID()); err == nil {
		t.Error("the client still pays on a channel it is closing")
	}
	n.finishAfterQuarantine(t, n.client, n.proxy)
	gain := new(big.Int).Sub(balance(t, n.sb, n.client.w), before)
	back := int64(deposit) - bill.Total
	if low := big.NewInt(back - 150_000_000); gain.Cmp(low) < 0 || gain.Cmp(big.NewInt(back+100_000_000)) > 0 {
		t.Errorf("client's wallet gained %s at the close, want about its deposit less what it paid, %d", gain, back)
	}
}

// finishAfterQuarantine moves the emulator's clock (and the wallets') past
// the quarantine of a close started on by's channel with other, and has by
// finish it.
func (n *network) finishAfterQuarantine(t *testing.T, by, other *party) {
	t.Helper()
	ctx := ctxFor(t)
	now, err := n.sb.AdvanceTime(ctx, config(false).Quarantine+time.Second)
	if err != nil {
		t.Fatal(err)
	}
	chainAhead.Store(int64(time.Until(now)))
	t.Cleanup(func() { chainAhead.Store(0) })
	if err := by.m.FinishClose(ctx, other.h.ID()); err != nil {
		t.Fatal(err)
	}
}

// TestRollover: payers move to a new channel before the old one runs dry
// (make before break) and close the old one cooperatively, and a payee
// that asks to settle is paid out on chain, with every ledger balancing
// to the nanoTON: a client paying 30 answers on channels holding about
// ten, through a proxy whose worker asks to settle every few answers.
func TestRollover(t *testing.T) {
	sb := startSandbox(t)
	small := func(forward bool) channels.Config {
		cfg := config(forward)
		cfg.Deposit, cfg.Renew, cfg.Reserve = 45_000_000, 16_000_000, 1_000_000
		return cfg
	}
	n := &network{sb: sb}
	n.client = newParty(t, sb, small(false), 5_000_000_000)
	n.proxy = newParty(t, sb, small(true), 5_000_000_000)
	wcfg := config(false)
	wcfg.SettleAbove = 12_000_000 // about three answers' worth of the worker's parts
	n.worker = newParty(t, sb, wcfg, 0)
	p2ptest.Connect(t, n.client.h, n.proxy.h)
	p2ptest.Connect(t, n.proxy.h, n.worker.h)
	workerBefore := balance(t, sb, n.worker.w)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { channels.NewOpener(n.client.m, payees{n.proxy.h.ID()}, logtest.New(t)).Run(ctx) })
	wg.Go(func() { channels.NewOpener(n.proxy.m, payees{n.worker.h.ID()}, logtest.New(t)).Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	fresh := func() bool { return n.client.m.Fresh(n.proxy.h.ID()) && n.proxy.m.Fresh(n.worker.h.ID()) }
	p2ptest.Eventually(t, "the first channels to open", fresh)

	var p paid
	for i := range 30 {
		// A request is sent only while the client can pay: it never has
		// to wait for a channel, as it would if the old one ran dry first.
		if err := n.client.m.Payable(n.proxy.h.ID()); err != nil {
			t.Fatalf("answer %d: the client cannot pay: %v", i, err)
		}
		n.pay(t, &p, i, 10_000)
		n.waitHeld(t, p)
		p2ptest.Eventually(t, "the next channels to open", fresh)
	}

	sum := func(pp *party, other peer.ID, payer bool) (amount uint64, chans, closed int) {
		for _, c := range pp.m.List() {
			if c.Peer != other || c.Payer != payer {
				continue
			}
			chans++
			if c.State == "closed" {
				closed++
			}
			if payer {
				amount += c.Sent
			} else {
				amount += c.Received
			}
		}
		return amount, chans, closed
	}
	defer func() {
		if t.Failed() {
			for _, pp := range []*party{n.client, n.proxy, n.worker} {
				for _, c := range pp.m.List() {
					t.Logf("%s: %+v", pp.h.ID(), c)
				}
			}
		}
	}()
	p2ptest.Eventually(t, "the replaced channels to be paid out", func() bool {
		_, _, closedByClient := sum(n.proxy, n.client.h.ID(), false)
		_, chans, closedToWorker := sum(n.worker, n.proxy.h.ID(), false)
		return closedByClient >= 2 && closedToWorker == chans-1
	})
	sent, clientChans, _ := sum(n.client, n.proxy.h.ID(), true)
	received, _, _ := sum(n.proxy, n.client.h.ID(), false)
	if sent != p.total || received != p.total {
		t.Errorf("client sent %d, proxy received %d over all their channels, want %d", sent, received, p.total)
	}
	toWorker, _, _ := sum(n.proxy, n.worker.h.ID(), true)
	atWorker, workerChans, workerClosed := sum(n.worker, n.proxy.h.ID(), false)
	if toWorker != p.worker || atWorker != p.worker {
		t.Errorf("proxy sent %d, worker received %d over all their channels, want %d", toWorker, atWorker, p.worker)
	}
	if clientChans < 3 || workerChans < 3 {
		t.Errorf("%d client and %d worker channels for 30 answers, want the channels rolled over", clientChans, workerChans)
	}
	var settled uint64 // what the worker received on channels closed on chain
	for _, c := range n.worker.m.List() {
		if !c.Payer && c.State == "closed" {
			settled += c.Received
		}
	}
	gain := new(big.Int).Sub(balance(t, sb, n.worker.w), workerBefore)
	// Each payout pays its own forward fee, 0.0004 TON in the emulator.
	fees := uint64(workerClosed) * 500_000
	if settled == 0 || settled > p.worker || gain.Cmp(new(big.Int).SetUint64(settled-min(settled, fees))) < 0 ||
		gain.Cmp(new(big.Int).SetUint64(settled)) > 0 {
		t.Errorf("worker settled %d of %d earned on %d channels, its wallet gained %s: want what it settled, less the payouts' forward fees",
			settled, p.worker, workerClosed, gain)
	}
	t.Logf("30 answers, %d nanoTON: %d client channels, %d worker channels; the worker settled %d on chain, its wallet gained %s",
		p.total, clientChans, workerChans, settled, gain)
}

// waitHeld waits until the proxy holds p.total from the client and the
// worker p.worker from the proxy, over all their channels.
func (n *network) waitHeld(t *testing.T, p paid) {
	t.Helper()
	total := func(pp *party, other peer.ID) (sum uint64) {
		for _, c := range pp.m.List() {
			if c.Peer == other && !c.Payer {
				sum += c.Received
			}
		}
		return sum
	}
	p2ptest.Eventually(t, "the payments to be held", func() bool {
		return total(n.proxy, n.client.h.ID()) == p.total && total(n.worker, n.proxy.h.ID()) == p.worker
	})
}

// TestRenewAtOnce: when a busy payer's channel falls below Renew, the
// Opener opens the next one at once, not at its next look an hour later,
// so the old channel is not spent down in between.
func TestRenewAtOnce(t *testing.T) {
	sb := startSandbox(t)
	n := &network{sb: sb}
	cfg := config(false)
	cfg.Deposit, cfg.Renew, cfg.Reserve = 45_000_000, 16_000_000, 1_000_000
	n.client = newParty(t, sb, cfg, 5_000_000_000)
	// Credit enough for the answers not yet paid when the next channel
	// opens: a proxy refuses a channel from a client over its credit, which
	// is not what this tests.
	pcfg := config(true)
	pcfg.MaxCredit = deposit
	n.proxy = newParty(t, sb, pcfg, 5_000_000_000)
	n.worker = newParty(t, sb, config(false), 0)
	p2ptest.Connect(t, n.client.h, n.proxy.h)
	p2ptest.Connect(t, n.proxy.h, n.worker.h)
	if err := n.proxy.m.Open(ctxFor(t), n.worker.h.ID()); err != nil {
		t.Fatal(err)
	}
	o := channels.NewOpener(n.client.m, payees{n.proxy.h.ID()}, logtest.New(t))
	channels.SetOpenerTick(o, time.Hour) // only the first look, then wake-ups
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { o.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	proxy := n.proxy.h.ID()
	p2ptest.Eventually(t, "the first channel to open", func() bool { return n.client.m.Fresh(proxy) })

	var p paid
	for i := 0; n.client.m.Fresh(proxy); i++ {
		n.pay(t, &p, i, 10_000)
	}
	p2ptest.Eventually(t, "the next channel to open without waiting for the tick", func() bool { return n.client.m.Fresh(proxy) })
	chans := 0
	for _, c := range n.client.m.List() {
		if c.Payer && c.Peer == proxy {
			chans++
		}
	}
	if chans != 2 {
		t.Errorf("the client pays the proxy on %d channels, want 2", chans)
	}
}

// TestWorkerPartOwedUntilChannel: an answer from a worker the proxy has
// no channel to (closed, or not yet open) leaves the worker's part owed,
// not kept by the proxy: the channel opened to the worker later pays it.
func TestWorkerPartOwedUntilChannel(t *testing.T) {
	sb := startSandbox(t)
	n := &network{sb: sb}
	n.client = newParty(t, sb, config(false), 5_000_000_000)
	n.proxy = newParty(t, sb, config(true), 5_000_000_000)
	n.worker = newParty(t, sb, config(false), 0)
	p2ptest.Connect(t, n.client.h, n.proxy.h)
	p2ptest.Connect(t, n.proxy.h, n.worker.h)
	if err := n.client.m.Open(ctxFor(t), n.proxy.h.ID()); err != nil {
		t.Fatal(err)
	}
	var early paid // answers paid before the proxy has a channel to the worker
	for i := range 3 {
		n.pay(t, &early, i, 10_000)
	}
	p2ptest.Eventually(t, "the proxy to hold the client's payments", func() bool {
		return n.proxy.channel(n.client.h.ID()).Received == early.total
	})
	if err := n.proxy.m.Open(ctxFor(t), n.worker.h.ID()); err != nil {
		t.Fatal(err)
	}
	p := early
	n.pay(t, &p, 3, 10_000)
	n.settled(t, p) // the worker holds every part: the three early ones too
	spent, earned := n.proxy.m.Totals()
	if earned != p.total || spent != p.worker {
		t.Errorf("proxy earned %d, spent %d; want %d and %d", earned, spent, p.total, p.worker)
	}
}

// watchMore deploys count channels on chain that pay pp, open with a
// deposit from payers that never pay, and records them in pp's ledger (pp stopped), as if pp had
// accepted them: its watcher reads each on every pass.
func watchMore(t *testing.T, sb *sandbox.Sandbox, pp *party, count int) {
	t.Helper()
	led, err := ledger.Open(filepath.Join(pp.dir, "ledger.db"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	dest := pp.w.Address()
	keyB := pp.key.Public().(ed25519.PublicKey)
	var wg sync.WaitGroup
	errs := make(chan error, count)
	slots := make(chan struct{}, 8)
	for i := range count {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			keyA, privA, _ := ed25519.GenerateKey(nil)
			_, payer := p2ptest.NewKey(t)
			var id [16]byte
			id[0], id[1], id[15] = byte(i>>8), byte(i), 0xee
			ch, err := ton.NewChannel(ton.ChannelConfig{ID: id, KeyA: keyA, KeyB: keyB, DestA: dest, DestB: dest, Quarantine: time.Hour}, sb)
			if err != nil {
				errs <- err
				return
			}
			deposit := big.NewInt(1_000_000_000)
			body, err := ch.InitBody(privA, deposit)
			if err != nil {
				errs <- err
				return
			}
			init := ch.StateInit()
			if _, err := sb.DeployWith(ctxFor(t), init.Code, init.Data, new(big.Int).Add(deposit, ton.GasValue), body); err != nil {
				errs <- err
				return
			}
			b, _ := json.Marshal(map[string]any{"peer": payer.String(), "payer": false, "id": id[:], "key_a": []byte(keyA), "key_b": []byte(keyB),
				"dest_a": dest.String(), "dest_b": dest.String(), "deposit": 1_000_000_000, "quarantine_s": 3600, "opened": time.Now().UnixMilli()})
			errs <- led.SetInfo(ledger.ID(ch.Address().Data()), b)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestProxyPaysWorkerAhead: a client that gets answers and never pays
// costs the proxy its credit, not the worker: the proxy pays the worker
// each part as it relays the answer, so the worker, whose own credit to
// the proxy is far smaller than these answers, keeps serving the proxy
// (for its other clients), while the proxy refuses the client.
func TestProxyPaysWorkerAhead(t *testing.T) {
	n := newNetwork(t)
	proxy, client := n.proxy.h.ID(), n.client.h.ID()
	var owed paid // served to the client, never paid
	for i := range 3 {
		_, bill := n.relay(t, i, 10_000)
		owed.total += uint64(bill.Total)
		owed.worker += uint64(bill.Worker)
	}
	p2ptest.Eventually(t, "the worker to hold its parts", func() bool {
		return n.worker.channel(proxy).Received == owed.worker
	})
	if err := n.worker.m.Admit(proxy); err != nil {
		t.Errorf("the worker refuses the proxy after serving a client that does not pay: %v", err)
	}
	if err := n.proxy.m.Admit(client); !errors.Is(err, channels.ErrCredit) {
		t.Errorf("the proxy admits a client owing %d (credit 100,000): %v", owed.total, err)
	}
	if got := n.proxy.channel(client).Received; got != 0 {
		t.Errorf("the proxy holds %d from a client that never paid", got)
	}
}

// TestClientPaysBeforeRelayed: a client pays for an answer as soon as its
// End arrives, which can be before the router has checked the receipt and
// told the proxy (Relayed). The worker is paid for it once, not by the
// client's payment and again ahead of the clients.
func TestClientPaysBeforeRelayed(t *testing.T) {
	n := newNetwork(t)
	proxy, worker := n.proxy.h.ID(), n.worker.h.ID()
	var p paid
	receipt, bill := n.answer(t, 0, 10_000)
	n.worker.m.Served(proxy, uint64(bill.Worker))
	n.proxy.m.Served(n.client.h.ID(), uint64(bill.Total))
	checked := n.proxy.m.Relaying(worker, uint64(bill.Worker)) // the End goes out
	if err := n.client.m.Pay(proxy, receipt, uint64(bill.Total)); err != nil {
		t.Fatal(err)
	}
	p.total += uint64(bill.Total)
	p.worker += uint64(bill.Worker)
	n.settled(t, p)
	checked(receipt) // the router's check comes last
	n.pay(t, &p, 1, 10_000)
	p2ptest.Eventually(t, "the proxy to hold the client's payments and the worker its parts", func() bool {
		return n.proxy.channel(n.client.h.ID()).Received == p.total && n.worker.channel(proxy).Received >= p.worker
	})
	if sent, got := n.proxy.channel(worker).Sent, n.worker.channel(proxy).Received; sent != p.worker || got != p.worker {
		t.Errorf("the proxy signed %d to the worker, which holds %d, for parts of %d: an answer paid twice", sent, got, p.worker)
	}
}

// TestDrainingPayeeRefusesBeforeDeploy: a payee that is draining
// (SettleAll) closes its channels and refuses a new one at the first
// message, before the payer deploys anything: the payer's wallet keeps
// its deposit.
func TestDrainingPayeeRefusesBeforeDeploy(t *testing.T) {
	n := newNetwork(t)
	var p paid
	n.pay(t, &p, 0, 10_000)
	n.settled(t, p)
	asked, failed := n.worker.m.SettleAll(ctxFor(t))
	if asked != 1 || len(failed) != 0 {
		t.Fatalf("SettleAll asked %d, failed %v; want the proxy asked", asked, failed)
	}
	p2ptest.Eventually(t, "the proxy to close its channel to the worker", func() bool {
		// closed, not just unpayable: the close returns the deposit to the
		// proxy's wallet, which must be done before the balance is read
		for _, c := range n.proxy.m.List() {
			if c.Peer == n.worker.h.ID() && c.State != "closed" {
				return false
			}
		}
		return n.proxy.m.Payable(n.worker.h.ID()) != nil
	})
	before := balance(t, n.sb, n.proxy.w)
	err := n.proxy.m.Open(ctxFor(t), n.worker.h.ID())
	if err == nil || !strings.Contains(err.Error(), "draining") {
		t.Fatalf("opening a channel to a draining worker: %v, want refused as draining", err)
	}
	if after := balance(t, n.sb, n.proxy.w); after.Cmp(before) != 0 {
		t.Errorf("the proxy's wallet went from %s to %s: a channel was deployed to a payee that refuses it", before, after)
	}
}
