package payments

import (
	"log/slog"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Offered is where a proxy reads the prices workers ask now: its offer
// book (offers.Book implements it).
type Offered interface {
	// Price is the price of model in p's live offer.
	Price(p peer.ID, model string) (Price, bool)
}

// Tariff is what a proxy charges: a worker's live offered price plus the
// proxy's fee. The router asks it to compare a worker with a client's
// maximum price and to bill each answer.
type Tariff struct {
	offered Offered
	feePPM  int64
	log     *slog.Logger
}

// NewTariff prices answers at the prices in offered, plus feePPM parts per
// million of the worker's amount.
func NewTariff(offered Offered, feePPM int64, log *slog.Logger) *Tariff {
	return &Tariff{offered: offered, feePPM: feePPM, log: log.With("component", "tariff")}
}

// PerMillion is what a client pays for model through this proxy to worker
// p, for a million prompt plus a million completion tokens.
func (t *Tariff) PerMillion(p peer.ID, model string) (int64, bool) {
	price, ok := t.offered.Price(p, model)
	if !ok {
		return 0, false
	}
	b, err := Cost(Tokens{Prompt: Million, Completion: Million}, price, t.feePPM)
	return b.Total, err == nil
}

// Offered is p's price for model in its live offer.
func (t *Tariff) Offered(p peer.ID, model string) (Price, bool) { return t.offered.Price(p, model) }

// Bill prices one answer of p for model. The price is p's live offer, or
// receipt when it is not nil: the client pays by the receipt, which the
// worker signed, and a receipt that names another price than the offer is
// logged. Cached tokens beyond the prompt count as prompt tokens.
func (t *Tariff) Bill(p peer.ID, model string, tokens Tokens, receipt *Price) (Bill, bool) {
	price, ok := t.offered.Price(p, model)
	if receipt != nil {
		if ok && *receipt != price {
			t.log.Warn("worker's receipt names a price other than its offer's", "peer", p, "model", model,
				"receipt", *receipt, "offer", price)
		}
		price, ok = *receipt, true
	}
	if !ok {
		return Bill{}, false
	}
	tokens.Cached = min(tokens.Cached, tokens.Prompt)
	b, err := Cost(tokens, price, t.feePPM)
	if err != nil {
		t.log.Warn("cannot price an answer", "peer", p, "model", model, "err", err)
		return Bill{}, false
	}
	return b, true
}
