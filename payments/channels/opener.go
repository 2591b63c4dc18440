package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// Payees lists the peers a node pays now: a client's attested proxies, a
// proxy's workers that are up.
type Payees interface {
	Payees() []peer.ID
}

// How often an Opener looks for payees to open a channel to, and how it
// backs off from a payee whose open failed: openBackoff after the first
// failure, doubling up to maxOpenBackoff.
const (
	openEvery      = time.Second
	openBackoff    = 5 * time.Second
	maxOpenBackoff = time.Minute
)

// Opener keeps a payer's channels open: it opens a channel to each payee
// that has none with at least Renew left (or whose payee asked to settle),
// before the old one runs dry, closes the channels it replaced once their
// payees hold every state, and remembers why the last open to each payee
// failed, for Refusal.
type Opener struct {
	m      *Manager
	payees Payees
	log    *slog.Logger
	every  time.Duration // how often Run looks without being woken: openEvery

	mu     sync.Mutex        // guards failed
	failed map[peer.ID]error // the last failed open per payee; none once one succeeds
}

// NewOpener returns an opener of m's channels to payees. It starts nothing.
func NewOpener(m *Manager, payees Payees, log *slog.Logger) *Opener {
	return &Opener{m: m, payees: payees, log: log.With("component", "payments"), every: openEvery, failed: make(map[peer.ID]error)}
}

// Run opens channels until ctx ends: every second, and at once when a
// channel falls below Renew or its payee asks to settle, to each payee
// that has none with at least Renew left (or was asked to settle), except
// a payee whose open failed
// (an empty wallet, an unreachable chain), which waits 5 s after the first
// failure, twice as long after each next one, up to a minute.
func (o *Opener) Run(ctx context.Context) {
	t := time.NewTicker(o.every)
	defer t.Stop()
	r := retry{next: make(map[peer.ID]time.Time), wait: make(map[peer.ID]time.Duration)}
	for {
		for _, p := range o.payees.Payees() {
			if o.m.Fresh(p) || !r.due(p, time.Now()) {
				continue
			}
			err := o.m.Open(ctx, p)
			if ctx.Err() != nil {
				return
			}
			o.record(p, err)
			if err != nil {
				wait := r.failed(p, time.Now())
				o.log.Warn("opening a payment channel failed", "peer", p, "retry_in", wait, "err", err)
				continue
			}
			r.succeeded(p)
		}
		o.m.settleReplaced(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-o.m.renewing:
		}
	}
}

// record keeps err as the last open to p's outcome.
func (o *Opener) record(p peer.ID, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.failed[p] = err
	} else {
		delete(o.failed, p)
	}
}

// Refusal is why a client with no funded channel to a proxy is refused a
// request (a 402): the reason a failed open gave, an empty wallet
// (ton.ErrInsufficientFunds) rather than any other, or else that no
// channel is open yet. It is nil when a payee has a channel with at least
// the reserve left, or when there is no payee at all (nothing to pay, not
// a payment problem).
func (o *Opener) Refusal() error {
	payees := o.payees.Payees()
	if len(payees) == 0 {
		return nil
	}
	for _, p := range payees {
		if o.m.Payable(p) == nil {
			return nil
		}
	}
	var why error
	o.mu.Lock()
	for _, err := range o.failed {
		why = err
		if errors.Is(err, ton.ErrInsufficientFunds) {
			break
		}
	}
	o.mu.Unlock()
	if why == nil {
		return fmt.Errorf("no payment channel to a proxy is open yet (the node opens one as soon as a proxy is attested; wallet %s)", o.wallet())
	}
	return fmt.Errorf("no funded payment channel to a proxy: %w", why)
}

// wallet is the address the node pays from, for the refusal.
func (o *Opener) wallet() string {
	if o.m.wallet == nil {
		return "none"
	}
	return o.m.wallet.Address().String()
}

// retry is when each payee whose open failed may be tried again. Only
// Run's goroutine uses it.
type retry struct {
	next map[peer.ID]time.Time     // no open before this
	wait map[peer.ID]time.Duration // the wait after the last failure
}

// due says whether p may be tried at now.
func (r *retry) due(p peer.ID, now time.Time) bool { return !now.Before(r.next[p]) }

// failed records a failed open to p at now, and returns how long p waits.
func (r *retry) failed(p peer.ID, now time.Time) time.Duration {
	r.wait[p] = min(max(2*r.wait[p], openBackoff), maxOpenBackoff)
	r.next[p] = now.Add(r.wait[p])
	return r.wait[p]
}

// succeeded forgets p's failures.
func (r *retry) succeeded(p peer.ID) {
	delete(r.wait, p)
	delete(r.next, p)
}
