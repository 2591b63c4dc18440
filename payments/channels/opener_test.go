package channels_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments/channels"
	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// payees is a fixed list of payees.
type payees []peer.ID

func (p payees) Payees() []peer.ID { return p }

// failures records the Opener's "opening a payment channel failed" logs:
// when each was, and the retry_in it gave.
type failures struct {
	mu   sync.Mutex
	at   []time.Time
	wait []time.Duration
}

func (f *failures) Enabled(context.Context, slog.Level) bool { return true }
func (f *failures) WithAttrs([]slog.Attr) slog.Handler       { return f }
func (f *failures) WithGroup(string) slog.Handler            { return f }

func (f *failures) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "opening a payment channel failed" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at = append(f.at, r.Time)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry_in" {
			f.wait = append(f.wait, a.Value.Duration())
		}
		return true
	})
	return nil
}

// TestOpenerBackoff: an open that fails is tried again 5 s later, then
// after twice as long each time, up to a minute; the refusal gives the
// failure.
func TestOpenerBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &failures{}
		log := slog.New(f)
		// No wallet: every open fails at once, without the network.
		m := channels.New(channels.DefaultConfig("test"), nil, nil, nil, nil, nil, log)
		_, payee := p2ptest.NewKey(t)
		o := channels.NewOpener(m, payees{payee}, log)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(done)
			o.Run(ctx)
		}()
		time.Sleep(4 * time.Minute)
		synctest.Wait()
		cancel()
		<-done

		wantAt := []time.Duration{0, 5 * time.Second, 15 * time.Second, 35 * time.Second, 75 * time.Second,
			135 * time.Second, 195 * time.Second}
		wantWait := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second,
			time.Minute, time.Minute, time.Minute}
		var at []time.Duration
		for _, a := range f.at {
			at = append(at, a.Sub(start))
		}
		if fmt.Sprint(at) != fmt.Sprint(wantAt) || fmt.Sprint(f.wait) != fmt.Sprint(wantWait) {
			t.Errorf("opens failed at %v, waiting %v after each; want at %v, waiting %v", at, f.wait, wantAt, wantWait)
		}
		const want = "no funded payment channel to a proxy: opening a channel: no wallet"
		if err := o.Refusal(); err == nil || err.Error() != want {
			t.Errorf("Refusal() = %v, want %q", err, want)
		}
	})
}

// emptyChain is a chain where every account is empty: no wallet on it can
// fund a channel. It does nothing else.
type emptyChain struct{}

func (emptyChain) Account(context.Context, *address.Address) (*chain.Account, error) {
	return &chain.Account{Status: chain.StatusNonexist, Balance: new(big.Int)}, nil
}

func (emptyChain) RunGetMethod(context.Context, *address.Address, string, ...any) ([]any, error) {
	return nil, errors.New("empty chain: no get-methods")
}

func (emptyChain) SendExternal(context.Context, *cell.Cell) ([]byte, error) {
	return nil, errors.New("empty chain: no messages")
}

func (emptyChain) WaitTransaction(context.Context, *address.Address, []byte) (*chain.Transaction, error) {
	return nil, errors.New("empty chain: no transactions")
}

// walletManager is a manager, on a fresh host, of a fresh wallet on an
// empty chain; with serve, it serves the payment protocol until cleanup.
func walletManager(t *testing.T, serve bool) (*channels.Manager, *ton.Wallet, host.Host) {
	t.Helper()
	dir := t.TempDir()
	key, err := ton.LoadKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ton.NewWallet(key, emptyChain{}, ton.WalletConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := p2ptest.NewHost(t)
	log := logtest.NewAt(t, slog.LevelInfo).With("self", h.ID())
	if !serve {
		return channels.New(config(false), h, emptyChain{}, w, key, nil, log), w, h
	}
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := channels.New(config(false), h, emptyChain{}, w, key, led, log)
	if err := m.Start(p2p.NewService(h, log)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		if err := led.Close(); err != nil {
			t.Error(err)
		}
	})
	return m, w, h
}

// TestOpenerRefusal: a client with no payee is not refused; with payees
// and no channel, it is told none is open yet and which wallet pays; once
// opens failed, it is told why, an empty wallet before any other reason.
func TestOpenerRefusal(t *testing.T) {
	payer, w, ph := walletManager(t, false)
	_, _, eh := walletManager(t, true)
	p2ptest.Connect(t, ph, eh)
	payee := eh.ID()
	_, gone := p2ptest.NewKey(t) // unreachable: its open fails otherwise
	log := logtest.NewAt(t, slog.LevelInfo)

	if err := channels.NewOpener(payer, payees{}, log).Refusal(); err != nil {
		t.Errorf("refused with no payee at all: %v", err)
	}
	o := channels.NewOpener(payer, payees{gone, payee}, log)
	want := fmt.Sprintf("no payment channel to a proxy is open yet (the node opens one as soon as a proxy is attested; wallet %s)", w.Address())
	if err := o.Refusal(); err == nil || err.Error() != want {
		t.Errorf("Refusal() before any open = %v, want %q", err, want)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	// gone is tried first in each round: once payee's open has failed,
	// both failures are known.
	p2ptest.Eventually(t, "the open to the payee failing", func() bool {
		return errors.Is(o.Refusal(), ton.ErrInsufficientFunds)
	})
	for range 50 {
		err := o.Refusal()
		if !errors.Is(err, ton.ErrInsufficientFunds) || !strings.HasPrefix(err.Error(), "no funded payment channel to a proxy: opening a channel to "+payee.String()+": ") {
			t.Fatalf("Refusal() = %v, want the payee's insufficient funds", err)
		}
	}
}
