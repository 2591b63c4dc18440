// Package router is the proxy's part of the inference protocol: it keeps
// the set of workers it can reach, picks one for each request, forwards
// the request, and relays the response frame by frame, flushing whenever
// nothing more is waiting. A worker that fails before its first chunk is
// replaced by another; one that fails after it ends the response with an
// error.
//
// # Choosing a worker
//
// A request may go to a worker that is up, serves its model, has a free
// slot (the router's own count of requests in flight is under the worker's
// max_concurrent), was not tried for this request yet, and, when the
// request carries a MaxPrice, asks at most that: its offer's prompt plus
// completion price for the model, in nanoTON per million tokens. With a
// MaxPrice, a worker whose price is unknown is never chosen. If workers
// serve the model but none within the price, the request fails with
// CodeTooExpensive, naming the cheapest price on offer.
//
// When the request carries a MinTier, a worker also needs a live
// attestation verdict (from the Verdicts the router was made with) of at
// least that tier; the tier a worker's offer claims is never used. If
// workers serve the model but none is trusted enough, the request fails
// with CodeUntrusted, naming the tier wanted and the best one available;
// only the workers trusted enough count towards CodeTooExpensive. The
// verdict is checked again just before the request is sent, so a worker
// whose verdict changed since it was picked gets nothing. Workers get
// requests without MaxPrice and MinTier: those are the proxy's to honour.
//
// Among those workers, the router picks by, in order:
//
//  1. price, the cheapest first, where both prices are known (the
//     cheapest offer sells first);
//  2. score, the lowest first;
//  3. requests served, the fewest first;
//  4. the order in which workers were added.
//
// The score estimates the wait for a first chunk from the worker, in
// seconds:
//
//	score = (ttft + 0.05) × (1 + active/max_concurrent) / max(success, 0.05)
//
// ttft is the worker's measured time to first chunk, an EWMA (weight 1/4
// per request) of the time from sending the request to its first frame.
// success is an EWMA (weight 1/4) of its outcomes: 1 for a response that
// ended with End, 0 for a failure before the first chunk (an error a
// retry could help with, a timeout, a stream that broke) or after it
// (a broken stream, a malformed frame, an engine error). Requests the
// client cancelled or that failed by their own fault count for neither.
// So a failure raises the score as a retry would raise the wait, and load
// stretches it as a queue would. The 0.05 s keeps near-zero latencies from
// dividing traffic by noise.
//
// A worker never measured gets a neutral prior: the EWMA of every worker's
// first-chunk latency so far (0 before the first), and a success of 1. It
// thus ties with workers that perform as the average does, and wins those
// ties on requests served, so a new worker gets traffic at once. A
// worker's measurements fade back to that prior while it is not measured,
// halving their distance to it every Config.FadeHalfLife (a minute by
// default):
//
//	x_now = prior + (x - prior) × 2^(-age/half-life)
//
// so old failures and old latencies weigh less and less, and a worker
// that did badly competes again as they fade.
//
// Measurements are taken with Config.Now. Choosing is one pass over the
// workers under the router's mutex, with one clock read and no allocation.
//
// # Pricing and settling
//
// With a Pricer, the router puts each answer's cost in its End frame: the
// worker's tokens at the price its signed receipt names (at its offer's
// without a receipt), plus this proxy's fee. Once the client has the
// answer, the router checks the receipt against what it relayed,
// verifying the signature on a worker's first receipt and every sixteenth
// after it; a worker whose receipt disagrees is counted as failing. With a
// Settler, a client is served only while it is paid up, only workers the
// proxy can pay are routed to, and each answer with a cost and no refused
// receipt is owed by its client, its receipt handed on for the proxy to be
// paid by.
//
// Choosing and measuring live in pick.go and workers.go, relaying in
// relay.go, pricing and settling in settle.go.
package router
