package ton

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain"
)

// Tags and ops of the payment-channel contract's messages.
const (
	tagState         = 0x43685374
	tagClose         = 0x436c6f73
	tagStartClose    = 0x556e436c
	tagChallenge     = 0x43686751
	opCoopClose      = 0x5577587e
	opStartClose     = 0x1f151acf
	opChallenge      = 0x088eaa32
	opFinishClose    = 0x25432a91
	signatureBits    = 512
	semiChannelSeqno = 64
)

// Errors Accept returns. None of them can be cured by retrying the same
// state.
var (
	ErrBadSignature = errors.New("state signature does not verify")
	ErrStaleSeqno   = errors.New("state seqno not above the last accepted")
	ErrAmountDown   = errors.New("state's cumulative amount below the last accepted")
	ErrOverDeposit  = errors.New("state's cumulative amount above the payer's deposit")
)

// State is one party's semi-channel: how many states it has signed and how
// much it has sent the other in total.
type State struct {
	Seqno uint64
	Sent  *big.Int // cumulative nanoTON
}

// SignedState is a State with its owner's signature over the contract's
// semichannel_state cell.
type SignedState struct {
	State
	Signature []byte
}

// stateCell returns the semichannel_state cell: tag, channel ID, seqno, sent,
// no conditionals, no counterparty state.
func (ch *Channel) stateCell(s State) *cell.Cell {
	return ch.stateBuilder(s).EndCell()
}

func (ch *Channel) stateBuilder(s State) *cell.Builder {
	return cell.BeginCell().
		MustStoreUInt(tagState, 32).
		MustStoreSlice(ch.cfg.ID[:], 128).
		MustStoreUInt(s.Seqno, semiChannelSeqno).
		MustStoreBigCoins(s.Sent).
		MustStoreBoolBit(false). // conditionals: empty dictionary
		MustStoreBoolBit(false)  // counterparty data: none
}

// maxSentBits is the width of the contract's Coins: 15 bytes.
const maxSentBits = 8 * maxSentBytes

// ErrAmountRange means an amount is negative or does not fit the contract's
// Coins (under 2^120 nanoTON).
var ErrAmountRange = errors.New("amount out of range")

func checkSent(sent *big.Int) error {
	if sent == nil || sent.Sign() < 0 || sent.BitLen() > maxSentBits {
		return fmt.Errorf("%w: %v", ErrAmountRange, sent)
	}
	return nil
}

// SignState signs s with key.
func (ch *Channel) SignState(key ed25519.PrivateKey, s State) (SignedState, error) {
	if err := checkSent(s.Sent); err != nil {
		return SignedState{}, fmt.Errorf("signing a state: %w", err)
	}
	return SignedState{State: State{Seqno: s.Seqno, Sent: new(big.Int).Set(s.Sent)}, Signature: ch.stateCell(s).Sign(key)}, nil
}

// VerifyState reports whether s carries a valid signature by pub.
func (ch *Channel) VerifyState(pub ed25519.PublicKey, s SignedState) bool {
	if checkSent(s.Sent) != nil || len(s.Signature) != ed25519.SignatureSize || len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, ch.stateCell(s.State).Hash(), s.Signature)
}

// signedCell returns the SignedSemiChannel cell: signature, then the state.
func (ch *Channel) signedCell(s SignedState) *cell.Cell {
	return cell.BeginCell().MustStoreSlice(s.Signature, signatureBits).MustStoreBuilder(ch.stateBuilder(s.State)).EndCell()
}

// Payer is A's side of a channel: it signs each payment's new cumulative
// state. It is safe for concurrent use.
type Payer struct {
	ch  *Channel
	key ed25519.PrivateKey

	mu      sync.Mutex // guards last, deposit
	last    State
	deposit *big.Int
}

// NewPayer returns A's side of ch, resuming from last (the newest state A
// signed; the zero State for a new channel) with A's deposit.
func NewPayer(ch *Channel, key ed25519.PrivateKey, last State, deposit *big.Int) *Payer {
	if last.Sent == nil {
		last.Sent = new(big.Int)
	}
	return &Payer{ch: ch, key: key, last: last, deposit: new(big.Int).Set(deposit)}
}

