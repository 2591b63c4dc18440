package ton

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton/payments"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain"
)

// GasValue is what a channel operation sent through a wallet carries for the
// contract's gas; what it does not burn stays in the channel and is paid out
// to A at the close.
var GasValue = big.NewInt(50_000_000) // 0.05 TON

// ChannelConfig is what both parties agree on before a channel exists; it
// fixes the channel's address.
type ChannelConfig struct {
	// ID tells apart channels between the same keys.
	ID [16]byte
	// KeyA signs A's (the payer's) states, KeyB B's (the payee's).
	KeyA, KeyB ed25519.PublicKey
	// DestA and DestB receive each party's balance when the channel closes.
	DestA, DestB *address.Address
	// Quarantine is how long an uncooperative close can be challenged with a
	// newer state.
	Quarantine time.Duration
	// ConditionalClose is how long after the quarantine conditional payments
	// can be settled; this package signs none.
	ConditionalClose time.Duration
	// MisbehaviorFine is taken from a party caught closing with an old
	// state; nil means none.
	MisbehaviorFine *big.Int
	// ExcessFee is kept by the channel from each payout; nil means none.
	ExcessFee *big.Int
}

// Channel is a payment channel's identity and its on-chain operations. Off
// chain, a Payer and a Payee sign and check states on it.
type Channel struct {
	cfg   ChannelConfig
	chain chain.Chain
	init  *tlb.StateInit
	addr  *address.Address
}

// NewChannel returns the channel cfg describes; it starts and sends nothing.
func NewChannel(cfg ChannelConfig, c chain.Chain) (*Channel, error) {
	if len(cfg.KeyA) != ed25519.PublicKeySize || len(cfg.KeyB) != ed25519.PublicKeySize {
		return nil, errors.New("channel: KeyA and KeyB must be Ed25519 public keys")
	}
	if cfg.DestA == nil || cfg.DestB == nil {
		return nil, errors.New("channel: DestA and DestB must be set")
	}
	if cfg.Quarantine < time.Second || cfg.Quarantine > (1<<32-1)*time.Second {
		return nil, fmt.Errorf("channel: quarantine %v out of range", cfg.Quarantine)
	}
	if cfg.ConditionalClose < 0 || cfg.ConditionalClose > (1<<32-1)*time.Second {
		return nil, fmt.Errorf("channel: conditional close %v out of range", cfg.ConditionalClose)
	}
	data, err := tlb.ToCell(payments.AsyncChannelStorageData{
		KeyA:      cfg.KeyA,
		KeyB:      cfg.KeyB,
		ChannelID: cfg.ID[:],
		ClosingConfig: payments.ClosingConfig{
			QuarantineDuration:       uint32(cfg.Quarantine / time.Second),
			MisbehaviorFine:          coins(cfg.MisbehaviorFine),
			ConditionalCloseDuration: uint32(cfg.ConditionalClose / time.Second),
		},
		Payments: payments.PaymentConfig{ExcessFee: coins(cfg.ExcessFee), DestA: cfg.DestA, DestB: cfg.DestB},
	})
	if err != nil {
		return nil, fmt.Errorf("channel: storage: %w", err)
	}
	init := &tlb.StateInit{Code: payments.AsyncPaymentChannelCode, Data: data}
	si, err := tlb.ToCell(init)
	if err != nil {
		return nil, fmt.Errorf("channel: state init: %w", err)
	}
	return &Channel{cfg: cfg, chain: c, init: init, addr: address.NewAddress(0, 0, si.Hash())}, nil
}

func coins(n *big.Int) tlb.Coins {
	if n == nil {
		return tlb.ZeroCoins
	}
	return tlb.FromNanoTON(n)
}

// Address returns the channel contract's address.
func (ch *Channel) Address() *address.Address { return ch.addr }

// Config returns the channel's configuration.
func (ch *Channel) Config() ChannelConfig { return ch.cfg }

// StateInit returns the channel contract's code and initial data.
func (ch *Channel) StateInit() *tlb.StateInit { return ch.init }

// Deploy deploys the channel from w and initializes it with A's deposit,
// which the message carries along with GasValue. keyA is A's channel key;
// it signs the initial balances.
func (ch *Channel) Deploy(ctx context.Context, w *Wallet, keyA ed25519.PrivateKey, deposit *big.Int) (*chain.Transaction, error) {
	body, err := ch.InitBody(keyA, deposit)
	if err != nil {
		return nil, err
	}
	value := new(big.Int).Add(deposit, GasValue)
	return w.Send(ctx, Message{To: ch.addr, Value: value, Body: body, StateInit: ch.init, Bounce: false})
}

