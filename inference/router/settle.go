package router

import (
	"hash"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// finish relays the worker's End frame p to the client, with the answer's
// cost, then checks the worker's receipt against what was relayed and
// settles the answer. Checked after the client has its answer, off its
// latency: a worker whose receipt disagrees with what it streamed is
// marked failed, and routed to less; its answer is not settled.
func (r *Router) finish(a *attempt, p []byte, content hash.Hash) (outcome, *inference.Error) {
	end, err := inference.DecodeEnd(p)
	if err != nil {
		return outcomeFailure, r.abort(a.out, inference.Errorf(inference.CodeEngine, "worker sent a malformed end: %v", err))
	}
	end.Tier = a.tier.String()
	end.Worker = a.w.idStr
	end.Cost = r.bill(a.w, a.req.Model, end) // the proxy prices answers, not the worker
	if err := inference.WriteEnd(a.out, end); err != nil {
		return outcomeSuccess, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
	}
	if err := a.out.Flush(); err != nil {
		return outcomeSuccess, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
	}
	if end.Receipt != nil {
		if err := r.checkReceipt(a.w, a.req, end, content); err != nil {
			a.log().Warn("worker's receipt refused", "worker", a.w.id, "err", err)
			return outcomeFailure, nil // the client refuses it too, and pays nothing
		}
	}
	r.settle(a.client, end)
	return outcomeSuccess, nil
}

// bill prices an answer of w for model: its tokens at the price its
// receipt names, which the client pays by (checked against the offer by
// the Pricer), or at its offer's without a receipt, plus this proxy's fee.
// It is nil when the price is unknown.
func (r *Router) bill(w *worker, model string, end *inference.End) *payments.Bill {
	if r.prices == nil {
		return nil
	}
	var price *payments.Price
	if end.Receipt != nil {
		if rc, err := payments.Open(end.Receipt, w.id); err == nil {
			price = &rc.Price
		}
	}
	b, ok := r.prices.Bill(w.id, model, end.Usage.Billed(), price)
	if !ok {
		return nil
	}
	return &b
}

// settle tells the settler of an answer client got whose receipt (if
// any) agreed with what was relayed: client owes its total, and the
// receipt is what the proxy is paid by.
func (r *Router) settle(client peer.ID, end *inference.End) {
	if r.settler == nil || end.Cost == nil {
		return
	}
	if end.Cost.Total > 0 {
		r.settler.Served(client, uint64(end.Cost.Total))
	}
	if end.Receipt != nil {
		r.settler.Relayed(end.Receipt)
	}
}

// checkReceipt checks a worker's signed receipt against what the router
// relayed: its signature (on every receipt: it is what the proxy is paid
// by), request, model, tokens, worker and proxy, and, for an answer in the
// clear, the request and the streamed content (content not nil). A sealed
// answer's hashes are of what only the client can read: the client checks
// them. The price it names is checked by whoever settles the payment,
// against the worker's offer.
func (r *Router) checkReceipt(w *worker, req *inference.Request, end *inference.End, content hash.Hash) error {
	got, err := payments.Verify(end.Receipt, w.id)
	if err != nil {
		return err
	}
	want := &payments.Receipt{
		RequestID:    req.ID,
		RequestHash:  got.RequestHash,
		ResponseHash: got.ResponseHash,
		Model:        req.Model,
		Tokens:       end.Usage.Billed(),
		Price:        got.Price,
		Worker:       w.id,
		Proxy:        r.h.ID(),
	}
	if content != nil {
		want.RequestHash = payments.Hash(req.Body)
		content.Sum(want.ResponseHash[:0])
	}
	return payments.Check(got, want)
}