// Pay signs the next state, which moves amount more to B. It refuses to send
// more than the deposit in total.
func (p *Payer) Pay(amount *big.Int) (SignedState, error) {
	if amount == nil || amount.Sign() < 0 {
		return SignedState{}, errors.New("pay: want a non-negative amount")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	next := State{Seqno: p.last.Seqno + 1, Sent: new(big.Int).Add(p.last.Sent, amount)}
	if next.Sent.Cmp(p.deposit) > 0 {
		return SignedState{}, fmt.Errorf("pay %s: %w (%s of %s)", amount, ErrOverDeposit, next.Sent, p.deposit)
	}
	s, err := p.ch.SignState(p.key, next)
	if err != nil {
		return SignedState{}, fmt.Errorf("pay %s: %w", amount, err)
	}
	p.last = next
	return s, nil
}

// SignCommit signs c, a commit B proposed, after checking that it commits
// no state of A's newer than the newest A signed.
func (p *Payer) SignCommit(c Commit) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.SeqnoA > p.last.Seqno {
		return nil, fmt.Errorf("commit of seqno %d: %w: newest signed is %d", c.SeqnoA, ErrStaleSeqno, p.last.Seqno)
	}
	return p.ch.SignCommit(p.key, c), nil
}

// Last returns the newest state the payer signed.
func (p *Payer) Last() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return State{Seqno: p.last.Seqno, Sent: new(big.Int).Set(p.last.Sent)}
}

// Payee is B's side of a channel: it checks each state A sends and keeps the
// newest. It is safe for concurrent use.
type Payee struct {
	ch  *Channel
	key ed25519.PrivateKey

	mu      sync.Mutex // guards last, deposit, own
	last    SignedState
	deposit *big.Int
	own     uint64 // the seqno of B's own semi-channel
}

// NewPayee returns B's side of ch, resuming from last (the newest state B
// accepted; the zero SignedState for a new channel), with A's deposit as
// the bound on what A can owe.
func NewPayee(ch *Channel, key ed25519.PrivateKey, last SignedState, deposit *big.Int) *Payee {
	if last.Sent == nil {
		last.Sent = new(big.Int)
	}
	return &Payee{ch: ch, key: key, last: last, deposit: new(big.Int).Set(deposit)}
}

// Accept checks s, a state A signed, and keeps it as the newest when its
// signature verifies, its seqno is above the last one accepted, its
// cumulative amount is not below the last and not above A's deposit. It
// returns how much more than the last state s pays.
func (p *Payee) Accept(s SignedState) (*big.Int, error) {
	if !p.ch.VerifyState(p.ch.cfg.KeyA, s) {
		return nil, ErrBadSignature
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case s.Seqno <= p.last.Seqno:
		return nil, fmt.Errorf("%w: %d, last %d", ErrStaleSeqno, s.Seqno, p.last.Seqno)
	case s.Sent.Cmp(p.last.Sent) < 0:
		return nil, fmt.Errorf("%w: %s, last %s", ErrAmountDown, s.Sent, p.last.Sent)
	case s.Sent.Cmp(p.deposit) > 0:
		return nil, fmt.Errorf("%w: %s of %s", ErrOverDeposit, s.Sent, p.deposit)
	}
	delta := new(big.Int).Sub(s.Sent, p.last.Sent)
	p.last = SignedState{State: State{Seqno: s.Seqno, Sent: new(big.Int).Set(s.Sent)}, Signature: s.Signature}
	return delta, nil
}

// Own returns B's own semi-channel, signed: B sends nothing, so nothing
// sent, at the seqno of B's last commit (0 before any). A close needs it
// beside A's state.
func (p *Payee) Own() (SignedState, error) {
	p.mu.Lock()
	own := p.own
	p.mu.Unlock()
	return p.ch.SignState(p.key, State{Seqno: own, Sent: new(big.Int)})
}

// SetOwnSeqno restores the seqno of B's own semi-channel, the SeqnoB of its
// last commit, when resuming from the ledger.
func (p *Payee) SetOwnSeqno(n uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.own = n
}

// Commit returns a commit of the newest accepted state, signed by B, for A
// to sign too (Payer.SignCommit) and either to send (Channel.CooperativeCommit).
// Once it lands, no state older than it can be used in a close. B's own
// seqno moves to the commit's; keep it with the state in the ledger.
func (p *Payee) Commit() (Commit, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.own++
	c := Commit{SeqnoA: p.last.Seqno, SeqnoB: p.own}
	return c, p.ch.SignCommit(p.key, c)
}

// StartClose starts an uncooperative close from w with the newest state
// accepted; after the quarantine and the conditional window,
// Channel.FinishClose pays out.
func (p *Payee) StartClose(ctx context.Context, w *Wallet) (*chain.Transaction, error) {
	own, err := p.Own()
	if err != nil {
		return nil, err
	}
	return p.ch.StartClose(ctx, w, p.key, false, p.Last(), own)
}

// Challenge answers A's uncooperative close with the newest state accepted.
func (p *Payee) Challenge(ctx context.Context, w *Wallet) (*chain.Transaction, error) {
	own, err := p.Own()
	if err != nil {
		return nil, err
	}
	return p.ch.Challenge(ctx, w, p.key, false, p.Last(), own)
}

