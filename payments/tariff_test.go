package payments_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments"
)

// offered is a fake offer book: one price per worker, for model "m".
type offered map[peer.ID]payments.Price

func (o offered) Price(p peer.ID, model string) (payments.Price, bool) {
	price, ok := o[p]
	return price, ok && model == "m"
}

func TestTariff(t *testing.T) {
	const w, unknown = peer.ID("worker"), peer.ID("stranger")
	offer := payments.Price{Prompt: 1_000_000, Cached: 100_000, Completion: 3_000_000}
	var logs bytes.Buffer
	tariff := payments.NewTariff(offered{w: offer}, 50_000, slog.New(slog.NewTextHandler(&logs, nil))) // a 5% fee
	dearer := payments.Price{Prompt: 2_000_000, Completion: 6_000_000}
	tests := []struct {
		name    string
		p       peer.ID
		model   string
		tokens  payments.Tokens
		receipt *payments.Price
		want    payments.Bill
		ok      bool
	}{
		{name: "the offer's price plus the fee", p: w, model: "m", tokens: payments.Tokens{Prompt: 10, Cached: 4, Completion: 5},
			want: payments.Bill{Worker: 22, Fee: 2, Total: 24}, ok: true}, // 6 + 0.4 + 15, rounded up
		{name: "cached tokens beyond the prompt count as prompt", p: w, model: "m", tokens: payments.Tokens{Prompt: 2, Cached: 9},
			want: payments.Bill{Worker: 1, Fee: 1, Total: 2}, ok: true},
		{name: "the receipt's price wins", p: w, model: "m", tokens: payments.Tokens{Prompt: 1, Completion: 1}, receipt: &dearer,
			want: payments.Bill{Worker: 8, Fee: 1, Total: 9}, ok: true},
		{name: "a receipt prices a worker with no offer", p: unknown, model: "m", tokens: payments.Tokens{Completion: 1}, receipt: &dearer,
			want: payments.Bill{Worker: 6, Fee: 1, Total: 7}, ok: true},
		{name: "no offer, no receipt", p: unknown, model: "m", tokens: payments.Tokens{Completion: 1}},
		{name: "a model the worker does not offer", p: w, model: "other", tokens: payments.Tokens{Completion: 1}},
		{name: "negative counts cannot be priced", p: w, model: "m", tokens: payments.Tokens{Prompt: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tariff.Bill(tt.p, tt.model, tt.tokens, tt.receipt)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("Bill = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	if !strings.Contains(logs.String(), "receipt names a price other than its offer") {
		t.Errorf("a receipt above the offer was not logged: %q", logs.String())
	}

	perMillion, ok := tariff.PerMillion(w, "m")
	if want := int64(1_000_000 + 3_000_000 + 200_000); !ok || perMillion != want {
		t.Errorf("PerMillion = %d, %v; want %d", perMillion, ok, want)
	}
	if _, ok := tariff.PerMillion(unknown, "m"); ok {
		t.Error("PerMillion priced a worker with no offer")
	}
}
