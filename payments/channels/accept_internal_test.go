package channels

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// testChannel is a channel from A to B, quarantined for an hour, and its
// keys; it is not deployed anywhere.
func testChannel(tb testing.TB, id byte) (ch *ton.Channel, pubA ed25519.PublicKey, keyA, keyB ed25519.PrivateKey) {
	tb.Helper()
	pubA, keyA, _ = ed25519.GenerateKey(nil)
	_, keyB, _ = ed25519.GenerateKey(nil)
	dest := address.NewAddress(0, 0, make([]byte, 32))
	ch, err := ton.NewChannel(ton.ChannelConfig{ID: [16]byte{id}, KeyA: pubA, KeyB: keyB.Public().(ed25519.PublicKey),
		DestA: dest, DestB: dest, Quarantine: time.Hour}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return ch, pubA, keyA, keyB
}

// TestAcceptBounds: a payee refuses, before it reads the chain, a channel
// whose quarantine is too short for its watcher to challenge a close with
// an old state (a 1 s one), or too long, and a new channel from a payer
// that owes on the one it has; it goes on to its other checks for a
// channel within its bounds from a payer that owes nothing.
func TestAcceptBounds(t *testing.T) {
	ch, pubA, _, keyB := testChannel(t, 1)
	dest := address.NewAddress(0, 0, make([]byte, 32))
	led, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	m := New(Config{Network: "test", Watch: 5 * time.Minute}, nil, nil, nil, keyB, led, slog.New(slog.DiscardHandler))
	if m.cfg.MinQuarantine != 20*time.Minute {
		t.Fatalf("minimum quarantine %v with a 5 min watch, want 4 passes: 20m", m.cfg.MinQuarantine)
	}
	payer := peer.ID("payer")
	open := func(quarantine time.Duration) *reply {
		return m.handle(context.Background(), payer, &request{Type: typeOpen, Channel: "EQnew", ID: []byte("new"), KeyA: pubA,
			DestA: dest.String(), Deposit: 1_000_000, Quarantine: uint32(quarantine / time.Second)})
	}
	for _, tt := range []struct {
		quarantine time.Duration
		want       string
	}{
		{time.Second, "outside the 20m0s to 720h0m0s"},
		{19 * time.Minute, "outside"},
		{31 * 24 * time.Hour, "outside"},
		{time.Hour, "no wallet"}, // within bounds: on to the next check
	} {
		if r := open(tt.quarantine); r == nil || r.Code != codeRefused || !strings.Contains(r.Message, tt.want) {
			t.Errorf("a channel with a %v quarantine: %+v, want refused with %q", tt.quarantine, r, tt.want)
		}
	}

	in := &incoming{channel: channel{info: info{Peer: string(payer), Deposit: 1_000_000, KeyA: pubA}, id: idOf(ch), ch: ch, peer: payer},
		received: 100, served: 600}
	m.in[payer] = in
	m.inAddr[ch.Address().String()] = in
	if r := open(time.Hour); r == nil || !strings.Contains(r.Message, "500 nanoTON served on channel") {
		t.Errorf("a new channel from a payer owing 500 nanoTON: %+v, want refused until paid", r)
	}
	in.received = 600
	if r := open(time.Hour); r == nil || !strings.Contains(r.Message, "no wallet") {
		t.Errorf("a new channel from a payer that paid up: %+v, want on to the next check", r)
	}
}

// TestReserve: answers in flight set their worst case aside, and a payer
// can have no more in flight than its deposit covers, less what it was
// served; what is released is free again.
func TestReserve(t *testing.T) {
	ch, _, _, keyB := testChannel(t, 2)
	m := New(Config{Network: "test"}, nil, nil, nil, keyB, nil, slog.New(slog.DiscardHandler))
	payer := peer.ID("payer")
	in := &incoming{channel: channel{info: info{Peer: string(payer), Deposit: 1000}, id: idOf(ch), ch: ch, peer: payer}, received: 100, served: 300}
	m.in[payer] = in
	var releases []func()
	for range 3 {
		release, err := m.Reserve(payer, 200)
		if err != nil {
			t.Fatalf("reserving 200 of 700 unspent: %v", err)
		}
		releases = append(releases, release)
	}
	if _, err := m.Reserve(payer, 200); !errors.Is(err, ErrDeposit) {
		t.Fatalf("a fourth 200 with 100 unspent: %v, want ErrDeposit", err)
	}
	releases[0]()
	releases[0]() // twice is once
	if _, err := m.Reserve(payer, 300); err != nil {
		t.Fatalf("300 with 300 unspent after a release: %v", err)
	}
	if _, err := m.Reserve(payer, 1); !errors.Is(err, ErrDeposit) {
		t.Fatalf("1 more with the deposit covered: %v, want ErrDeposit", err)
	}
	if _, err := m.Reserve("stranger", 1); !errors.Is(err, ErrNoChannel) {
		t.Fatalf("a peer without a channel: %v", err)
	}
}

// minDeposit is a fake of the root contract's rules.
type minDeposit uint64

func (d minDeposit) MinDeposit() uint64 { return uint64(d) }

// TestMinDeposit: a payee refuses a channel whose deposit is under the
// root contract's min_deposit.
func TestMinDeposit(t *testing.T) {
	_, keyB, _ := ed25519.GenerateKey(nil)
	pubA, _, _ := ed25519.GenerateKey(nil)
	m := New(Config{Network: "test", Rules: minDeposit(5000)}, nil, nil, nil, keyB, nil, slog.New(slog.DiscardHandler))
	dest := address.NewAddress(0, 0, make([]byte, 32)).String()
	for _, tt := range []struct {
		deposit uint64
		want    string
	}{{4999, "under the network's minimum of 5000"}, {5000, "no wallet"}} {
		r := m.handle(context.Background(), "payer", &request{Type: typeOpen, Channel: "EQx", ID: []byte("x"), KeyA: pubA,
			DestA: dest, Deposit: tt.deposit, Quarantine: 3600})
		if r == nil || !strings.Contains(r.Message, tt.want) {
			t.Errorf("a deposit of %d: %+v, want %q", tt.deposit, r, tt.want)
		}
	}
}

// TestDebtCarried: what a payer owes on its channel moves to the new one
// it opens, where Admit and Reserve count it: a new channel forgets no
// debt.
func TestDebtCarried(t *testing.T) {
	old := &incoming{received: 100, served: 600}
	cur := &incoming{channel: channel{info: info{Deposit: 1_000}}}
	carryDebt(old, cur)
	if old.served != 100 || cur.served != 500 {
		t.Fatalf("after the move: old channel served %d (want 100), new %d (want 500)", old.served, cur.served)
	}
	m := &Manager{cfg: Config{MaxCredit: 400}, in: map[peer.ID]*incoming{"payer": cur}}
	if err := m.Admit("payer"); !errors.Is(err, ErrCredit) {
		t.Errorf("a payer owing 500 on its old channel, credit 400, admitted on its new one: %v", err)
	}
	if _, err := m.Reserve("payer", 600); !errors.Is(err, ErrDeposit) {
		t.Errorf("a payer owing 500 reserved 600 of a new 1,000 deposit: %v", err)
	}
}