// Last returns the newest state accepted.
func (p *Payee) Last() SignedState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return SignedState{State: State{Seqno: p.last.Seqno, Sent: new(big.Int).Set(p.last.Sent)}, Signature: p.last.Signature}
}

// Close is the final split of a channel that both parties sign for a
// cooperative close.
type Close struct {
	BalanceA, BalanceB *big.Int
	SeqnoA, SeqnoB     uint64
}

func (ch *Channel) closeCell(c Close) *cell.Cell {
	return cell.BeginCell().
		MustStoreUInt(tagClose, 32).
		MustStoreSlice(ch.cfg.ID[:], 128).
		MustStoreBigCoins(c.BalanceA).
		MustStoreBigCoins(c.BalanceB).
		MustStoreUInt(c.SeqnoA, 64).
		MustStoreUInt(c.SeqnoB, 64).
		EndCell()
}

// SignClose signs c with key.
func (ch *Channel) SignClose(key ed25519.PrivateKey, c Close) ([]byte, error) {
	if err := checkSent(c.BalanceA); err != nil {
		return nil, fmt.Errorf("signing a close: balance A: %w", err)
	}
	if err := checkSent(c.BalanceB); err != nil {
		return nil, fmt.Errorf("signing a close: balance B: %w", err)
	}
	return ch.closeCell(c).Sign(key), nil
}

// VerifyClose reports whether sig is pub's signature of c.
func (ch *Channel) VerifyClose(pub ed25519.PublicKey, c Close, sig []byte) bool {
	if checkSent(c.BalanceA) != nil || checkSent(c.BalanceB) != nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, ch.closeCell(c).Hash(), sig)
}

// CloseFor returns the split that settles a channel where A deposited
// deposit and last is the newest state A signed: A keeps the rest of its
// deposit, B gets what A sent. The seqnos are one above the last states so
// that they supersede anything committed.
func CloseFor(deposit *big.Int, last State) Close {
	return Close{
		BalanceA: new(big.Int).Sub(deposit, last.Sent),
		BalanceB: new(big.Int).Set(last.Sent),
		SeqnoA:   last.Seqno + 1,
		SeqnoB:   1,
	}
}

// CooperativeCloseBody returns the body of the message that closes the
// channel with c, signed by both.
func (ch *Channel) CooperativeCloseBody(c Close, sigA, sigB []byte) (*cell.Cell, error) {
	if len(sigA) != ed25519.SignatureSize || len(sigB) != ed25519.SignatureSize {
		return nil, errors.New("cooperative close: want both signatures")
	}
	if checkSent(c.BalanceA) != nil || checkSent(c.BalanceB) != nil {
		return nil, fmt.Errorf("cooperative close: %w", ErrAmountRange)
	}
	return cell.BeginCell().
		MustStoreUInt(opCoopClose, 32).
		MustStoreRef(cell.BeginCell().MustStoreSlice(sigA, signatureBits).EndCell()).
		MustStoreRef(cell.BeginCell().MustStoreSlice(sigB, signatureBits).EndCell()).
		MustStoreBuilder(ch.closeCell(c).ToBuilder()).
		EndCell(), nil
}

// CooperativeClose sends the close both signed from w, with GasValue. The
// contract pays each party's balance to its destination.
func (ch *Channel) CooperativeClose(ctx context.Context, w *Wallet, c Close, sigA, sigB []byte) (*chain.Transaction, error) {
	body, err := ch.CooperativeCloseBody(c, sigA, sigB)
	if err != nil {
		return nil, err
	}
	return w.Send(ctx, Message{To: ch.addr, Value: GasValue, Body: body, Bounce: true})
}

// quarantineBody returns a start_uncooperative_close or
// challenge_quarantined_state body: op, who signs, the signature, then the
// signed part (tag, channel ID, both signed semi-channels).
func (ch *Channel) quarantineBody(op, tag uint64, key ed25519.PrivateKey, byA bool, a, b SignedState) (*cell.Cell, error) {
	for _, s := range []SignedState{a, b} {
		if err := checkSent(s.Sent); err != nil {
			return nil, err
		}
		if len(s.Signature) != ed25519.SignatureSize {
			return nil, errors.New("state without a signature")
		}
	}
	signed := cell.BeginCell().
		MustStoreUInt(tag, 32).
		MustStoreSlice(ch.cfg.ID[:], 128).
		MustStoreRef(ch.signedCell(a)).
		MustStoreRef(ch.signedCell(b)).
		EndCell()
	return cell.BeginCell().
		MustStoreUInt(op, 32).
		MustStoreBoolBit(byA).
		MustStoreSlice(signed.Sign(key), signatureBits).
		MustStoreBuilder(signed.ToBuilder()).
		EndCell(), nil
}

