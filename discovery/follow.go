package discovery

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// Attester runs the attestation handshake with a peer, or returns its live
// verdict (*attest.Handshaker).
type Attester interface {
	Attest(ctx context.Context, p peer.ID) (attest.Verdict, error)
}

// Forgetter is an Attester that can drop a verdict, so that the next
// Attest runs the handshake again (*attest.Handshaker).
type Forgetter interface {
	Attester
	Forget(p peer.ID)
}

// Routes is where a proxy's usable workers go: its router.
type Routes interface {
	// SetWorker routes to p, which serves c.
	SetWorker(p peer.ID, c *inference.Catalog)
	// WorkerDown stops routing to p.
	WorkerDown(p peer.ID)
	// Serving reports whether p is routed to.
	Serving(p peer.ID) bool
}

// Workers brings a proxy's workers into its router: a worker is routed to
// once it is connected, attested and has said what it serves. It follows
// two kinds of worker:
//   - flagged ones (proxy.workers), which a Keeper checks with Workers as
//     its Checker;
//   - those whose offers the proxy holds (Run): a worker that joins late
//     gets traffic as soon as its offer arrives and it is attested, and one
//     whose offer expires gets none.
type Workers struct {
	h        host.Host
	catalog  protocol.ID
	book     *offers.Book
	attester Forgetter
	routes   Routes
	flagged  map[peer.ID]bool // the keeper looks after these
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	// Workers are tried followParallel at a time among those connected
	// already, and as many among those to dial: a fake offer costs a
	// dial slot until its dial fails or times out, never a connected
	// worker's turn.
	connSlots chan struct{}
	dialSlots chan struct{}
	again     chan struct{} // a try ended: try the next ones

	mu       sync.Mutex // guards followed, models, trying and retry
	followed map[peer.ID]bool
	models   map[peer.ID]string // the models each followed worker's offer named when it was last asked
	trying   map[peer.ID]bool
	retry    map[peer.ID]backoff
}

// backoff is when a worker that failed may be tried again.
type backoff struct {
	next time.Time
	wait time.Duration
}

// Bounds of following workers from offers, which anyone can sign under
// fresh keys.
const (
	// followParallel is how many workers are tried at once, among those
	// connected already and among those to dial.
	followParallel = 8
	// followTimeout bounds one try: dial, attestation, catalog.
	followTimeout = 10 * time.Second
	// Backoff after a failed try doubles from minBackoff to maxBackoff.
	minBackoff = 5 * time.Second
	maxBackoff = 5 * time.Minute
)

// NewWorkers follows workers for a proxy on network: flagged are the
// workers of its configuration; book is its offer book; interval is how
// often Run goes over the book when no offer arrives. It starts nothing.
func NewWorkers(h host.Host, network string, flagged []peer.AddrInfo, book *offers.Book, attester Forgetter, routes Routes,
	interval time.Duration, log *slog.Logger) *Workers {
	w := &Workers{h: h, catalog: p2p.ProtocolID(network, inference.CatalogProtocolName, inference.CatalogProtocolVersion),
		book: book, attester: attester, routes: routes, flagged: make(map[peer.ID]bool), interval: interval,
		log: log.With("component", "discovery"), now: time.Now,
		connSlots: make(chan struct{}, followParallel), dialSlots: make(chan struct{}, followParallel),
		again: make(chan struct{}, 1), followed: make(map[peer.ID]bool), models: make(map[peer.ID]string), trying: make(map[peer.ID]bool),
		retry: make(map[peer.ID]backoff)}
	for _, ai := range flagged {
		w.flagged[ai.ID] = true
	}
	return w
}

// Up attests p, asks what it serves and routes to it; a Keeper calls it
// for each flagged worker.
func (w *Workers) Up(ctx context.Context, p peer.ID) error {
	if _, err := w.attester.Attest(ctx, p); err != nil {
		return err
	}
	c, err := inference.FetchCatalog(ctx, w.h, p, w.catalog)
	if err != nil {
		return err
	}
	w.routes.SetWorker(p, c)
	return nil
}

// Down stops routing to p, and forgets its verdict: a worker that comes
// back may have restarted, with new evidence and a new sealing key, and is
// attested again.
func (w *Workers) Down(p peer.ID) {
	w.routes.WorkerDown(p)
	w.attester.Forget(p)
}

