package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// moneyOp is what one step of paying for an answer costs on the node
// that does it.
type moneyOp struct {
	Hop  string  `json:"hop"`
	Op   string  `json:"op"`
	Per  string  `json:"per"` // how often it runs: every answer, or every signed state
	Usec float64 `json:"usec"`
}

// measureMoney times each step of paying for an answer, one core, with
// a timed loop: the receipt a worker signs and the proxy (and, on a
// sample, the client) verifies; the channel state a payer signs and its
// payee verifies; the ledger write with fsync on each side. In the mesh a
// state pays for every answer of a batch (payments.batch), so its cost is
// shared by the answers of that batch.
func measureMoney() ([]moneyOp, error) {
	wkey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	worker, err := peer.IDFromPrivateKey(wkey)
	if err != nil {
		return nil, err
	}
	r := &payments.Receipt{RequestID: "chatcmpl-bench", RequestHash: payments.Hash([]byte("request")), ResponseHash: payments.Hash([]byte("answer")),
		Model: "sim-small", Tokens: payments.Tokens{Prompt: 120, Completion: 300}, Price: payments.Price{Prompt: 1e8, Completion: 4e8},
		Worker: worker, Proxy: worker, Time: 1_780_000_000_000}
	signed, err := payments.Sign(r, wkey)
	if err != nil {
		return nil, err
	}
	pubA, keyA, _ := ed25519.GenerateKey(nil)
	pubB, _, _ := ed25519.GenerateKey(nil)
	addr := func(n byte) *address.Address { h := make([]byte, 32); h[31] = n; return address.NewAddress(0, 0, h) }
	ch, err := ton.NewChannel(ton.ChannelConfig{ID: [16]byte{1}, KeyA: pubA, KeyB: pubB, DestA: addr(1), DestB: addr(2), Quarantine: time.Hour}, nil)
	if err != nil {
		return nil, err
	}
	state, err := ch.SignState(keyA, ton.State{Seqno: 7, Sent: big.NewInt(123_456_789)})
	if err != nil {
		return nil, err
	}
	enc, err := state.Encode()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cocoon-bench-ledger-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), ledger.Options{})
	if err != nil {
		return nil, err
	}
	defer led.Close()

	var failed error
	// usec runs f for about moneyTime and returns its mean time.
	usec := func(f func() error) float64 {
		if failed != nil {
			return 0
		}
		n, start := 0, time.Now()
		for time.Since(start) < moneyTime || n < 10 {
			if err := f(); err != nil {
				failed = err
				return 0
			}
			n++
		}
		return float64(time.Since(start).Nanoseconds()) / float64(n) / 1e3
	}
	sign := usec(func() error { _, err := payments.Sign(r, wkey); return err })
	verify := usec(func() error {
		got, err := payments.Verify(signed, worker)
		if err == nil {
			err = payments.Check(got, r)
		}
		return err
	})
	var seqno uint64
	stateSign := usec(func() error {
		seqno++
		s, err := ch.SignState(keyA, ton.State{Seqno: seqno, Sent: big.NewInt(int64(seqno))})
		if err == nil {
			_, err = s.Encode()
		}
		return err
	})
	stateVerify := usec(func() error {
		s, err := ton.DecodeSignedState(enc)
		if err == nil && !ch.VerifyState(pubA, s) {
			err = fmt.Errorf("state does not verify")
		}
		return err
	})
	var id ledger.ID
	put := usec(func() error {
		seqno++
		return led.Put(context.Background(), id, ledger.State{Seqno: seqno, Sent: seqno, Signed: enc})
	})
	if failed != nil {
		return nil, failed
	}
	return []moneyOp{
		{"worker", "sign the receipt", "answer", sign},
		{"proxy", "verify and check the receipt", "answer", verify},
		{"client", "verify and check the receipt (the first, those over 0.001 TON, 1 in 16 others)", "answer, sampled", verify},
		{"client, proxy", "sign and encode a channel state (payer)", "state", stateSign},
		{"proxy, worker", "decode and verify a channel state (payee)", "state", stateVerify},
		{"each of the three", "store a state in the ledger, fsync (one writer; concurrent ones share syncs)", "state", put},
	}, nil
}

// moneyTime is how long measureMoney runs each step.
const moneyTime = 500 * time.Millisecond

// writeMoney prints ops as a table.
func writeMoney(w io.Writer, ops []moneyOp) error {
	fmt.Fprintln(w, "\nmoney, per step on the node that does it (one core; a state pays for every answer of a payments.batch):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  hop\tstep\tper\tµs")
	for _, o := range ops {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%.1f\n", o.Hop, o.Op, o.Per, o.Usec)
	}
	return tw.Flush()
}
