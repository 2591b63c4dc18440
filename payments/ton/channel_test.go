package ton

import (
	"crypto/ed25519"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/tvm/cell"
)

// forwardFee is what the contract's payout message pays to be forwarded,
// out of its value: basechain's lump price for a message whose body has no
// references (400,000 nanoTON in the emulator's configuration).
const forwardFee = 400_000

// party is one side of a channel: its channel key and a fresh account,
// never deployed, that receives its payout, so that its balance afterwards
// is the payout and nothing else.
type party struct {
	pub  ed25519.PublicKey
	key  ed25519.PrivateKey
	dest *Wallet
}

func newParty(e *env) party {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return party{pub: pub, key: key, dest: e.newWallet()}
}

const deposit = 5e9

// openChannel deploys a channel from A's funded wallet with deposit and
// makes three payments, returning the payer, the payee and the first state.
func openChannel(e *env, a, b party) (*Channel, *Wallet, *Payer, *Payee, SignedState) {
	e.t.Helper()
	w := e.wallet(100e9)
	ch, err := NewChannel(ChannelConfig{
		ID: [16]byte{7}, KeyA: a.pub, KeyB: b.pub, DestA: a.dest.Address(), DestB: b.dest.Address(),
		Quarantine: time.Hour, ConditionalClose: time.Hour,
	}, e.sb)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := ch.Deploy(ctxFor(e.t), w, a.key, big.NewInt(deposit)); err != nil {
		e.t.Fatal(err)
	}
	st, err := ch.State(ctxFor(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	if st.Status != StatusOpen || st.BalanceA.Int64() != deposit || st.BalanceB.Sign() != 0 {
		e.t.Fatalf("after deploy: %+v", st)
	}
	payer := NewPayer(ch, a.key, State{}, big.NewInt(deposit))
	payee := NewPayee(ch, b.key, SignedState{}, big.NewInt(deposit))
	var first SignedState
	for i, amt := range []int64{1e8, 25e7, 3e8} {
		s, err := payer.Pay(big.NewInt(amt))
		if err != nil {
			e.t.Fatal(err)
		}
		if i == 0 {
			first = s
		}
		if d, err := payee.Accept(s); err != nil || d.Int64() != amt {
			e.t.Fatalf("accept payment %d: %v, %v", i, d, err)
		}
	}
	return ch, w, payer, payee, first
}

// send sends body to the channel from a sandbox treasury and returns the
// exit code of the channel's transaction.
func send(e *env, ch *Channel, from string, body *cell.Cell) int {
	e.t.Helper()
	txs, err := e.sb.SendInternal(ctxFor(e.t), from, ch.Address(), GasValue, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(txs) < 2 {
		e.t.Fatalf("%d transactions, want the treasury's and the channel's", len(txs))
	}
	return txs[1].ExitCode
}

// checkPayouts checks that B's destination got exactly its balance less the
// payout's forward fee, and that A's got its balance and at most what is
// left of the channel's own balance before the close (chain.Transaction
// carries no fees, so A's share of the gas is bounded, not computed).
func checkPayouts(e *env, a, b party, before *big.Int, wantA, wantB int64) {
	e.t.Helper()
	if got := e.balance(b.dest.Address()); got.Int64() != wantB-forwardFee {
		e.t.Errorf("B got %s, want %d less the forward fee of %d", got, wantB, forwardFee)
	}
	got := e.balance(a.dest.Address())
	if got.Int64() < wantA-forwardFee || got.Int64() > before.Int64()-wantB {
		e.t.Errorf("A got %s, want %d to %d", got, wantA-forwardFee, before.Int64()-wantB)
	}
}

func TestCooperativeClose(t *testing.T) {
	e := startSandbox(t)
	ctx := ctxFor(t)
	a, b := newParty(e), newParty(e)
	ch, w, payer, payee, _ := openChannel(e, a, b)

	// The contract takes no top-up once open; the value bounces back.
	top, err := TopUpBody(big.NewInt(1e9), nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := send(e, ch, "topper", top); code != ExitTopUpAfterInit {
		t.Errorf("top-up of an open channel: exit code %d, want %d", code, ExitTopUpAfterInit)
	}
	if _, err := ch.TopUp(ctx, w, big.NewInt(1e9)); err != nil {
		t.Fatal(err)
	}
	if st, err := ch.State(ctx); err != nil || st.BalanceA.Int64() != deposit {
		t.Fatalf("after top-ups: %+v, %v", st, err)
	}

	c := CloseFor(big.NewInt(deposit), payee.Last().State)
	if c.BalanceB.Int64() != 65e7 || c.BalanceA.Int64() != deposit-65e7 || payer.Last().Seqno != 3 {
		t.Fatalf("close %+v", c)
	}
	sigA, sigB := mustSignClose(t, ch, a.key, c), mustSignClose(t, ch, b.key, c)
	if !ch.VerifyClose(a.pub, c, sigA) || !ch.VerifyClose(b.pub, c, sigB) || ch.VerifyClose(a.pub, c, sigB) {
		t.Fatal("VerifyClose")
	}

	// A close signed twice by A, or for more than the channel holds, is
	// refused on chain.
	bad, err := ch.CooperativeCloseBody(c, sigA, sigA)
	if err != nil {
		t.Fatal(err)
	}
	if code := send(e, ch, "mallory", bad); code == 0 {
		t.Error("a close signed twice by A was accepted")
	}
	// B's signature over another split does not close this one.
	other := Close{BalanceA: big.NewInt(0), BalanceB: big.NewInt(deposit), SeqnoA: c.SeqnoA, SeqnoB: c.SeqnoB}
	bad, _ = ch.CooperativeCloseBody(other, sigA, mustSignClose(t, ch, b.key, other))
	if code := send(e, ch, "mallory", bad); code == 0 {
		t.Error("a close whose signatures cover different splits was accepted")
	}

	before := new(big.Int).Add(e.balance(ch.Address()), GasValue)
	if _, err := ch.CooperativeClose(ctx, w, c, sigA, sigB); err != nil {
		t.Fatal(err)
	}
	checkPayouts(e, a, b, before, deposit-65e7, 65e7)
	st, err := ch.State(ctx)
	if err == nil && st.Balance.Sign() != 0 {
		t.Errorf("channel still holds %s after the close", st.Balance)
	}
}

func TestUncooperativeClose(t *testing.T) {
	e := startSandbox(t)
	ctx := ctxFor(t)
	a, b := newParty(e), newParty(e)
	ch, _, payer, payee, first := openChannel(e, a, b)
	w := e.wallet(10e9) // B's wallet, which sends the close
	own := mustSign(t, ch, b.key, State{Sent: new(big.Int)})

	// A start signed by the wrong key is refused.
	if code := send(e, ch, "mallory", mustCell(t)(ch.StartCloseBody(a.key, false, payee.Last(), own))); code != exitBadSignature {
		t.Fatalf("a start signed by A but claiming B: exit code %d, want %d", code, exitBadSignature)
	}
	// A forged state of A's is refused.
	forged := mustSign(t, ch, b.key, State{Seqno: 9, Sent: big.NewInt(deposit)})
	if code := send(e, ch, "mallory", mustCell(t)(ch.StartCloseBody(b.key, false, forged, own))); code != exitBadSignature {
		t.Fatalf("a state of A's signed by B: exit code %d, want %d", code, exitBadSignature)
	}

	// A, gone rogue, starts the close with its first, cheapest state.
	if code := send(e, ch, "a", mustCell(t)(ch.StartCloseBody(a.key, true, first, own))); code != 0 {
		t.Fatalf("start: exit code %d", code)
	}
	st, err := ch.State(ctx)
	if err != nil || st.Status != StatusClosureStarted || st.Quarantine == nil || st.Quarantine.StateA.Seqno != 1 {
		t.Fatalf("after start: %+v, %v", st, err)
	}
	// B challenges with the newest state A signed.
	if _, err := ch.Challenge(ctx, w, b.key, false, payee.Last(), own); err != nil {
		t.Fatal(err)
	}
	st, err = ch.State(ctx)
	if err != nil || st.Quarantine.StateA.Seqno != 3 || st.Quarantine.StateA.Sent.Nano().Int64() != 65e7 {
		t.Fatalf("after challenge: %+v, %v", st, err)
	}
	// Nobody can challenge again.
	if code := send(e, ch, "a", mustCell(t)(ch.ChallengeBody(a.key, true, first, own))); code != exitAlreadyChallenge && code != exitOwnStart {
		t.Fatalf("A's challenge after B's: exit code %d, want %d or %d", code, exitOwnStart, exitAlreadyChallenge)
	}

	// Too early to finish; after the quarantine and the conditional window
	// anyone can.
	if code := send(e, ch, "anyone", FinishCloseBody()); code == 0 {
		t.Fatal("finish during the quarantine was accepted")
	}
	e.advance(2*time.Hour + time.Second)
	if st, err := ch.State(ctx); err != nil || st.Status != StatusAwaitingFinalization {
		t.Fatalf("after the windows: %+v, %v", st, err)
	}
	before := new(big.Int).Add(e.balance(ch.Address()), GasValue)
	if _, err := ch.FinishClose(ctx, w); err != nil {
		t.Fatal(err)
	}
	if got := payer.Last(); got.Seqno != 3 {
		t.Fatalf("payer at %+v", got)
	}
	checkPayouts(e, a, b, before, deposit-65e7, 65e7)
}

func TestAccept(t *testing.T) {
	pubA, keyA, _ := ed25519.GenerateKey(nil)
	pubB, keyB, _ := ed25519.GenerateKey(nil)
	ch, err := NewChannel(ChannelConfig{ID: [16]byte{1}, KeyA: pubA, KeyB: pubB, DestA: testAddr(1), DestB: testAddr(2), Quarantine: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payer := NewPayer(ch, keyA, State{}, big.NewInt(1000))
	payee := NewPayee(ch, keyB, SignedState{}, big.NewInt(1000))
	s1, _ := payer.Pay(big.NewInt(100))
	s2, _ := payer.Pay(big.NewInt(200))
	if _, err := payee.Accept(s2); err != nil {
		t.Fatal(err)
	}
	if _, err := payer.Pay(big.NewInt(701)); !errors.Is(err, ErrOverDeposit) {
		t.Fatalf("pay over the deposit: %v", err)
	}
	tampered := s2
	tampered.Sent = big.NewInt(1)
	tampered.Seqno = 9
	other := NewPayer(ch, keyB, State{}, big.NewInt(1000))
	byB, _ := other.Pay(big.NewInt(500))
	byB.Seqno = 5
	lower := mustSign(t, ch, keyA, State{Seqno: 4, Sent: big.NewInt(250)})
	over := mustSign(t, ch, keyA, State{Seqno: 4, Sent: big.NewInt(1001)})
	for _, tc := range []struct {
		name string
		s    SignedState
		want error
	}{
		{"same state again", s2, ErrStaleSeqno},
		{"older state", s1, ErrStaleSeqno},
		{"tampered", tampered, ErrBadSignature},
		{"signed by B", byB, ErrBadSignature},
		{"lower amount", lower, ErrAmountDown},
		{"over the deposit", over, ErrOverDeposit},
		{"no signature", SignedState{State: State{Seqno: 9, Sent: big.NewInt(400)}}, ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := payee.Accept(tc.s); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if last := payee.Last(); last.Seqno != 2 || last.Sent.Int64() != 300 {
		t.Fatalf("last accepted %+v", last)
	}
	s3, _ := payer.Pay(big.NewInt(0))
	if d, err := payee.Accept(s3); err != nil || d.Sign() != 0 {
		t.Fatalf("a zero payment: %v, %v", d, err)
	}
}

func BenchmarkPayAccept(b *testing.B) {
	pubA, keyA, _ := ed25519.GenerateKey(nil)
	pubB, keyB, _ := ed25519.GenerateKey(nil)
	ch, err := NewChannel(ChannelConfig{ID: [16]byte{1}, KeyA: pubA, KeyB: pubB, DestA: testAddr(1), DestB: testAddr(2), Quarantine: time.Hour}, nil)
	if err != nil {
		b.Fatal(err)
	}
	dep := new(big.Int).Lsh(big.NewInt(1), 100)
	payer := NewPayer(ch, keyA, State{}, dep)
	payee := NewPayee(ch, keyB, SignedState{}, dep)
	amt := big.NewInt(12345)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, err := payer.Pay(amt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := payee.Accept(s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// Exit codes of the payment-channel contract that the tests expect.
const (
	exitBadSignature     = 101 // the message's or a semi-channel's signature does not verify
	exitBelowCommitted   = 105 // a state older than the committed seqno
	exitAlreadyStarted   = 106 // a close started twice
	exitStaleCommit      = 108 // a commit not above the committed seqnos
	exitOwnStart         = 109 // the party that started a close challenged it
	exitAlreadyChallenge = 115 // the quarantine was challenged once already
)

// TestChallengeRules records how the contract settles a dispute: a
// challenge replaces the starter's state with the one the challenger holds,
// whatever its seqno; only the starter's counterparty may challenge, and
// only once. So A cannot win with a forged newer state that sends less, as
// long as B challenges within the quarantine with the newest state it
// accepted.
func TestChallengeRules(t *testing.T) {
	e := startSandbox(t)
	ctx := ctxFor(t)
	a, b := newParty(e), newParty(e)
	ch, _, _, payee, _ := openChannel(e, a, b)
	own := mustSign(t, ch, b.key, State{Sent: new(big.Int)})

	// A signs a newer state that sends less, which Accept refuses...
	forged := mustSign(t, ch, a.key, State{Seqno: 4, Sent: big.NewInt(5e7)})
	if _, err := payee.Accept(forged); !errors.Is(err, ErrAmountDown) {
		t.Fatalf("Accept(forged) = %v, want ErrAmountDown", err)
	}
	// ...and starts the close with it, which the contract takes.
	if code := send(e, ch, "a", mustCell(t)(ch.StartCloseBody(a.key, true, forged, own))); code != 0 {
		t.Fatalf("start: exit code %d", code)
	}
	if code := send(e, ch, "a", mustCell(t)(ch.ChallengeBody(a.key, true, forged, own))); code != exitOwnStart {
		t.Fatalf("A challenging its own start: exit code %d, want %d", code, exitOwnStart)
	}
	if code := send(e, ch, "b", mustCell(t)(ch.ChallengeBody(b.key, false, payee.Last(), own))); code != 0 {
		t.Fatalf("B's challenge: exit code %d", code)
	}
	if code := send(e, ch, "b", mustCell(t)(ch.ChallengeBody(b.key, false, forged, own))); code != exitAlreadyChallenge {
		t.Fatalf("a second challenge: exit code %d, want %d", code, exitAlreadyChallenge)
	}
	st, err := ch.State(ctx)
	if err != nil || st.Quarantine.StateA.Seqno != 3 || st.Quarantine.StateA.Sent.Nano().Int64() != 65e7 {
		t.Fatalf("quarantined: %+v, %v", st, err)
	}
	e.advance(2*time.Hour + time.Second)
	before := e.balance(ch.Address())
	if code := send(e, ch, "anyone", FinishCloseBody()); code != 0 {
		t.Fatalf("finish: exit code %d", code)
	}
	checkPayouts(e, a, b, before.Add(before, GasValue), deposit-65e7, 65e7)
}

// TestPayeeCloses is the close B starts when A is gone: with the newest
// state it accepted, finished after the windows from B's wallet.
func TestPayeeCloses(t *testing.T) {
	e := startSandbox(t)
	ctx := ctxFor(t)
	a, b := newParty(e), newParty(e)
	ch, _, _, payee, _ := openChannel(e, a, b)
	w := e.wallet(10e9)
	if _, err := payee.StartClose(ctx, w); err != nil {
		t.Fatal(err)
	}
	st, err := ch.State(ctx)
	if err != nil || st.Status != StatusClosureStarted || st.Quarantine.StateA.Seqno != 3 {
		t.Fatalf("after start: %+v, %v", st, err)
	}
	if _, err := ch.FinishClose(ctx, w); !errors.Is(err, ErrTransactionFailed) && err != nil {
		t.Fatal(err)
	}
	if st, err := ch.State(ctx); err != nil || st.Status != StatusClosureStarted {
		t.Fatalf("a finish in the quarantine changed the channel: %+v, %v", st, err)
	}
	e.advance(2*time.Hour + time.Second)
	before := new(big.Int).Add(e.balance(ch.Address()), GasValue)
	if _, err := ch.FinishClose(ctx, w); err != nil {
		t.Fatal(err)
	}
	checkPayouts(e, a, b, before, deposit-65e7, 65e7)
}

// TestCommit commits the newest state on chain, after which the contract
// refuses older states: a close can then use only the committed state or a
// newer one.
func TestCommit(t *testing.T) {
	e := startSandbox(t)
	ctx := ctxFor(t)
	a, b := newParty(e), newParty(e)
	ch, w, payer, payee, first := openChannel(e, a, b)
	stale := Commit{SeqnoA: 3, SeqnoB: 0}
	body, err := ch.CommitBody(stale, ch.SignCommit(a.key, stale), ch.SignCommit(b.key, stale))
	if err != nil {
		t.Fatal(err)
	}
	if code := send(e, ch, "x", body); code != exitStaleCommit {
		t.Fatalf("a commit not above the committed seqnos: exit code %d, want %d", code, exitStaleCommit)
	}

	c, sigB := payee.Commit()
	if c.SeqnoA != 3 || c.SeqnoB != 1 {
		t.Fatalf("commit %+v", c)
	}
	if _, err := payer.SignCommit(Commit{SeqnoA: 4, SeqnoB: 1}); !errors.Is(err, ErrStaleSeqno) {
		t.Fatalf("A signing a commit beyond its newest state: %v", err)
	}
	sigA, err := payer.SignCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.CooperativeCommit(ctx, w, c, sigA, sigB); err != nil {
		t.Fatal(err)
	}
	st, err := ch.State(ctx)
	if err != nil || st.SeqnoA != 3 || st.SeqnoB != 1 || st.Status != StatusOpen {
		t.Fatalf("after the commit: %+v, %v", st, err)
	}

	own, err := payee.Own()
	if err != nil || own.Seqno != 1 {
		t.Fatalf("own state %+v, %v", own, err)
	}
	if code := send(e, ch, "b", mustCell(t)(ch.StartCloseBody(b.key, false, first, own))); code != exitBelowCommitted {
		t.Fatalf("a start with a state below the commit: exit code %d, want %d", code, exitBelowCommitted)
	}
	if code := send(e, ch, "b", mustCell(t)(ch.StartCloseBody(a.key, false, payee.Last(), own))); code != exitBadSignature {
		t.Fatalf("a start with a bad signature: exit code %d, want %d", code, exitBadSignature)
	}
	if _, err := payee.StartClose(ctx, w); err != nil {
		t.Fatal(err)
	}
	if code := send(e, ch, "b", mustCell(t)(ch.StartCloseBody(b.key, false, payee.Last(), own))); code != exitAlreadyStarted {
		t.Fatalf("a second start: exit code %d, want %d", code, exitAlreadyStarted)
	}
	e.advance(2*time.Hour + time.Second)
	before := new(big.Int).Add(e.balance(ch.Address()), GasValue)
	if _, err := ch.FinishClose(ctx, w); err != nil {
		t.Fatal(err)
	}
	checkPayouts(e, a, b, before, deposit-65e7, 65e7)
}
