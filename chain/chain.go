// Package chain is the node's view of TON: read an account, run a get-method,
// send an external message and wait for the transaction it causes.
//
// Implementations live in subpackages: chain/liteclient talks to a real TON
// network through tonutils-go; chain/sandbox runs a local TVM emulator
// (@ton/sandbox) as a loopback sidecar for `cocoon testnet` and the tests.
// Discovery reads the root contract through it; payments open and settle
// channels through it.
package chain

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// Chain reads and writes TON. Implementations are safe for concurrent use.
type Chain interface {
	// Account returns the account's current state. An account that has never
	// been touched has Status StatusNonexist and no error.
	Account(ctx context.Context, addr *address.Address) (*Account, error)

	// RunGetMethod runs a get-method against the account's latest state and
	// returns its result stack, first value first. Stack values are *big.Int,
	// *cell.Cell, *cell.Slice, []any (a tuple) or nil (TVM null), as in
	// tonutils-go. A non-zero TVM exit code is returned as *ExitError.
	RunGetMethod(ctx context.Context, addr *address.Address, method string, args ...any) ([]any, error)

	// SendExternal sends an external-in message (a whole Message cell) and
	// returns its hash, which WaitTransaction takes.
	SendExternal(ctx context.Context, msg *cell.Cell) ([]byte, error)

	// WaitTransaction waits until addr has a transaction whose inbound message
	// has the given hash, and returns it. It returns ctx's error when ctx ends
	// first.
	WaitTransaction(ctx context.Context, addr *address.Address, msgHash []byte) (*Transaction, error)
}

// Status is an account's lifecycle state.
type Status string

// Account statuses.
const (
	StatusNonexist Status = "nonexist"
	StatusUninit   Status = "uninit"
	StatusActive   Status = "active"
	StatusFrozen   Status = "frozen"
)

// Account is an account's state at some point.
type Account struct {
	Status  Status
	Balance *big.Int   // nanoTON
	Code    *cell.Cell // nil unless active
	Data    *cell.Cell // nil unless active
	// LastTxLT and LastTxHash identify the account's latest transaction.
	LastTxLT   uint64
	LastTxHash []byte
}

// Transaction is the part of a transaction the node cares about.
type Transaction struct {
	LT            uint64
	Hash          []byte
	InMessageHash []byte
	// Success is true when both the compute and action phases succeeded.
	Success bool
	// ExitCode is the compute phase's exit code, or -1 when it was skipped.
	ExitCode int
	Aborted  bool
}

// ExitError is a get-method that ended with a non-zero TVM exit code. Running
// it again against the same state gives the same result.
type ExitError struct {
	Method string
	Code   int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("get-method %s: exit code %d", e.Method, e.Code)
}

// ErrNotFound means the account does not exist or has no code, so it cannot
// run get-methods. Retrying helps only once it has been deployed.
var ErrNotFound = errors.New("account not active")
