package liteclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTestClient returns a started client on api that looks at accounts every
// millisecond.
func newTestClient(t *testing.T, api tonAPI) *Client {
	t.Helper()
	c := newClient(slog.New(slog.DiscardHandler))
	c.api, c.poll = api, time.Millisecond
	t.Cleanup(c.Close)
	return c
}

func TestAccount(t *testing.T) {
	code := cell.BeginCell().MustStoreUInt(0xC0DE, 16).EndCell()
	data := cell.BeginCell().MustStoreUInt(0xDA7A, 16).EndCell()
	api := newFakeAPI()
	active, uninit, frozen := testAddr("active"), testAddr("uninit"), testAddr("frozen")
	api.setAccount(t, active, tlb.AccountStatusActive, 5_000_000_000, code, data)
	api.setAccount(t, uninit, tlb.AccountStatusUninit, 300, nil, nil)
	api.setAccount(t, frozen, tlb.AccountStatusFrozen, 0, nil, nil)
	c := newTestClient(t, api)

	tests := []struct {
		name     string
		addr     *address.Address
		status   chain.Status
		balance  int64
		code     *cell.Cell
		data     *cell.Cell
		lastTxLT uint64
	}{
		{name: "active", addr: active, status: chain.StatusActive, balance: 5_000_000_000, code: code, data: data, lastTxLT: 1000},
		{name: "uninit", addr: uninit, status: chain.StatusUninit, balance: 300, lastTxLT: 1000},
		{name: "frozen", addr: frozen, status: chain.StatusFrozen, lastTxLT: 1000},
		{name: "nonexistent", addr: testAddr("nobody"), status: chain.StatusNonexist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc, err := c.Account(t.Context(), tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			if acc.Status != tt.status || acc.Balance.Cmp(big.NewInt(tt.balance)) != 0 || acc.LastTxLT != tt.lastTxLT {
				t.Fatalf("account = %+v, want status %s, balance %d, last lt %d", acc, tt.status, tt.balance, tt.lastTxLT)
			}
			if !sameCell(acc.Code, tt.code) || !sameCell(acc.Data, tt.data) {
				t.Fatalf("code, data = %v, %v; want %v, %v", acc.Code, acc.Data, tt.code, tt.data)
			}
			if tt.lastTxLT != 0 && len(acc.LastTxHash) != 32 {
				t.Fatalf("last tx hash = %x", acc.LastTxHash)
			}
		})
	}
}

func sameCell(a, b *cell.Cell) bool {
	if a == nil || b == nil {
		return a == b
	}
	return bytes.Equal(a.Hash(), b.Hash())
}

// Each call binds its requests to one liteserver, and a new call may pick
// another.
func TestStickyPerCall(t *testing.T) {
	api := newFakeAPI()
	addr := testAddr("active")
	api.setAccount(t, addr, tlb.AccountStatusActive, 1, cell.BeginCell().EndCell(), cell.BeginCell().EndCell())
	api.methods["get"] = func([]any) ([]any, error) { return nil, nil }
	c := newTestClient(t, api)

	if _, err := c.Account(t.Context(), addr); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunGetMethod(t.Context(), addr, "get"); err != nil {
		t.Fatal(err)
	}
	n := api.nodes
	if len(n) != 4 || n[0] != n[1] || n[2] != n[3] || n[0] == n[2] {
		t.Fatalf("requests went to nodes %v, want two pairs", n)
	}
}

