package liteclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/xssnick/tonutils-go/address"
	tonlc "github.com/xssnick/tonutils-go/liteclient"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain"
)

// ErrNotStarted is returned by every method called before Start succeeded or
// after Close. Retrying helps only once Start has succeeded.
var ErrNotStarted = errors.New("liteclient: not started")

const (
	// connectTimeout bounds connecting to the liteservers when Start's ctx
	// allows longer.
	connectTimeout = 15 * time.Second
	// pollInterval is how often WaitTransaction looks at the account. A
	// basechain block comes every few seconds.
	pollInterval = 2 * time.Second
	// lookback is how many of the account's latest transactions the first
	// look of WaitTransaction checks, in case the message landed before it was
	// called.
	lookback = 32
	// pageSize is how many transactions one ListTransactions call asks for.
	pageSize = 16
	// Reconnect backoff after a liteserver drops.
	minReconnectWait = time.Second
	maxReconnectWait = 30 * time.Second
	reconnectTimeout = 10 * time.Second
)

// tonAPI is the part of ton.APIClientWrapped the client uses; tests replace
// it with a fake.
type tonAPI interface {
	// Client gives the liteserver pool, for its sticky contexts.
	Client() ton.LiteClient
	CurrentMasterchainInfo(ctx context.Context) (*ton.BlockIDExt, error)
	GetAccount(ctx context.Context, block *ton.BlockIDExt, addr *address.Address) (*tlb.Account, error)
	RunGetMethod(ctx context.Context, block *ton.BlockIDExt, addr *address.Address, method string, params ...any) (*ton.ExecutionResult, error)
	SendExternalMessage(ctx context.Context, msg *tlb.ExternalMessage) error
	ListTransactions(ctx context.Context, addr *address.Address, num uint32, lt uint64, txHash []byte) ([]*tlb.Transaction, error)
}

var (
	_ tonAPI      = ton.APIClientWrapped(nil)
	_ chain.Chain = (*Client)(nil)
)

// Client is a chain.Chain on a real TON network. It is safe for concurrent
// use.
type Client struct {
	source string // where the global config comes from
	log    *slog.Logger
	poll   time.Duration

	closing context.Context // ends when Close is called
	stop    context.CancelFunc

	mu     sync.Mutex // guards api, pool, closed
	api    tonAPI
	pool   *tonlc.ConnectionPool // nil with a fake api
	closed bool

	// reconnects counts the reconnect loops the pool runs through
	// c.reconnect; Close waits for them. Add only with mu held and !closed.
	reconnects sync.WaitGroup
}

// New returns a client for cfg's network. It starts nothing and contacts
// nobody. A nil log discards.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := newClient(log.With("component", "liteclient", "network", cfg.Network))
	c.source = cfg.source()
	return c, nil
}

func newClient(log *slog.Logger) *Client {
	c := &Client{log: log, poll: pollInterval}
	c.closing, c.stop = context.WithCancel(context.Background())
	return c
}

// Start loads the global config, connects to its liteservers and checks the
// masterchain's proof chain from the config's init block up to the latest
// block, which can take up to a minute on the first start. It returns once
// that check passed, or with an error naming what failed.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	started, closed := c.api != nil, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return errors.New("liteclient: Start after Close")
	case started:
		return errors.New("liteclient: already started")
	}

	gc, err := LoadGlobalConfig(ctx, c.source)
	if err != nil {
		return fmt.Errorf("liteclient: %w", err)
	}

	pool := tonlc.NewConnectionPool()
	// tonutils-go's default reconnect loop retries forever, even after the
	// pool stops; ours ends with Close.
	pool.SetOnDisconnect(func(addr, key string) { c.reconnect(pool, addr, key) })
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = pool.AddConnectionsFromConfig(cctx, gc)
	cancel()
	if err != nil {
		pool.Stop()
		return fmt.Errorf("liteclient: connecting to the liteservers of %s: %w", redact(c.source), err)
	}

	// Secure checks every masterchain block against the chain of key blocks
	// from a trusted block, here the config's init block; account states,
	// get-method results and transaction lists are checked against it.
	api := ton.NewAPIClient(pool, ton.ProofCheckPolicySecure).WithRetry()
	api.SetTrustedBlockFromConfig(gc)
	block, err := api.CurrentMasterchainInfo(pool.StickyContext(ctx))
	if err != nil {
		pool.Stop()
		return fmt.Errorf("liteclient: checking the masterchain from the config's init block: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.api != nil {
		pool.Stop()
		return errors.New("liteclient: closed or started while starting")
	}
	c.api, c.pool = api, pool
	c.log.Info("connected", "config", redact(c.source), "masterchain_seqno", block.SeqNo)
	return nil
}

// Close disconnects from the liteservers and waits for the reconnect loops
// the client runs. Calls in flight fail. The pool's own reader goroutines
// (tonutils-go) end when their sockets close, without being waited for.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	pool := c.pool
	c.api, c.pool = nil, nil
	c.mu.Unlock()
	c.stop()
	if pool != nil {
		pool.Stop()
	}
	c.reconnects.Wait()
}