// Run follows the workers whose offers are in the book until ctx ends:
// at once, every interval, as soon as a worker's offer arrives, and as
// soon as a try ends (the next ones wait for its slot). It waits for the
// tries under way before it returns.
func (w *Workers) Run(ctx context.Context) {
	arrived, stop, err := p2p.Wake(w.h, new(offers.EvtOfferAccepted), "discovery-workers", func(e any) bool {
		return e.(offers.EvtOfferAccepted).Offer.Role == offers.RoleWorker
	})
	if err != nil {
		w.log.Error("cannot watch offers; following them every interval only", "err", err)
	} else {
		defer stop()
	}
	var tries sync.WaitGroup
	defer tries.Wait()
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.follow(ctx, &tries)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-arrived:
		case <-w.again:
		}
	}
}

// follow starts trying every worker with a live offer that is not routed
// to, tried now or backing off, while slots are free; and stops routing to
// those followed before whose offer expired.
func (w *Workers) follow(ctx context.Context, tries *sync.WaitGroup) {
	now := w.now()
	live := make(map[peer.ID]bool)
	var connected, dial, changed []*offers.Offer
	w.mu.Lock()
	for _, o := range w.book.Live(offers.RoleWorker) {
		id, err := peer.Decode(o.Peer)
		if err != nil || w.flagged[id] {
			continue
		}
		live[id] = true
		if w.routes.Serving(id) {
			if w.followed[id] && !w.trying[id] && w.models[id] != offeredModels(o) {
				changed = append(changed, o) // a reload: ask what it serves now
			}
			continue
		}
		if w.trying[id] || now.Before(w.retry[id].next) {
			continue
		}
		if w.h.Network().Connectedness(id) == network.Connected {
			connected = append(connected, o)
		} else {
			dial = append(dial, o)
		}
	}
	var gone []peer.ID
	for id := range w.followed {
		if !live[id] {
			gone = append(gone, id)
			delete(w.followed, id)
			delete(w.models, id)
		}
	}
	w.mu.Unlock()
	for _, id := range gone {
		w.Down(id)
		w.log.Info("worker's offer expired", "peer", id)
	}
	w.start(ctx, tries, append(changed, connected...), w.connSlots)
	w.start(ctx, tries, dial, w.dialSlots)
}

// offeredModels sums up the models an offer names, to tell when they
// change.
func offeredModels(o *offers.Offer) string {
	ids := make([]string, len(o.Models))
	for i, m := range o.Models {
		ids[i] = m.ID
	}
	slices.Sort(ids)
	return strings.Join(ids, "\n")
}

// start tries the workers of cands, each in a slot of slots, while one is
// free.
func (w *Workers) start(ctx context.Context, tries *sync.WaitGroup, cands []*offers.Offer, slots chan struct{}) {
	for _, o := range cands {
		select {
		case slots <- struct{}{}:
		default:
			return // the rest wait for a slot: a try that ends wakes Run
		}
		id, _ := peer.Decode(o.Peer)
		w.mu.Lock()
		w.trying[id] = true
		w.mu.Unlock()
		tries.Go(func() {
			err := w.use(ctx, id, o)
			<-slots
			w.tried(id, offeredModels(o), err)
		})
	}
}

// tried records the outcome of a try of id, whose offer named models.
func (w *Workers) tried(id peer.ID, models string, err error) {
	w.mu.Lock()
	delete(w.trying, id)
	if err == nil {
		delete(w.retry, id)
		w.followed[id] = true
		w.models[id] = models
	} else {
		b := w.retry[id]
		b.wait = min(max(2*b.wait, minBackoff), maxBackoff)
		b.next = w.now().Add(b.wait)
		w.retry[id] = b
		for p, b := range w.retry {
			if len(w.retry) <= 4*offers.DefaultBookSize {
				break
			}
			if !w.now().Before(b.next) {
				delete(w.retry, p) // forgotten once due: bounded by the book
			}
		}
	}
	w.mu.Unlock()
	select {
	case w.again <- struct{}{}:
	default:
	}
	if err != nil {
		w.log.Info("worker from offer not usable yet", "peer", id, "err", err)
		return
	}
	w.log.Info("worker joined from its offer", "peer", id)
}

// errNoAddress means a worker's offer names no address of its own.
var errNoAddress = errors.New("offer carries no usable address")

// use connects to the worker of offer o, then routes to it as Up does.
func (w *Workers) use(ctx context.Context, id peer.ID, o *offers.Offer) error {
	ctx, cancel := context.WithTimeout(ctx, followTimeout)
	defer cancel()
	if w.h.Network().Connectedness(id) != network.Connected {
		infos, err := ParseAddrs(o.Addrs)
		if err != nil || len(infos) != 1 || infos[0].ID != id {
			return errNoAddress
		}
		if err := w.h.Connect(ctx, infos[0]); err != nil {
			return err
		}
	}
	return w.Up(ctx, id)
}
