package ton

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/internal/secret"
)

// SeedFile is the name of the wallet's seed file inside the data dir.
const SeedFile = "wallet.seed"

// MainnetID is the global ID of TON mainnet, which wallet v5r1 mixes into
// its wallet ID. The sandbox emulator runs with mainnet's configuration.
const MainnetID int32 = -239

// Send modes of an outgoing message: pay the forward fees from the wallet's
// balance rather than from the value, and ignore errors in the action phase.
const sendMode = 1 + 2

// ErrInsufficientFunds means the wallet holds less than the messages carry.
// Retrying helps once it is funded.
var ErrInsufficientFunds = errors.New("insufficient funds")

// ErrTransactionFailed means a message reached its destination and the
// transaction it caused failed. Sending the same message again against the
// same state fails the same way.
var ErrTransactionFailed = errors.New("transaction failed")

// LoadOrCreateSeed returns the 24-word wallet seed kept in dataDir, creating
// it (mode 0600, written atomically) on first use. A seed file readable by
// group or others is refused rather than silently trusted.
func LoadOrCreateSeed(dataDir string) ([]string, error) {
	path := filepath.Join(dataDir, SeedFile)
	b, err := secret.Read(path, "wallet seed")
	switch {
	case err == nil:
		words := strings.Fields(string(b))
		if _, err := wallet.SeedToPrivateKey(words, "", false); err != nil {
			return nil, fmt.Errorf("wallet seed %s: %w", path, err)
		}
		return words, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	words := wallet.NewSeed()
	if err := secret.Write(path, []byte(strings.Join(words, " ")+"\n")); err != nil {
		return nil, fmt.Errorf("writing wallet seed: %w", err)
	}
	return words, nil
}

// WalletConfig configures a Wallet. The zero value uses MainnetID, the wall
// clock and a one-minute expiry.
type WalletConfig struct {
	// NetworkID is the network's global ID; 0 means MainnetID.
	NetworkID int32
	// Now is the clock the messages' expiry counts from; nil means time.Now.
	// Against the sandbox, pass its clock.
	Now func() time.Time
	// TTL is how long a signed message stays valid; 0 means a minute.
	TTL time.Duration
}

// Wallet is a wallet v5r1 over a chain.Chain. It is safe for concurrent use;
// sends go out one at a time, since each takes the next seqno.
type Wallet struct {
	chain  chain.Chain
	key    ed25519.PrivateKey
	cfg    WalletConfig
	init   *tlb.StateInit
	addr   *address.Address
	wallet uint32 // the serialized wallet ID

	mu sync.Mutex // serializes Send, so each message takes the next seqno
}

// OpenWallet returns the wallet whose seed is kept in dataDir, creating the
// seed on first use.
func OpenWallet(dataDir string, c chain.Chain, cfg WalletConfig) (*Wallet, error) {
	key, err := LoadKey(dataDir)
	if err != nil {
		return nil, err
	}
	return NewWallet(key, c, cfg)
}

// LoadKey returns the private key of the seed kept in dataDir, creating
// the seed on first use. The wallet and the node's payment channels sign
// with it.
func LoadKey(dataDir string) (ed25519.PrivateKey, error) {
	words, err := LoadOrCreateSeed(dataDir)
	if err != nil {
		return nil, err
	}
	key, err := wallet.SeedToPrivateKey(words, "", false)
	if err != nil {
		return nil, fmt.Errorf("wallet seed: %w", err)
	}
	return key, nil
}

// NewWallet returns the basechain wallet v5r1 (subwallet 0) of key.
func NewWallet(key ed25519.PrivateKey, c chain.Chain, cfg WalletConfig) (*Wallet, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("wallet key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if cfg.NetworkID == 0 {
		cfg.NetworkID = MainnetID
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Minute
	}
	ver := wallet.ConfigV5R1Final{NetworkGlobalID: cfg.NetworkID, Workchain: 0}
	init, err := wallet.GetStateInit(key.Public().(ed25519.PublicKey), ver, 0)
	if err != nil {
		return nil, fmt.Errorf("wallet state init: %w", err)
	}
	si, err := tlb.ToCell(init)
	if err != nil {
		return nil, fmt.Errorf("wallet state init: %w", err)
	}
	id := wallet.V5R1ID{NetworkGlobalID: cfg.NetworkID, WorkChain: 0, SubwalletNumber: 0, WalletVersion: 0}
	return &Wallet{
		chain:  c,
		key:    key,
		cfg:    cfg,
		init:   init,
		addr:   address.NewAddress(0, 0, si.Hash()),
		wallet: id.Serialized(),
	}, nil
}

// Address returns the wallet's address, bounceable as contracts expect.
func (w *Wallet) Address() *address.Address { return w.addr }

// PublicKey returns the wallet's public key.
func (w *Wallet) PublicKey() ed25519.PublicKey { return w.key.Public().(ed25519.PublicKey) }

// Balance returns the wallet's balance in nanoTON; 0 for a wallet never
// funded.
func (w *Wallet) Balance(ctx context.Context) (*big.Int, error) {
	acc, err := w.chain.Account(ctx, w.addr)
	if err != nil {
		return nil, fmt.Errorf("wallet balance: %w", err)
	}
	return acc.Balance, nil
}

// Message is an internal message a wallet sends.
type Message struct {
	To    *address.Address
	Value *big.Int // nanoTON
	Body  *cell.Cell
	// StateInit, when set, deploys To's contract with the message.
	StateInit *tlb.StateInit
	// Bounce asks for the value back when To fails; set it for contracts,
	// leave it off for accounts that may not exist.
	Bounce bool
}

// Send signs and sends msgs (at most 255) from the wallet, deploying the
// wallet itself if it is not yet, and returns the wallet's transaction. It
// refuses to send more than the wallet holds (fees come on top, so keep a
// margin). It says nothing of what happened at the destinations, whose
// transactions follow the wallet's: read their state.
func (w *Wallet) Send(ctx context.Context, msgs ...Message) (*chain.Transaction, error) {
	if len(msgs) == 0 || len(msgs) > 255 {
		return nil, fmt.Errorf("wallet send: %d messages, want 1 to 255", len(msgs))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	acc, err := w.chain.Account(ctx, w.addr)
	if err != nil {
		return nil, fmt.Errorf("wallet send: %w", err)
	}
	total := new(big.Int)
	for _, m := range msgs {
		if m.Value != nil {
			total.Add(total, m.Value)
		}
	}
	// The wallet sends with the ignore-errors mode, which wallet v5r1
	// requires of signed requests, so a message it cannot pay for would be
	// dropped in silence: refuse it here.
	if acc.Balance.Cmp(total) < 0 {
		return nil, fmt.Errorf("wallet send: %w: %s nanoTON held, %s to send", ErrInsufficientFunds, acc.Balance, total)
	}
	var seqno uint64
	deployed := acc.Status == chain.StatusActive
	if deployed {
		if seqno, err = getUint(ctx, w.chain, w.addr, "seqno"); err != nil {
			return nil, fmt.Errorf("wallet send: %w", err)
		}
	}
	ext, err := w.external(seqno, !deployed, msgs)
	if err != nil {
		return nil, fmt.Errorf("wallet send: %w", err)
	}
	hash, err := w.chain.SendExternal(ctx, ext)
	if err != nil {
		return nil, fmt.Errorf("wallet send: %w", err)
	}
	tx, err := w.chain.WaitTransaction(ctx, w.addr, hash)
	if err != nil {
		return nil, fmt.Errorf("wallet send: %w", err)
	}
	if !tx.Success {
		return tx, fmt.Errorf("wallet send: %w: exit code %d", ErrTransactionFailed, tx.ExitCode)
	}
	return tx, nil
}

// external builds the signed external message that makes the wallet send
// msgs: wallet v5r1's signed request (op "sign", wallet ID, valid until,
// seqno, out actions, no extended actions) with the signature at its end.
func (w *Wallet) external(seqno uint64, withInit bool, msgs []Message) (*cell.Cell, error) {
	list := cell.BeginCell().EndCell() // out_list_empty
	for i, m := range msgs {
		if m.To == nil || m.Value == nil || m.Value.Sign() < 0 {
			return nil, fmt.Errorf("message %d: want a destination and a non-negative value", i)
		}
		out, err := tlb.ToCell(&tlb.InternalMessage{
			IHRDisabled: true,
			Bounce:      m.Bounce,
			DstAddr:     m.To,
			Amount:      tlb.FromNanoTON(m.Value),
			StateInit:   m.StateInit,
			Body:        m.Body,
		})
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		list = cell.BeginCell().
			MustStoreRef(list).
			MustStoreUInt(0x0ec3c86d, 32). // action_send_msg
			MustStoreUInt(sendMode, 8).
			MustStoreRef(out).
			EndCell()
	}
	validUntil := w.cfg.Now().Add(w.cfg.TTL).Unix()
	signed := cell.BeginCell().
		MustStoreUInt(0x7369676e, 32). // "sign": a request signed by the key
		MustStoreUInt(uint64(w.wallet), 32).
		MustStoreUInt(uint64(validUntil), 32).
		MustStoreUInt(seqno, 32).
		MustStoreMaybeRef(list).
		MustStoreBoolBit(false) // no extended actions
	body := cell.BeginCell().
		MustStoreBuilder(signed).
		MustStoreSlice(signed.EndCell().Sign(w.key), 512).
		EndCell()
	ext := &tlb.ExternalMessage{DstAddr: w.addr, Body: body}
	if withInit {
		ext.StateInit = w.init
	}
	return tlb.ToCell(ext)
}

// getUint runs a get-method that returns one non-negative integer.
func getUint(ctx context.Context, c chain.Chain, addr *address.Address, method string) (uint64, error) {
	stack, err := c.RunGetMethod(ctx, addr, method)
	if err != nil {
		return 0, err
	}
	if len(stack) < 1 {
		return 0, fmt.Errorf("get-method %s returned nothing", method)
	}
	n, ok := stack[0].(*big.Int)
	if !ok || n.Sign() < 0 || !n.IsUint64() {
		return 0, fmt.Errorf("get-method %s returned %v, want a non-negative integer", method, stack[0])
	}
	return n.Uint64(), nil
}