func TestRunGetMethod(t *testing.T) {
	api := newFakeAPI()
	active, uninit := testAddr("active"), testAddr("uninit")
	api.setAccount(t, active, tlb.AccountStatusActive, 1, cell.BeginCell().EndCell(), cell.BeginCell().EndCell())
	api.setAccount(t, uninit, tlb.AccountStatusUninit, 1, nil, nil)
	api.methods["echo"] = func(args []any) ([]any, error) { return args, nil }
	api.methods["broken"] = func([]any) ([]any, error) { return nil, errors.New("liteserver hiccup") }
	c := newTestClient(t, api)

	ref := cell.BeginCell().MustStoreUInt(7, 8).EndCell()
	args := []any{big.NewInt(-5), ref, []any{big.NewInt(1)}, nil}

	tests := []struct {
		name     string
		addr     *address.Address
		method   string
		want     []any
		wantExit int    // non-zero: a *chain.ExitError with this code
		wantErr  error  // errors.Is
		wantText string // in the error
	}{
		{name: "ok", addr: active, method: "echo", want: args},
		{name: "exit code", addr: active, method: "missing", wantExit: 11},
		{name: "uninit", addr: uninit, method: "echo", wantErr: chain.ErrNotFound},
		{name: "nonexistent", addr: testAddr("nobody"), method: "echo", wantErr: chain.ErrNotFound},
		{name: "other error", addr: active, method: "broken", wantText: "get-method broken on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.RunGetMethod(t.Context(), tt.addr, tt.method, args...)
			var exit *chain.ExitError
			switch {
			case tt.wantExit != 0:
				if !errors.As(err, &exit) || exit.Code != tt.wantExit || exit.Method != tt.method {
					t.Fatalf("error %v, want exit code %d", err, tt.wantExit)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.addr.String()) {
					t.Fatalf("error %v, want %v naming the account", err, tt.wantErr)
				}
			case tt.wantText != "":
				if err == nil || errors.As(err, &exit) || !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantText)
				}
			case err != nil:
				t.Fatal(err)
			case len(got) != len(tt.want) ||
				got[0].(*big.Int).Cmp(big.NewInt(-5)) != 0 ||
				!sameCell(got[1].(*cell.Cell), ref) ||
				got[2].([]any)[0].(*big.Int).Int64() != 1 ||
				got[3] != nil:
				t.Fatalf("stack = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSendExternal(t *testing.T) {
	addr := testAddr("contract")
	body := cell.BeginCell().MustStoreUInt(0xB0D1, 16).EndCell()
	canonical := messageCell(t, external(addr, 1))
	// The same body kept in a reference, where it would fit inline.
	inRef := cell.BeginCell().
		MustStoreUInt(0b10, 2).MustStoreAddr(nil).MustStoreAddr(addr).MustStoreCoins(0).
		MustStoreBoolBit(false). // no state init
		MustStoreBoolBit(true).MustStoreRef(body).
		EndCell()

	tests := []struct {
		name     string
		msg      *cell.Cell
		sendErr  error
		sameHash bool   // the hash returned is msg's own
		wantErr  string // "" for success
	}{
		{name: "canonical", msg: canonical, sameHash: true},
		{name: "body in a reference", msg: inRef},
		{name: "internal message", msg: messageCell(t, internal(addr, 1)), wantErr: "message of type INTERNAL"},
		{name: "not a message", msg: cell.BeginCell().MustStoreUInt(1, 1).EndCell(), wantErr: "decoding the message"},
		{name: "nil", wantErr: "nil message"},
		{name: "refused", msg: canonical, sendErr: errors.New("status: 0"), wantErr: "sending a message to " + addr.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI()
			api.sendErr = tt.sendErr
			c := newTestClient(t, api)
			hash, err := c.SendExternal(t.Context(), tt.msg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(api.sent) != 1 {
				t.Fatalf("%d messages sent, want 1", len(api.sent))
			}
			sent, err := tlb.ToCell(api.sent[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(hash, sent.Hash()) {
				t.Fatalf("hash %x, want the sent message's %x", hash, sent.Hash())
			}
			if got := bytes.Equal(hash, tt.msg.Hash()); got != tt.sameHash {
				t.Fatalf("hash is the cell's own: %v, want %v", got, tt.sameHash)
			}
		})
	}
}

// What SendExternal returns finds the transaction the message caused, whatever
// the layout of the message cell.
func TestSendThenWait(t *testing.T) {
	addr := testAddr("contract")
	body := cell.BeginCell().MustStoreUInt(0xB0D1, 16).EndCell()
	inRef := cell.BeginCell().
		MustStoreUInt(0b10, 2).MustStoreAddr(nil).MustStoreAddr(addr).MustStoreCoins(0).
		MustStoreBoolBit(false).
		MustStoreBoolBit(true).MustStoreRef(body).
		EndCell()

	api := newFakeAPI()
	api.setAccount(t, addr, tlb.AccountStatusActive, 1, cell.BeginCell().EndCell(), cell.BeginCell().EndCell())
	c := newTestClient(t, api)
	hash, err := c.SendExternal(t.Context(), inRef)
	if err != nil {
		t.Fatal(err)
	}
	txs := newTxChain(t, addr)
	api.arrive(addr, txs.next(internal(addr, 1), succeeded()))
	ours := txs.next(&tlb.Message{MsgType: tlb.MsgTypeExternalIn, Msg: api.sent[0]}, succeeded())
	api.arrive(addr, ours)

	tx, err := c.WaitTransaction(t.Context(), addr, hash)
	if err != nil {
		t.Fatal(err)
	}
	if tx.LT != ours.LT || !bytes.Equal(tx.InMessageHash, hash) {
		t.Fatalf("transaction %+v, want lt %d with in-message %x", tx, ours.LT, hash)
	}
}

func TestWaitTransaction(t *testing.T) {
	addr := testAddr("contract")
	ours := external(addr, 777)
	hash := messageCell(t, ours).Hash()

	tests := []struct {
		name string
		// build adds history and arrivals through txs, returning our lt.
		build       func(api *fakeAPI, txs *txChain) uint64
		wantSuccess bool
		wantExit    int
		wantAborted bool
	}{
		{
			name: "after a few others",
			build: func(api *fakeAPI, txs *txChain) uint64 {
				api.addTxs(addr, txs.next(internal(addr, 1), succeeded()), txs.next(nil, succeeded()))
				api.arrive(addr, txs.next(external(addr, 2), succeeded()))
				api.arrive(addr) // nothing new
				api.arrive(addr, txs.next(internal(addr, 3), succeeded()), txs.next(external(addr, 4), succeeded()))
				tx := txs.next(ours, succeeded())
				api.arrive(addr, tx, txs.next(internal(addr, 5), succeeded()))
				return tx.LT
			},
			wantSuccess: true,
		},
		{
			name: "landed before the call",
			build: func(api *fakeAPI, txs *txChain) uint64 {
				tx := txs.next(ours, succeeded())
				api.addTxs(addr, txs.next(internal(addr, 1), succeeded()), tx)
				for i := range 10 {
					api.addTxs(addr, txs.next(internal(addr, uint64(10+i)), succeeded()))
				}
				return tx.LT
			},
			wantSuccess: true,
		},
		{
			name: "deep in a burst",
			build: func(api *fakeAPI, txs *txChain) uint64 {
				api.addTxs(addr, txs.next(internal(addr, 1), succeeded()))
				api.arrive(addr) // the first look sees only the history
				tx := txs.next(ours, succeeded())
				burst := []*tlb.Transaction{tx}
				for i := range 3*pageSize + 3 {
					burst = append(burst, txs.next(internal(addr, uint64(10+i)), succeeded()))
				}
				api.arrive(addr, burst...)
				return tx.LT
			},
			wantSuccess: true,
		},
		{
			name: "after liteserver errors",
			build: func(api *fakeAPI, txs *txChain) uint64 {
				api.failures[addr.String()] = 3
				tx := txs.next(ours, succeeded())
				api.arrive(addr, tx)
				return tx.LT
			},
			wantSuccess: true,
		},
		{
			name: "compute phase failed",
			build: func(api *fakeAPI, txs *txChain) uint64 {
				api.arrive(addr, txs.next(internal(addr, 1), succeeded()))
				tx := txs.next(ours, ordinary(computeVM(false, 33), nil, true))
				api.arrive(addr, tx)
				return tx.LT
			},
			wantExit:    33,
			wantAborted: true,
		},
		{
			name: "compute phase skipped",
			build: func(api *fakeAPI, txs *txChain) uint64 {
				tx := txs.next(ours, ordinary(computeSkipped(), nil, true))
				api.arrive(addr, tx)
				return tx.LT
			},
			wantExit:    -1,
			wantAborted: true,
		},
		{
			name: "action phase failed",
			build: func(api *fakeAPI, txs *txChain) uint64 {
				tx := txs.next(ours, ordinary(computeVM(true, 0), action(false), true))
				api.arrive(addr, tx)
				return tx.LT
			},
			wantAborted: true,
		},
		{
			name: "exit code 1 counts as success",
			build: func(api *fakeAPI, txs *txChain) uint64 {
				tx := txs.next(ours, ordinary(computeVM(true, 1), action(true), false))
				api.arrive(addr, tx)
				return tx.LT
			},
			wantSuccess: true,
			wantExit:    1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI()
			api.setAccount(t, addr, tlb.AccountStatusActive, 1, cell.BeginCell().EndCell(), cell.BeginCell().EndCell())
			wantLT := tt.build(api, newTxChain(t, addr))
			c := newTestClient(t, api)

			tx, err := c.WaitTransaction(t.Context(), addr, hash)
			if err != nil {
				t.Fatal(err)
			}
			if tx.LT != wantLT || len(tx.Hash) != 32 || !bytes.Equal(tx.InMessageHash, hash) {
				t.Fatalf("transaction %+v, want lt %d with in-message %x", tx, wantLT, hash)
			}
			if tx.Success != tt.wantSuccess || tx.ExitCode != tt.wantExit || tx.Aborted != tt.wantAborted {
				t.Fatalf("success %v, exit code %d, aborted %v; want %v, %d, %v",
					tx.Success, tx.ExitCode, tx.Aborted, tt.wantSuccess, tt.wantExit, tt.wantAborted)
			}
		})
	}
}

func TestWaitTransactionCtx(t *testing.T) {
	addr := testAddr("contract")
	hash := messageCell(t, external(addr, 777)).Hash()

	tests := []struct {
		name     string
		failures int
		wantText string
	}{
		{name: "never comes"},
		{name: "liteserver keeps failing", failures: 1 << 30, wantText: "last error: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI()
			api.setAccount(t, addr, tlb.AccountStatusActive, 1, cell.BeginCell().EndCell(), cell.BeginCell().EndCell())
			api.failures[addr.String()] = tt.failures
			txs := newTxChain(t, addr)
			api.addTxs(addr, txs.next(internal(addr, 1), succeeded()))
			api.arrive(addr, txs.next(external(addr, 2), succeeded()))
			c := newTestClient(t, api)

			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			_, err := c.WaitTransaction(ctx, addr, hash)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("error %v, want context.DeadlineExceeded saying %q", err, tt.wantText)
			}
		})
	}
}

func TestNotStarted(t *testing.T) {
	c, err := New(Config{Network: Testnet, GlobalConfig: "/nonexistent"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := testAddr("contract")
	ctx := t.Context()
	calls := map[string]func() error{
		"Account":         func() error { _, err := c.Account(ctx, addr); return err },
		"RunGetMethod":    func() error { _, err := c.RunGetMethod(ctx, addr, "get"); return err },
		"SendExternal":    func() error { _, err := c.SendExternal(ctx, messageCell(t, external(addr, 1))); return err },
		"WaitTransaction": func() error { _, err := c.WaitTransaction(ctx, addr, make([]byte, 32)); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrNotStarted) {
			t.Errorf("%s: error %v, want ErrNotStarted", name, err)
		}
	}
}

func TestStart(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	unreachable := edit(t, func(m map[string]any) {
		m["liteservers"] = []any{map[string]any{
			"ip":   2130706433, // 127.0.0.1
			"port": port,
			"id":   map[string]any{"key": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))},
		}}
	})

	tests := []struct {
		name    string
		source  string
		wantErr string
	}{
		{name: "missing config", source: "/nonexistent/global.config.json", wantErr: "global config /nonexistent/global.config.json"},
		{name: "liteserver unreachable", source: writeFile(t, unreachable), wantErr: "connecting to the liteservers of "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{Network: Testnet, GlobalConfig: tt.source}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}

	t.Run("after Close", func(t *testing.T) {
		c, err := New(Config{Network: Testnet, GlobalConfig: writeFile(t, globalConfigJSON)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		c.Close()
		if err := c.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "after Close") {
			t.Fatalf("error %v, want Start after Close refused", err)
		}
	})
}

func TestWaitTransactionBadHash(t *testing.T) {
	c := newTestClient(t, newFakeAPI())
	_, err := c.WaitTransaction(t.Context(), testAddr("contract"), []byte{1, 2, 3})
	if err == nil || !strings.Contains(err.Error(), "3 bytes") {
		t.Fatalf("error %v, want a bad hash refused", err)
	}
}