// reconnect runs as the pool's disconnect callback, in a goroutine the pool
// starts: it dials addr again, backing off, until it succeeds or the client
// closes.
func (c *Client) reconnect(pool *tonlc.ConnectionPool, addr, key string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.reconnects.Add(1)
	c.mu.Unlock()
	defer c.reconnects.Done()

	log := c.log.With("liteserver", addr)
	log.Warn("liteserver disconnected")
	wait := minReconnectWait
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-c.closing.Done():
			return
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(c.closing, reconnectTimeout)
		err := pool.AddConnection(ctx, addr, key)
		cancel()
		switch {
		case err == nil:
			log.Info("liteserver reconnected")
			return
		case errors.Is(err, tonlc.ErrStopped), c.closing.Err() != nil:
			return
		}
		log.Debug("reconnecting", "err", err)
		wait = min(2*wait, maxReconnectWait)
		timer.Reset(wait)
	}
}

func (c *Client) current() (tonAPI, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api == nil {
		return nil, ErrNotStarted
	}
	return c.api, nil
}

// Account returns the account's state in the latest masterchain block.
func (c *Client) Account(ctx context.Context, addr *address.Address) (*chain.Account, error) {
	api, err := c.current()
	if err != nil {
		return nil, err
	}
	acc, err := account(api.Client().StickyContext(ctx), api, addr)
	if err != nil {
		return nil, fmt.Errorf("liteclient: account %s: %w", addr, err)
	}
	return toAccount(acc)
}

// account reads addr at the latest masterchain block. ctx should be sticky,
// so that both requests reach the same liteserver.
func account(ctx context.Context, api tonAPI, addr *address.Address) (*tlb.Account, error) {
	block, err := api.CurrentMasterchainInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("masterchain info: %w", err)
	}
	acc, err := api.GetAccount(ctx, block, addr)
	if err != nil {
		return nil, fmt.Errorf("account state at masterchain block %d: %w", block.SeqNo, err)
	}
	return acc, nil
}

func toAccount(acc *tlb.Account) (*chain.Account, error) {
	if !acc.IsActive || acc.State == nil || !acc.State.IsValid {
		return &chain.Account{Status: chain.StatusNonexist, Balance: new(big.Int)}, nil
	}
	a := &chain.Account{
		Balance:    acc.State.Balance.Nano(),
		LastTxLT:   acc.LastTxLT,
		LastTxHash: slices.Clone(acc.LastTxHash),
	}
	switch acc.State.Status {
	case tlb.AccountStatusActive:
		a.Status, a.Code, a.Data = chain.StatusActive, acc.Code, acc.Data
	case tlb.AccountStatusUninit:
		a.Status = chain.StatusUninit
	case tlb.AccountStatusFrozen:
		a.Status = chain.StatusFrozen
	case tlb.AccountStatusNonExist:
		a.Status = chain.StatusNonexist
	default:
		return nil, fmt.Errorf("liteclient: unknown account status %q", acc.State.Status)
	}
	return a, nil
}

// RunGetMethod runs method on addr's state in the latest masterchain block.
// An account that is not active gives an error wrapping chain.ErrNotFound.
func (c *Client) RunGetMethod(ctx context.Context, addr *address.Address, method string, args ...any) ([]any, error) {
	api, err := c.current()
	if err != nil {
		return nil, err
	}
	ctx = api.Client().StickyContext(ctx)
	block, err := api.CurrentMasterchainInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("liteclient: get-method %s on %s: masterchain info: %w", method, addr, err)
	}
	res, err := api.RunGetMethod(ctx, block, addr, method, args...)
	var exit ton.ContractExecError
	switch {
	case errors.As(err, &exit) && exit.Code == ton.ErrCodeContractNotInitialized:
		return nil, fmt.Errorf("liteclient: get-method %s on %s: %w", method, addr, chain.ErrNotFound)
	case errors.As(err, &exit):
		return nil, &chain.ExitError{Method: method, Code: int(exit.Code)}
	case err != nil:
		return nil, fmt.Errorf("liteclient: get-method %s on %s: %w", method, addr, err)
	}
	return res.AsTuple(), nil
}

// SendExternal sends msg, an external-in message, and returns the hash of the
// message as sent. tonutils-go decodes and encodes the message again before
// sending it, which keeps msg's hash unless msg keeps its body or state init
// in a reference where it would fit inline; the hash returned is always the
// one WaitTransaction finds.
func (c *Client) SendExternal(ctx context.Context, msg *cell.Cell) ([]byte, error) {
	api, err := c.current()
	if err != nil {
		return nil, err
	}
	if msg == nil {
		return nil, errors.New("liteclient: sending a nil message")
	}
	var m tlb.Message
	if err := m.LoadFromCell(msg.BeginParse()); err != nil {
		return nil, fmt.Errorf("liteclient: decoding the message to send: %w", err)
	}
	if m.MsgType != tlb.MsgTypeExternalIn {
		return nil, fmt.Errorf("liteclient: sending a message of type %s, want %s", m.MsgType, tlb.MsgTypeExternalIn)
	}
	ext := m.AsExternalIn()
	sent, err := tlb.ToCell(ext)
	if err != nil {
		return nil, fmt.Errorf("liteclient: encoding the message to send: %w", err)
	}
	hash := sent.Hash()
	if !bytes.Equal(hash, msg.Hash()) {
		c.log.Debug("message re-encoded before sending; its hash changed", "to", ext.DstAddr)
	}
	if err := api.SendExternalMessage(ctx, ext); err != nil {
		return nil, fmt.Errorf("liteclient: sending a message to %s: %w", ext.DstAddr, err)
	}
	return hash, nil
}