// InitBody is the body of the message that deploys the channel with A's
// deposit (Deploy's), signed by keyA, A's channel key; the message must
// carry the deposit and GasValue.
func (ch *Channel) InitBody(keyA ed25519.PrivateKey, deposit *big.Int) (*cell.Cell, error) {
	if deposit == nil || deposit.Sign() < 0 {
		return nil, errors.New("channel deploy: want a non-negative deposit")
	}
	msg := payments.InitChannel{IsA: true}
	msg.Signed.ChannelID = ch.cfg.ID[:]
	msg.Signed.BalanceA = tlb.FromNanoTON(deposit)
	msg.Signed.BalanceB = tlb.ZeroCoins
	sig, err := sign(keyA, msg.Signed)
	if err != nil {
		return nil, fmt.Errorf("channel deploy: %w", err)
	}
	msg.Signature = payments.Signature{Value: sig}
	body, err := tlb.ToCell(msg)
	if err != nil {
		return nil, fmt.Errorf("channel deploy: %w", err)
	}
	return body, nil
}

// TopUpBody returns the body of a message that adds addA to A's balance and
// addB to B's; the message must carry at least their sum.
func TopUpBody(addA, addB *big.Int) (*cell.Cell, error) {
	return tlb.ToCell(payments.TopupBalance{AddA: coins(addA), AddB: coins(addB)})
}

// TopUp adds add to A's balance from w. The contract takes top-ups only
// before the channel is initialized: on an open channel it refuses them
// (exit code 100) and the value bounces back to w, less fees. A channel's
// capacity is therefore fixed when Deploy opens it; to add capacity, close
// it and open a new one.
func (ch *Channel) TopUp(ctx context.Context, w *Wallet, add *big.Int) (*chain.Transaction, error) {
	if add == nil || add.Sign() <= 0 {
		return nil, errors.New("channel top-up: want a positive amount")
	}
	body, err := TopUpBody(add, nil)
	if err != nil {
		return nil, fmt.Errorf("channel top-up: %w", err)
	}
	value := new(big.Int).Add(add, GasValue)
	return w.Send(ctx, Message{To: ch.addr, Value: value, Body: body, Bounce: true})
}

// Status is a channel's lifecycle state, as its get_channel_state says.
type Status int

// Channel statuses.
const (
	StatusUninit Status = iota
	StatusOpen
	StatusClosureStarted
	StatusSettlingConditionals
	StatusAwaitingFinalization
	StatusClosed Status = -1 // the contract paid out and holds nothing
)

func (s Status) String() string {
	switch s {
	case StatusUninit:
		return "uninit"
	case StatusOpen:
		return "open"
	case StatusClosureStarted:
		return "closure started"
	case StatusSettlingConditionals:
		return "settling conditionals"
	case StatusAwaitingFinalization:
		return "awaiting finalization"
	case StatusClosed:
		return "closed"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// OnChain is a channel's state as the contract holds it.
type OnChain struct {
	Status             Status
	Balance            *big.Int // the contract's own balance
	BalanceA, BalanceB *big.Int // the parties' deposits
	SeqnoA, SeqnoB     uint32   // the committed seqnos
	// Quarantine is the state an uncooperative close put in quarantine, or
	// nil.
	Quarantine *payments.QuarantinedState
}

// ExitTopUpAfterInit is the contract's exit code for a top-up of a channel
// already initialized.
const ExitTopUpAfterInit = 100

// ErrNotDeployed means the channel contract is not on chain (never
// deployed, or closed and gone). Retrying helps only after a deploy.
var ErrNotDeployed = errors.New("channel not deployed")

// State reads the channel's on-chain state: its storage, and its status from
// the get_channel_state get-method, which counts time by the chain's clock.
func (ch *Channel) State(ctx context.Context) (*OnChain, error) {
	acc, err := ch.chain.Account(ctx, ch.addr)
	if err != nil {
		return nil, fmt.Errorf("channel state: %w", err)
	}
	if acc.Status != chain.StatusActive {
		return nil, fmt.Errorf("channel state: %w (account %s)", ErrNotDeployed, acc.Status)
	}
	var st payments.AsyncChannelStorageData
	if err := tlb.LoadFromCell(&st, acc.Data.BeginParse()); err != nil {
		return nil, fmt.Errorf("channel state: decoding storage: %w", err)
	}
	status, err := getUint(ctx, ch.chain, ch.addr, "get_channel_state")
	if err != nil {
		return nil, fmt.Errorf("channel state: %w", err)
	}
	return &OnChain{
		Status:     Status(status),
		Balance:    acc.Balance,
		BalanceA:   st.BalanceA.Nano(),
		BalanceB:   st.BalanceB.Nano(),
		SeqnoA:     st.CommittedSeqnoA,
		SeqnoB:     st.CommittedSeqnoB,
		Quarantine: st.Quarantine,
	}, nil
}

// sign signs the cell form of v, a TL-B value.
func sign(key ed25519.PrivateKey, v any) ([]byte, error) {
	c, err := tlb.ToCell(v)
	if err != nil {
		return nil, err
	}
	return c.Sign(key), nil
}
