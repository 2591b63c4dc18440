package channels

import (
	"log/slog"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

// FuzzSplit feeds a proxy's check of a client's payment entries arbitrary
// entries, bases and amounts: it never panics, and what it accepts pays
// exactly the new amount, of which the workers are owed no more.
func FuzzSplit(f *testing.F) {
	_, proxy := p2ptest.NewKey(f)
	wkey, worker := p2ptest.NewKey(f)
	m := New(Config{Network: "test", Forward: true, FeePPM: 20_000}, nil, nil, nil, nil, nil, slog.New(slog.DiscardHandler))
	m.self = proxy
	r := &payments.Receipt{RequestID: "r1", Model: "m", Tokens: payments.Tokens{Prompt: 10, Completion: 100},
		Price: payments.Price{Prompt: 100_000_000, Completion: 400_000_000}, Worker: worker, Proxy: proxy, Time: time.Now().UnixMilli()}
	signed, err := payments.Sign(r, wkey)
	if err != nil {
		f.Fatal(err)
	}
	bill, err := payments.Cost(r.Tokens, r.Price, 20_000)
	if err != nil {
		f.Fatal(err)
	}
	amount := uint64(bill.Total)
	f.Add(signed, amount, uint64(0), uint64(0), amount, uint64(1))
	f.Add(signed, amount, uint64(5), uint64(5), 5+amount, uint64(2))
	f.Add([]byte{0, 1, 2}, uint64(7), uint64(0), uint64(0), uint64(7), uint64(1))
	f.Fuzz(func(t *testing.T, receipt []byte, amt, base, received, sent, copies uint64) {
		if sent < received {
			return // paid refuses these before splitting
		}
		q := &request{Type: typePay, Base: base}
		for range copies % 4 {
			q.Entries = append(q.Entries, Entry{Receipt: receipt, Amount: amt})
		}
		owed, err := m.split(q, received, sent)
		if err != nil {
			return
		}
		var total uint64
		for _, v := range owed {
			total += v
		}
		if total > sent-received {
			t.Fatalf("workers owed %d of a payment of %d", total, sent-received)
		}
		var skipped, paid uint64
		for _, e := range q.Entries {
			if base+skipped < received {
				skipped += e.Amount
				continue
			}
			paid += e.Amount
		}
		if base+skipped != received {
			t.Fatalf("accepted entries from %d skipping %d to meet %d", base, skipped, received)
		}
		if paid != sent-received {
			t.Fatalf("accepted entries paying %d for a payment of %d", paid, sent-received)
		}
	})
}
