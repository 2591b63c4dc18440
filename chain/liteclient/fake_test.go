package liteclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tl"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// stickyKey marks a context bound to one fake liteserver.
type stickyKey struct{}

// fakeLiteClient stands for the liteserver pool: it only hands out sticky
// contexts, each bound to a new node.
type fakeLiteClient struct {
	nodes atomic.Uint32
}

func (l *fakeLiteClient) QueryLiteserver(context.Context, tl.Serializable, tl.Serializable) error {
	return errors.New("fakeLiteClient: no liteserver behind the fake")
}

func (l *fakeLiteClient) StickyContext(ctx context.Context) context.Context {
	if l.StickyNodeID(ctx) != 0 {
		return ctx
	}
	return context.WithValue(ctx, stickyKey{}, l.nodes.Add(1))
}

func (l *fakeLiteClient) StickyContextNextNode(ctx context.Context) (context.Context, error) {
	return context.WithValue(ctx, stickyKey{}, l.nodes.Add(1)), nil
}

func (l *fakeLiteClient) StickyContextNextNodeBalanced(ctx context.Context) (context.Context, error) {
	return l.StickyContextNextNode(ctx)
}

func (l *fakeLiteClient) StickyNodeID(ctx context.Context) uint32 {
	id, _ := ctx.Value(stickyKey{}).(uint32)
	return id
}

// fakeAPI is a TON network in memory behind the tonAPI interface. It answers
// with tonutils-go structures decoded from real cells, and refuses requests
// that are not bound to a liteserver or name another block than the latest.
type fakeAPI struct {
	lite  fakeLiteClient
	block *ton.BlockIDExt

	mu       sync.Mutex                            // guards the fields below
	accounts map[string]*tlb.Account               // by address; absent ones do not exist
	txs      map[string][]*tlb.Transaction         // by address, oldest first
	arrivals map[string][][]*tlb.Transaction       // appended to txs, one batch per GetAccount
	failures map[string]int                        // GetAccount calls of an address to fail
	sent     []*tlb.ExternalMessage                // what SendExternalMessage got
	sendErr  error                                 // SendExternalMessage's answer
	nodes    []uint32                              // the sticky node of each request, in order
	methods  map[string]func([]any) ([]any, error) // get-methods of active accounts
}

var _ tonAPI = (*fakeAPI)(nil)

func newFakeAPI() *fakeAPI {
	return &fakeAPI{
		block: &ton.BlockIDExt{
			Workchain: address.MasterchainID,
			Shard:     -1 << 63,
			SeqNo:     42,
			RootHash:  bytes.Repeat([]byte{1}, 32),
			FileHash:  bytes.Repeat([]byte{2}, 32),
		},
		accounts: map[string]*tlb.Account{},
		txs:      map[string][]*tlb.Transaction{},
		arrivals: map[string][][]*tlb.Transaction{},
		failures: map[string]int{},
		methods:  map[string]func([]any) ([]any, error){},
	}
}

// requestLocked records the request's node and checks it is sticky and for
// the latest block.
func (f *fakeAPI) requestLocked(ctx context.Context, block *ton.BlockIDExt) error {
	node := f.lite.StickyNodeID(ctx)
	f.nodes = append(f.nodes, node)
	switch {
	case node == 0:
		return errors.New("fakeAPI: request not bound to a liteserver")
	case block != nil && !block.Equals(f.block):
		return fmt.Errorf("fakeAPI: block %d is not the latest", block.SeqNo)
	}
	return ctx.Err()
}

func (f *fakeAPI) Client() ton.LiteClient { return &f.lite }

func (f *fakeAPI) CurrentMasterchainInfo(ctx context.Context) (*ton.BlockIDExt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requestLocked(ctx, nil); err != nil {
		return nil, err
	}
	return f.block, nil
}

func (f *fakeAPI) GetAccount(ctx context.Context, block *ton.BlockIDExt, addr *address.Address) (*tlb.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requestLocked(ctx, block); err != nil {
		return nil, err
	}
	key := addr.String()
	if f.failures[key] > 0 {
		f.failures[key]--
		return nil, errors.New("fakeAPI: liteserver hiccup")
	}
	if batches := f.arrivals[key]; len(batches) > 0 {
		f.txs[key] = append(f.txs[key], batches[0]...)
		f.arrivals[key] = batches[1:]
	}
	acc, ok := f.accounts[key]
	if !ok {
		return &tlb.Account{IsActive: false}, nil
	}
	got := *acc
	if txs := f.txs[key]; len(txs) > 0 {
		got.LastTxLT, got.LastTxHash = txs[len(txs)-1].LT, txs[len(txs)-1].Hash
	}
	return &got, nil
}

