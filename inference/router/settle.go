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
	if e := r.checkPrice(a, end); e != nil {
		// Relayed, the End would bill the client at the worker's word.
		a.log().Warn("worker's receipt bills at a price it does not offer; routing around it", "worker", a.w.id, "err", e.Message)
		r.refuse(a.w)
		return outcomeFailure, r.abort(a.out, e)
	}
	end.Cost = r.bill(a, end) // the proxy prices answers, not the worker
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

// bill prices a's answer: its tokens at the price its receipt names,
// which checkPrice found to be an offer's, or at the offer's without a
// receipt, plus this proxy's fee. It is nil when no offer of the worker
// is known: a receipt alone names no price the proxy bills by.
func (r *Router) bill(a *attempt, end *inference.End) *payments.Bill {
	if r.prices == nil {
		return nil
	}
	if a.offer == nil {
		if _, ok := r.prices.Offered(a.w.id, a.req.Model); !ok {
			return nil
		}
	}
	var price *payments.Price
	if end.Receipt != nil {
		if rc, err := payments.Open(end.Receipt, a.w.id); err == nil {
			price = &rc.Price
		}
	}
	b, ok := r.prices.Bill(a.w.id, a.req.Model, end.Usage.Billed(), price)
	if !ok {
		return nil
	}
	return &b
}

// checkPrice checks the price a's receipt bills at: the worker's offer
// when it was picked (within the request's max price, as pick saw), or its
// offer now, if that is within the max price too (the worker changed its
// price while the request ran). Any other price is the worker billing at
// its own word, which the client would pay: the answer is refused. A
// worker without an offer bills nothing (bill), so its price is not
// checked; neither is a receipt that does not open, which checkReceipt
// reports.
func (r *Router) checkPrice(a *attempt, end *inference.End) *inference.Error {
	if end.Receipt == nil || r.prices == nil {
		return nil
	}
	rc, err := payments.Open(end.Receipt, a.w.id)
	if err != nil {
		return nil
	}
	if a.offer != nil && rc.Price == *a.offer {
		return nil
	}
	now, ok := r.prices.Offered(a.w.id, a.req.Model)
	if !ok && a.offer == nil {
		return nil
	}
	if ok && rc.Price == now {
		if per, known := r.prices.PerMillion(a.w.id, a.req.Model); a.maxPrice == 0 || known && per <= a.maxPrice {
			return nil
		}
		return inference.Errorf(inference.CodeBadReceipt,
			"the worker's receipt bills at its new price %+v, over the request's max price of %d nanoTON per million tokens; the answer is withheld", rc.Price, a.maxPrice)
	}
	offer := now
	if a.offer != nil {
		offer = *a.offer
	}
	return inference.Errorf(inference.CodeBadReceipt,
		"the worker's receipt bills at %+v, not its offer's %+v; the answer is withheld", rc.Price, offer)
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
