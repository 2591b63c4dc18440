package router

import (
	"hash"

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
	price, billable, e := r.price(a, end)
	if e != nil {
		// Relayed, the End would bill the client at the worker's word.
		a.log().Warn("worker's receipt bills at a price it does not offer; routing around it", "worker", a.w.id, "err", e.Message)
		r.refuse(a.w)
		return outcomeFailure, r.abort(a.out, e)
	}
	if billable { // the proxy prices answers, not the worker
		if b, ok := r.prices.Bill(a.w.id, a.req.Model, end.Usage.Billed(), price); ok {
			end.Cost = &b
		}
	}
	checked := r.relaying(a, end)
	err = inference.WriteEnd(a.out, end)
	if err == nil {
		err = a.out.Flush()
	}
	if end.Receipt != nil {
		if err := r.checkReceipt(a.w, a.req, end, content); err != nil {
			a.log().Warn("worker's receipt refused", "worker", a.w.id, "err", err)
			checked(nil)
			return outcomeFailure, nil // the client refuses it too, and pays nothing
		}
	}
	checked(end.Receipt)
	if err != nil {
		// The worker served the answer and is paid for it; the client,
		// which did not get its end, owes nothing.
		return outcomeSuccess, inference.Errorf(inference.CodeCancelled, "writing to client: %v", err)
	}
	if r.settler != nil && end.Cost != nil && end.Cost.Total > 0 {
		r.settler.Served(a.client, uint64(end.Cost.Total))
	}
	return outcomeSuccess, nil
}

// price says what a's answer is billed at: the price its receipt names,
// when that is the worker's offer when it was picked (within the request's
// max price, as pick saw), or its offer now within the max price too (the
// worker changed its price while the request ran); nil, the offer's price,
// without a receipt. billable is false when no offer of the worker is
// known: a receipt alone names no price the proxy bills by, so its price
// is not checked. e refuses a receipt at any other price: the worker
// billing at its own word, which the client would pay. A receipt that
// does not open is checkReceipt's to refuse.
func (r *Router) price(a *attempt, end *inference.End) (price *payments.Price, billable bool, e *inference.Error) {
	if r.prices == nil {
		return nil, false, nil
	}
	var rc *payments.Receipt
	if end.Receipt != nil {
		if got, err := payments.Open(end.Receipt, a.w.id); err == nil {
			rc = got
		}
	}
	if a.offer != nil && (rc == nil || rc.Price == *a.offer) {
		if rc == nil {
			return nil, true, nil
		}
		return &rc.Price, true, nil
	}
	now, ok := r.prices.Offered(a.w.id, a.req.Model)
	switch {
	case !ok && a.offer == nil:
		return nil, false, nil
	case rc == nil:
		return nil, true, nil
	case ok && rc.Price == now:
		if per, known := r.prices.PerMillion(a.w.id, a.req.Model); a.maxPrice == 0 || known && per <= a.maxPrice {
			return &rc.Price, true, nil
		}
		return nil, false, inference.Errorf(inference.CodeBadReceipt,
			"the worker's receipt bills at its new price %+v, over the request's max price of %d nanoTON per million tokens; the answer is withheld", rc.Price, a.maxPrice)
	}
	offer := now
	if a.offer != nil {
		offer = *a.offer
	}
	return nil, false, inference.Errorf(inference.CodeBadReceipt,
		"the worker's receipt bills at %+v, not its offer's %+v; the answer is withheld", rc.Price, offer)
}

// relaying tells the settler of a's answer before its End, with the
// receipt, goes to the client: the proxy owes the worker its part from
// then, whether or not the client gets the End. checked is called with
// the receipt once it agreed with what was relayed, or nil.
func (r *Router) relaying(a *attempt, end *inference.End) (checked func(receipt []byte)) {
	if r.settler == nil || end.Cost == nil || end.Receipt == nil {
		return func([]byte) {}
	}
	return r.settler.Relaying(a.w.id, uint64(end.Cost.Worker))
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