func (f *fakeAPI) RunGetMethod(ctx context.Context, block *ton.BlockIDExt, addr *address.Address, method string, params ...any) (*ton.ExecutionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requestLocked(ctx, block); err != nil {
		return nil, err
	}
	acc, ok := f.accounts[addr.String()]
	if !ok || acc.State.Status != tlb.AccountStatusActive {
		return nil, ton.ContractExecError{Code: ton.ErrCodeContractNotInitialized}
	}
	run, ok := f.methods[method]
	if !ok {
		return nil, ton.ContractExecError{Code: 11}
	}
	res, err := run(params)
	if err != nil {
		return nil, err
	}
	return ton.NewExecutionResult(res), nil
}

func (f *fakeAPI) SendExternalMessage(ctx context.Context, msg *tlb.ExternalMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sendErr != nil {
		return f.sendErr
	}
	f.sent = append(f.sent, msg)
	return nil
}

// ListTransactions returns up to num transactions up to the one with lt and
// txHash, oldest first, as a liteserver does.
func (f *fakeAPI) ListTransactions(ctx context.Context, addr *address.Address, num uint32, lt uint64, txHash []byte) ([]*tlb.Transaction, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requestLocked(ctx, nil); err != nil {
		return nil, err
	}
	txs := f.txs[addr.String()]
	i := slices.IndexFunc(txs, func(tx *tlb.Transaction) bool { return tx.LT == lt })
	switch {
	case i < 0:
		return nil, ton.ErrNoTransactionsWereFound
	case !bytes.Equal(txs[i].Hash, txHash):
		return nil, errors.New("fakeAPI: incorrect transaction hash")
	}
	from := max(0, i+1-int(num))
	return slices.Clone(txs[from : i+1]), nil
}

