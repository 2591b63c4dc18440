package ton

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"math/big"
	"os/exec"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/chain/sandbox"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a sandbox chain with its clock pinned, so that wallets sign with
// the emulator's time.
type env struct {
	t     *testing.T
	sb    *sandbox.Sandbox
	clock *clocktest.Clock // the emulator's time
}

func startSandbox(t *testing.T) *env {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the sandbox chain runs @ton/sandbox in Node.js")
	}
	log := logtest.NewAt(t, slog.LevelWarn)
	sb := sandbox.New(sandbox.Config{}, log)
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
	e := &env{t: t, sb: sb, clock: clocktest.New(time.Unix(1_900_000_000, 0))}
	if err := sb.SetTime(ctx, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) advance(d time.Duration) {
	e.t.Helper()
	now, err := e.sb.AdvanceTime(ctxFor(e.t), d)
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Set(now)
}

// wallet returns a new wallet with a fresh key, deployed and funded with
// value from the sandbox's deployer.
func (e *env) wallet(value int64) *Wallet {
	e.t.Helper()
	w := e.newWallet()
	if _, err := e.sb.Deploy(ctxFor(e.t), w.init.Code, w.init.Data, big.NewInt(value)); err != nil {
		e.t.Fatal(err)
	}
	return w
}

// newWallet returns a wallet with a fresh key that is not on chain.
func (e *env) newWallet() *Wallet {
	e.t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	w, err := NewWallet(key, e.sb, WalletConfig{Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

func (e *env) balance(a *address.Address) *big.Int {
	e.t.Helper()
	acc, err := e.sb.Account(ctxFor(e.t), a)
	if err != nil {
		e.t.Fatal(err)
	}
	return acc.Balance
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func testAddr(n byte) *address.Address {
	h := make([]byte, 32)
	h[31] = n
	return address.NewAddress(0, 0, h)
}

func mustSign(tb testing.TB, ch *Channel, key ed25519.PrivateKey, s State) SignedState {
	tb.Helper()
	signed, err := ch.SignState(key, s)
	if err != nil {
		tb.Fatal(err)
	}
	return signed
}

func mustSignClose(tb testing.TB, ch *Channel, key ed25519.PrivateKey, c Close) []byte {
	tb.Helper()
	sig, err := ch.SignClose(key, c)
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

func mustCell(tb testing.TB) func(*cell.Cell, error) *cell.Cell {
	return func(c *cell.Cell, err error) *cell.Cell {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
}