// WaitTransaction polls addr until one of its transactions has an inbound
// message with hash msgHash. The first look checks the account's latest
// transactions too, in case the message landed before the call; later looks
// check every transaction since the previous look. Errors from a look are
// logged and the next look retries; when ctx ends, the error wraps ctx's and
// says the last look's error.
func (c *Client) WaitTransaction(ctx context.Context, addr *address.Address, msgHash []byte) (*chain.Transaction, error) {
	api, err := c.current()
	if err != nil {
		return nil, err
	}
	if len(msgHash) != 32 {
		return nil, fmt.Errorf("liteclient: message hash has %d bytes, want 32", len(msgHash))
	}
	var (
		seen    uint64 // the newest transaction already checked; 0 before the first look
		limit   = lookback
		lastErr error
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("liteclient: waiting for a transaction on %s: %w (last error: %v)", addr, ctx.Err(), lastErr)
			}
			return nil, fmt.Errorf("liteclient: waiting for a transaction on %s: %w", addr, ctx.Err())
		case <-timer.C:
		}
		tx, newest, err := find(api.Client().StickyContext(ctx), api, addr, msgHash, seen, limit)
		switch {
		case err == nil && tx != nil:
			return tx, nil
		case err == nil:
			seen, limit, lastErr = newest, 0, nil
		case ctx.Err() == nil: // else the select reports ctx's end
			lastErr = err
			c.log.Debug("looking for a transaction", "account", addr, "err", err)
		}
		timer.Reset(c.poll)
	}
}

// find looks through addr's transactions newer than seen, newest first, for
// one whose inbound message hashes to msgHash; limit > 0 stops after that many
// transactions. It returns the match, or the newest transaction's lt. ctx
// should be sticky.
func find(ctx context.Context, api tonAPI, addr *address.Address, msgHash []byte, seen uint64, limit int) (*chain.Transaction, uint64, error) {
	acc, err := account(ctx, api, addr)
	if err != nil {
		return nil, 0, err
	}
	if !acc.IsActive || acc.LastTxLT <= seen {
		return nil, seen, nil
	}
	lt, hash := acc.LastTxLT, acc.LastTxHash
	checked := 0
	for lt > seen {
		txs, err := api.ListTransactions(ctx, addr, pageSize, lt, hash)
		if errors.Is(err, ton.ErrNoTransactionsWereFound) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("listing transactions from lt %d: %w", lt, err)
		}
		if len(txs) == 0 {
			break
		}
		for _, tx := range slices.Backward(txs) {
			if tx.LT <= seen {
				return nil, acc.LastTxLT, nil
			}
			if in := inMessageHash(tx); in != nil && bytes.Equal(in, msgHash) {
				return toTransaction(tx, in), acc.LastTxLT, nil
			}
			if checked++; checked == limit {
				return nil, acc.LastTxLT, nil
			}
		}
		// txs come oldest first; go on from the one before the oldest.
		lt, hash = txs[0].PrevTxLT, txs[0].PrevTxHash
	}
	return nil, acc.LastTxLT, nil
}

// inMessageHash is the hash of tx's inbound message, or nil when it has none.
// The transaction holds the message decoded, so it is encoded again, as
// SendExternal encodes what it sends.
func inMessageHash(tx *tlb.Transaction) []byte {
	if tx.IO.In == nil || tx.IO.In.Msg == nil {
		return nil
	}
	c, err := tlb.ToCell(tx.IO.In.Msg)
	if err != nil {
		return nil
	}
	return c.Hash()
}

// toTransaction reads the outcome from an ordinary or tick-tock transaction's
// description. Other kinds have no inbound message and count as failed.
func toTransaction(tx *tlb.Transaction, inHash []byte) *chain.Transaction {
	t := &chain.Transaction{
		LT:            tx.LT,
		Hash:          slices.Clone(tx.Hash),
		InMessageHash: inHash,
		ExitCode:      -1,
	}
	var (
		compute tlb.ComputePhase
		action  *tlb.ActionPhase
	)
	switch d := tx.Description.(type) {
	case tlb.TransactionDescriptionOrdinary:
		compute, action, t.Aborted = d.ComputePhase, d.ActionPhase, d.Aborted
	case tlb.TransactionDescriptionTickTock:
		compute, action, t.Aborted = d.ComputePhase, d.ActionPhase, d.Aborted
	default:
		return t
	}
	vm, ran := compute.Phase.(tlb.ComputePhaseVM)
	if ran {
		t.ExitCode = int(vm.Details.ExitCode)
	}
	t.Success = ran && vm.Success && action != nil && action.Success && !t.Aborted
	return t
}