// setAccount makes addr exist with the given status, decoded from an account
// cell built as the chain stores it.
func (f *fakeAPI) setAccount(t *testing.T, addr *address.Address, status tlb.AccountStatus, balance int64, code, data *cell.Cell) {
	t.Helper()
	acc := accountState(t, addr, status, balance, code, data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accounts[addr.String()] = acc
}

// addTxs appends transactions to addr's history.
func (f *fakeAPI) addTxs(addr *address.Address, txs ...*tlb.Transaction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.txs[addr.String()] = append(f.txs[addr.String()], txs...)
}

// arrive queues a batch of transactions that joins addr's history at a later
// GetAccount, one batch per call; an empty batch is a look that finds nothing
// new.
func (f *fakeAPI) arrive(addr *address.Address, txs ...*tlb.Transaction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arrivals[addr.String()] = append(f.arrivals[addr.String()], txs)
}

func testAddr(name string) *address.Address {
	h := sha256.Sum256([]byte(name))
	return address.NewAddress(0, 0, h[:])
}

// accountState builds an account cell (account$1 addr storage_stat storage)
// and decodes it with tonutils-go, as GetAccount does.
func accountState(t *testing.T, addr *address.Address, status tlb.AccountStatus, balance int64, code, data *cell.Cell) *tlb.Account {
	t.Helper()
	const lastLT = 1000
	b := cell.BeginCell().
		MustStoreBoolBit(true).
		MustStoreAddr(addr).
		// storage_stat: cells, bits, public cells used; last paid; no due payment
		MustStoreVarUInt(3, 7).MustStoreVarUInt(900, 7).MustStoreVarUInt(0, 7).
		MustStoreUInt(1_700_000_000, 32).
		MustStoreBoolBit(false).
		// storage: last transaction lt, balance, no extra currencies
		MustStoreUInt(lastLT, 64).
		MustStoreBigCoins(big.NewInt(balance)).
		MustStoreDict(nil)
	switch status {
	case tlb.AccountStatusActive:
		init, err := tlb.ToCell(&tlb.StateInit{Code: code, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		b.MustStoreBoolBit(true).MustStoreBuilder(init.ToBuilder())
	case tlb.AccountStatusFrozen:
		b.MustStoreUInt(0b01, 2).MustStoreSlice(bytes.Repeat([]byte{7}, 32), 256)
	case tlb.AccountStatusUninit:
		b.MustStoreUInt(0b00, 2)
	default:
		t.Fatalf("accountState: status %s", status)
	}
	var st tlb.AccountState
	if err := st.LoadFromCell(b.EndCell().BeginParse()); err != nil {
		t.Fatal(err)
	}
	acc := &tlb.Account{
		IsActive:   true,
		State:      &st,
		LastTxLT:   lastLT,
		LastTxHash: bytes.Repeat([]byte{9}, 32),
	}
	if st.Status == tlb.AccountStatusActive {
		acc.Code, acc.Data = st.StateInit.Code, st.StateInit.Data
	}
	return acc
}

// txChain builds transactions of one account, each linked to the one before.
type txChain struct {
	t    *testing.T
	addr *address.Address
	lt   uint64
	hash []byte
}

func newTxChain(t *testing.T, addr *address.Address) *txChain {
	return &txChain{t: t, addr: addr, lt: 1000, hash: make([]byte, 32)}
}

// next builds the account's next transaction, with inbound message in (nil
// for none) and description desc, encodes it to a cell and decodes it, as
// ListTransactions does.
func (c *txChain) next(in *tlb.Message, desc any) *tlb.Transaction {
	c.t.Helper()
	tx := tlb.Transaction{
		AccountAddr: c.addr.Data(),
		LT:          c.lt + 10,
		PrevTxHash:  c.hash,
		PrevTxLT:    c.lt,
		Now:         1_700_000_000,
		OrigStatus:  tlb.AccountStatusActive,
		EndStatus:   tlb.AccountStatusActive,
		TotalFees:   tlb.CurrencyCollection{Coins: tlb.MustFromTON("0.001")},
		StateUpdate: tlb.HashUpdate{OldHash: make([]byte, 32), NewHash: make([]byte, 32)},
		Description: desc,
	}
	tx.IO.In = in
	root, err := tlb.ToCell(&tx)
	if err != nil {
		c.t.Fatalf("encoding transaction: %v", err)
	}
	var got tlb.Transaction
	if err := tlb.LoadFromCell(&got, root.BeginParse()); err != nil {
		c.t.Fatalf("decoding transaction: %v", err)
	}
	got.Hash = root.Hash()
	c.lt, c.hash = got.LT, got.Hash
	return &got
}

// ordinary is an ordinary transaction's description: compute is a
// ComputePhaseVM or ComputePhaseSkipped; action is nil for no action phase.
func ordinary(compute any, action *tlb.ActionPhase, aborted bool) tlb.TransactionDescriptionOrdinary {
	return tlb.TransactionDescriptionOrdinary{
		ComputePhase: tlb.ComputePhase{Phase: compute},
		ActionPhase:  action,
		Aborted:      aborted,
	}
}

func computeVM(success bool, exitCode int32) tlb.ComputePhaseVM {
	vm := tlb.ComputePhaseVM{Success: success, GasFees: tlb.MustFromTON("0.0001")}
	vm.Details.GasUsed = big.NewInt(1000)
	vm.Details.GasLimit = big.NewInt(10000)
	vm.Details.ExitCode = exitCode
	vm.Details.VMSteps = 50
	vm.Details.VMInitStateHash = make([]byte, 32)
	vm.Details.VMFinalStateHash = make([]byte, 32)
	return vm
}

func computeSkipped() tlb.ComputePhaseSkipped {
	return tlb.ComputePhaseSkipped{Reason: tlb.ComputeSkipReason{Type: tlb.ComputeSkipReasonNoState}}
}

func action(success bool) *tlb.ActionPhase {
	return &tlb.ActionPhase{
		Success:        success,
		Valid:          true,
		StatusChange:   tlb.AccStatusChange{Type: tlb.AccStatusChangeUnchanged},
		ActionListHash: make([]byte, 32),
		TotalMsgSize:   tlb.StorageUsedShort{Cells: big.NewInt(0), Bits: big.NewInt(0)},
	}
}

func succeeded() tlb.TransactionDescriptionOrdinary {
	return ordinary(computeVM(true, 0), action(true), false)
}

// external is an external-in message to addr whose body carries n.
func external(addr *address.Address, n uint64) *tlb.Message {
	return &tlb.Message{MsgType: tlb.MsgTypeExternalIn, Msg: &tlb.ExternalMessage{
		DstAddr: addr,
		Body:    cell.BeginCell().MustStoreUInt(n, 64).EndCell(),
	}}
}

// internal is an internal message from a wallet to addr.
func internal(addr *address.Address, n uint64) *tlb.Message {
	return &tlb.Message{MsgType: tlb.MsgTypeInternal, Msg: &tlb.InternalMessage{
		Bounce:  true,
		SrcAddr: testAddr("wallet"),
		DstAddr: addr,
		Amount:  tlb.MustFromTON("1"),
		Body:    cell.BeginCell().MustStoreUInt(n, 64).EndCell(),
	}}
}

// messageCell encodes m as a whole Message cell.
func messageCell(t *testing.T, m *tlb.Message) *cell.Cell {
	t.Helper()
	c, err := tlb.ToCell(m.Msg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