// StartCloseBody returns the body that starts an uncooperative close with a
// (A's newest state, signed by A) and b (B's, signed by B), signed by the
// party that sends it: A when byA, else B.
func (ch *Channel) StartCloseBody(key ed25519.PrivateKey, byA bool, a, b SignedState) (*cell.Cell, error) {
	return ch.quarantineBody(opStartClose, tagStartClose, key, byA, a, b)
}

// ChallengeBody returns the body that replaces a quarantined state with
// newer ones, signed by the challenger.
func (ch *Channel) ChallengeBody(key ed25519.PrivateKey, byA bool, a, b SignedState) (*cell.Cell, error) {
	return ch.quarantineBody(opChallenge, tagChallenge, key, byA, a, b)
}

// FinishCloseBody returns the body that pays out a channel whose quarantine
// and conditional-settlement windows are over. Anyone may send it.
func FinishCloseBody() *cell.Cell {
	return cell.BeginCell().MustStoreUInt(opFinishClose, 32).EndCell()
}

// StartClose starts an uncooperative close from w; see StartCloseBody.
func (ch *Channel) StartClose(ctx context.Context, w *Wallet, key ed25519.PrivateKey, byA bool, a, b SignedState) (*chain.Transaction, error) {
	body, err := ch.StartCloseBody(key, byA, a, b)
	if err != nil {
		return nil, fmt.Errorf("starting a close: %w", err)
	}
	return w.Send(ctx, Message{To: ch.addr, Value: GasValue, Body: body, Bounce: true})
}

// Challenge challenges a quarantined state from w; see ChallengeBody.
func (ch *Channel) Challenge(ctx context.Context, w *Wallet, key ed25519.PrivateKey, byA bool, a, b SignedState) (*chain.Transaction, error) {
	body, err := ch.ChallengeBody(key, byA, a, b)
	if err != nil {
		return nil, fmt.Errorf("challenging a close: %w", err)
	}
	return w.Send(ctx, Message{To: ch.addr, Value: GasValue, Body: body, Bounce: true})
}

// FinishClose finishes an uncooperative close from w.
func (ch *Channel) FinishClose(ctx context.Context, w *Wallet) (*chain.Transaction, error) {
	return w.Send(ctx, Message{To: ch.addr, Value: GasValue, Body: FinishCloseBody(), Bounce: true})
}

// Commit raises the seqnos the contract holds as committed, so that no
// state with a lower seqno can be used in a close; both parties sign it, and
// both seqnos must be above the ones committed before.
type Commit struct {
	SeqnoA, SeqnoB uint64
}

const (
	tagCommit           = 0x43436d74
	opCooperativeCommit = 0x79a126ef
)

func (ch *Channel) commitCell(c Commit) *cell.Cell {
	return cell.BeginCell().
		MustStoreUInt(tagCommit, 32).
		MustStoreSlice(ch.cfg.ID[:], 128).
		MustStoreUInt(c.SeqnoA, 64).
		MustStoreUInt(c.SeqnoB, 64).
		EndCell()
}

// SignCommit signs c with key.
func (ch *Channel) SignCommit(key ed25519.PrivateKey, c Commit) []byte {
	return ch.commitCell(c).Sign(key)
}

// CommitBody returns the body of the message that commits c, signed by
// both.
func (ch *Channel) CommitBody(c Commit, sigA, sigB []byte) (*cell.Cell, error) {
	if len(sigA) != ed25519.SignatureSize || len(sigB) != ed25519.SignatureSize {
		return nil, errors.New("cooperative commit: want both signatures")
	}
	return cell.BeginCell().
		MustStoreUInt(opCooperativeCommit, 32).
		MustStoreRef(cell.BeginCell().MustStoreSlice(sigA, signatureBits).EndCell()).
		MustStoreRef(cell.BeginCell().MustStoreSlice(sigB, signatureBits).EndCell()).
		MustStoreBuilder(ch.commitCell(c).ToBuilder()).
		EndCell(), nil
}

// CooperativeCommit sends the commit both signed from w, with GasValue.
func (ch *Channel) CooperativeCommit(ctx context.Context, w *Wallet, c Commit, sigA, sigB []byte) (*chain.Transaction, error) {
	body, err := ch.CommitBody(c, sigA, sigB)
	if err != nil {
		return nil, err
	}
	return w.Send(ctx, Message{To: ch.addr, Value: GasValue, Body: body, Bounce: true})
}
