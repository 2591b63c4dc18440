package ton

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/chain"
)

func TestSeedFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	words, err := LoadOrCreateSeed(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(words) != 24 {
		t.Fatalf("%d words, want 24", len(words))
	}
	path := filepath.Join(dir, SeedFile)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("seed file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	again, err := LoadOrCreateSeed(dir)
	if err != nil || !slices.Equal(words, again) {
		t.Fatalf("second load: %v, %v", again, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSeed(dir); err == nil {
		t.Fatal("a seed readable by others was accepted")
	}
	if err := os.WriteFile(path, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSeed(dir); err == nil {
		t.Fatal("a malformed seed was accepted")
	}
}

func TestWallet(t *testing.T) {
	e := startSandbox(t)
	ctx := ctxFor(t)
	dir := t.TempDir()
	w, err := OpenWallet(dir, e.sb, WalletConfig{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	same, err := OpenWallet(dir, e.sb, WalletConfig{Now: e.clock.Now})
	if err != nil || !same.Address().Equals(w.Address()) {
		t.Fatalf("reopened wallet at %v, %v", same.Address(), err)
	}
	if bal, err := w.Balance(ctx); err != nil || bal.Sign() != 0 {
		t.Fatalf("new wallet balance %v, %v", bal, err)
	}

	// Funded by another wallet while not deployed; its first send deploys
	// it with its state init.
	funder := e.wallet(10e9)
	if _, err := funder.Send(ctx, Message{To: w.Address(), Value: big.NewInt(2e9)}); err != nil {
		t.Fatal(err)
	}
	if acc, err := e.sb.Account(ctx, w.Address()); err != nil || acc.Status != chain.StatusUninit || acc.Balance.Int64() != 2e9 {
		t.Fatalf("funded wallet: %+v, %v", acc, err)
	}
	to := e.newWallet()
	for i := range 2 { // deploys, then uses the next seqno
		if _, err := w.Send(ctx, Message{To: to.Address(), Value: big.NewInt(1e8)}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if acc, err := e.sb.Account(ctx, w.Address()); err != nil || acc.Status != chain.StatusActive {
		t.Fatalf("after sending: %+v, %v", acc, err)
	}
	if got := e.balance(to.Address()); got.Int64() != 2e8 {
		t.Fatalf("recipient has %s, want 200000000", got)
	}
	bal, err := w.Balance(ctx)
	if err != nil || bal.Int64() >= 18e8 || bal.Int64() < 17e8 {
		t.Fatalf("sender balance %v, %v: want 1.8 TON less fees", bal, err)
	}

	// More than the wallet holds is refused before anything is signed.
	if _, err := w.Send(ctx, Message{To: to.Address(), Value: big.NewInt(2e9)}); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("sending more than the balance: %v, want ErrInsufficientFunds", err)
	}

	// A message that expired by the chain's clock is refused.
	stale, err := NewWallet(w.key, e.sb, WalletConfig{Now: func() time.Time { return e.clock.Now().Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stale.Send(ctx, Message{To: to.Address(), Value: big.NewInt(1)}); err == nil {
		t.Fatal("an expired message was accepted")
	}
}
