package discovery

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
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
	flagged  map[peer.ID]bool   // the keeper looks after these
	models   map[peer.ID]string // the models each followed worker's offer named; only Run's goroutine uses it
	interval time.Duration
	log      *slog.Logger
}

// NewWorkers follows workers for a proxy on network: flagged are the
// workers of its configuration; book is its offer book; interval is how
// often Run goes over the book when no offer arrives. It starts nothing.
func NewWorkers(h host.Host, network string, flagged []peer.AddrInfo, book *offers.Book, attester Forgetter, routes Routes,
	interval time.Duration, log *slog.Logger) *Workers {
	w := &Workers{h: h, catalog: p2p.ProtocolID(network, inference.CatalogProtocolName, inference.CatalogProtocolVersion),
		book: book, attester: attester, routes: routes, flagged: make(map[peer.ID]bool), models: make(map[peer.ID]string), interval: interval,
		log: log.With("component", "discovery")}
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
// at once, every interval, and as soon as a worker's offer arrives (offers
// arriving during a pass bring one more pass).
func (w *Workers) Run(ctx context.Context) {
	arrived, stop, err := p2p.Wake(w.h, new(offers.EvtOfferAccepted), "discovery-workers", func(e any) bool {
		return e.(offers.EvtOfferAccepted).Offer.Role == offers.RoleWorker
	})
	if err != nil {
		w.log.Error("cannot watch offers; following them every interval only", "err", err)
	} else {
		defer stop()
	}
	followed := make(map[peer.ID]bool)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.follow(ctx, followed)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-arrived:
		}
	}
}

// follow routes to every worker with a live offer that is not routed to
// yet, and stops routing to those followed before whose offer expired.
func (w *Workers) follow(ctx context.Context, followed map[peer.ID]bool) {
	live := make(map[peer.ID]bool)
	for _, o := range w.book.Live(offers.RoleWorker) {
		id, err := peer.Decode(o.Peer)
		if err != nil || w.flagged[id] {
			continue
		}
		live[id] = true
		if w.routes.Serving(id) {
			if sig := offeredModels(o); w.models[id] != sig {
				// Its models changed (a reload): ask what it serves now.
				if err := w.refresh(ctx, id); err == nil {
					w.models[id] = sig
				}
			}
			continue
		}
		if err := w.use(ctx, id, o); err != nil {
			w.log.Info("worker from offer not usable yet", "peer", id, "err", err)
			continue
		}
		followed[id] = true
		w.models[id] = offeredModels(o)
		w.log.Info("worker joined from its offer", "peer", id)
	}
	for id := range followed {
		if !live[id] {
			w.Down(id)
			delete(followed, id)
			delete(w.models, id)
			w.log.Info("worker's offer expired", "peer", id)
		}
	}
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

// refresh asks a worker routed to what it serves now.
func (w *Workers) refresh(ctx context.Context, id peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := inference.FetchCatalog(ctx, w.h, id, w.catalog)
	if err != nil {
		return err
	}
	w.routes.SetWorker(id, c)
	return nil
}

// errNoAddress means a worker's offer names no address of its own.
var errNoAddress = errors.New("offer carries no usable address")

// use connects to the worker of offer o, then routes to it as Up does.
func (w *Workers) use(ctx context.Context, id peer.ID, o *offers.Offer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
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
