package channels

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/big"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// FuzzHandle drives a payee's handler of the payment protocol with
// arbitrary messages from a payer that has a channel open to it: whatever
// arrives, the handler never panics, and the ledger only ever holds a
// state the payer really signed, within its deposit, and never less than
// before.
func FuzzHandle(f *testing.F) {
	ch, pubA, keyA, keyB := testChannel(f, 1)
	const deposit = 1_000_000
	led, err := ledger.Open(filepath.Join(f.TempDir(), "ledger.db"), ledger.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { led.Close() })
	payer := peer.ID("payer")
	m := New(Config{Network: "test"}, nil, nil, nil, keyB, led, slog.New(slog.DiscardHandler))
	in := &incoming{channel: channel{info: info{Peer: string(payer), Deposit: deposit, KeyA: pubA}, id: idOf(ch), ch: ch, peer: payer}}
	m.in[payer] = in
	m.inAddr[ch.Address().String()] = in

	pay := func(seqno, sent uint64) []byte {
		st, err := ch.SignState(keyA, ton.State{Seqno: seqno, Sent: new(big.Int).SetUint64(sent)})
		if err != nil {
			f.Fatal(err)
		}
		enc, _ := st.Encode()
		b, _ := json.Marshal(request{Type: typePay, Channel: ch.Address().String(), State: enc})
		return b
	}
	f.Add(pay(1, 100))
	f.Add(pay(2, 50))
	f.Add(pay(3, deposit+1))
	sync, _ := json.Marshal(request{Type: typeSync, Channel: ch.Address().String()})
	f.Add(sync)
	f.Add([]byte(`{"type":"hello"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := decodeRequest(b)
		if err != nil || q.Type == typeClose { // a close ends the channel's use: covered by the tests
			return
		}
		before, _ := led.Get(in.id)
		m.handle(context.Background(), payer, q)
		after, err := led.Get(in.id)
		if err != nil {
			return // nothing stored yet
		}
		st, err := ton.DecodeSignedState(after.Signed)
		if err != nil {
			t.Fatalf("stored state does not decode: %v", err)
		}
		if !ch.VerifyState(pubA, st) {
			t.Fatal("stored a state the payer did not sign")
		}
		if !st.Sent.IsUint64() || st.Sent.Uint64() != after.Received || after.Received > deposit {
			t.Fatalf("stored %d received for a state paying %s (deposit %d)", after.Received, st.Sent, deposit)
		}
		if after.Received < before.Received || after.Seqno < before.Seqno {
			t.Fatalf("stored state went back from %+v to %+v", before, after)
		}
	})
}
