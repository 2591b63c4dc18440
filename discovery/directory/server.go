package directory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Protocol name and version: the directory is served at
// p2p.ProtocolID(network, ProtocolName, ProtocolVersion).
const (
	ProtocolName    = "directory"
	ProtocolVersion = "1"

	// streamTimeout bounds a whole exchange: MaxSize bytes take well under
	// a second on any link a proxy serves from.
	streamTimeout = 30 * time.Second
)

// Status codes of a refusal frame.
const codeForbidden = "forbidden"

// ProtocolID is the directory protocol of network.
func ProtocolID(network string) protocol.ID {
	return p2p.ProtocolID(network, ProtocolName, ProtocolVersion)
}

// Route is a worker the proxy sends requests to now, with the models it
// serves.
type Route struct {
	Peer   peer.ID
	Models []string
	// Endpoints are, per model, the kinds of request it is served for,
	// where the worker announced them (Model.Endpoints).
	Endpoints map[string][]string
}

// Routes is the proxy's router: the workers it routes to now.
type Routes interface {
	Routable() []Route
}

// Attested is the proxy's attestation state; *attest.Handshaker
// implements it.
type Attested interface {
	// Verified returns p's live verdict, if any.
	Verified(p peer.ID) (attest.Verdict, bool)
	// PeerEvidence returns the evidence p was verified on, while its
	// verdict is live.
	PeerEvidence(p peer.ID) (*attest.Evidence, bool)
}

// Prices is the proxy's offer book; *offers.Book implements it.
type Prices interface {
	// Price is worker p's price for model in its live offer.
	Price(p peer.ID, model string) (payments.Price, bool)
}

// Source is everything a directory is built from.
type Source interface {
	Routes
	Attested
	Prices
}

// Join makes a Source of the proxy's router, handshaker and offer book.
func Join(r Routes, a Attested, p Prices) Source {
	return joined{r, a, p}
}

type joined struct {
	Routes
	Attested
	Prices
}

// Policy says who may read the directory.
type Policy interface {
	// Allow returns nil when p may read the directory.
	Allow(p peer.ID) error
}

// AnyPeer lets every connected peer read the directory: clients present
// no evidence, and the directory holds nothing a worker does not show
// every peer it meets.
type AnyPeer struct{}

// Allow allows p.
func (AnyPeer) Allow(peer.ID) error { return nil }

// Server serves a proxy's directory.
type Server struct {
	network string
	src     Source
	policy  Policy
	log     *slog.Logger
}

// NewServer serves the directory of network built from src to the peers
// policy allows. Register it on a p2p.Service.
func NewServer(network string, src Source, policy Policy, log *slog.Logger) *Server {
	return &Server{network: network, src: src, policy: policy, log: log.With("component", "directory")}
}

// Register serves the directory on sv.
func (s *Server) Register(sv *p2p.Service) {
	sv.Handle(ProtocolID(s.network), streamTimeout, s.serve)
}

// Directory is the directory as the server would serve it now: every
// routable worker with a live verdict and its evidence, in peer ID order,
// with the models it serves (valid IDs only) and their prices where an
// offer is known.
func (s *Server) Directory() *Directory {
	routes := s.src.Routable()
	slices.SortFunc(routes, func(a, b Route) int {
		switch {
		case a.Peer < b.Peer:
			return -1
		case a.Peer > b.Peer:
			return 1
		}
		return 0
	})
	d := &Directory{Network: s.network, Workers: make([]Entry, 0, len(routes))}
	for _, r := range routes {
		v, ok := s.src.Verified(r.Peer)
		if !ok {
			continue
		}
		ev, ok := s.src.PeerEvidence(r.Peer)
		if !ok {
			continue
		}
		e := Entry{Peer: r.Peer, Evidence: ev, Tier: v.Tier}
		models := slices.Clone(r.Models)
		slices.Sort(models)
		for _, id := range slices.Compact(models) {
			if len(e.Models) == MaxModels {
				break
			}
			m := Model{ID: id, Endpoints: r.Endpoints[id]}
			if p, ok := s.src.Price(r.Peer, id); ok {
				m.Price = &p
			}
			if checkModel(m.ID, m.Price) != nil || checkEndpoints(m.ID, m.Endpoints) != nil {
				continue
			}
			e.Models = append(e.Models, m)
		}
		if len(e.Models) == 0 {
			continue
		}
		d.Workers = append(d.Workers, e)
	}
	return d
}

func (s *Server) serve(_ context.Context, st network.Stream) error {
	remote := st.Conn().RemotePeer()
	if err := s.policy.Allow(remote); err != nil {
		s.log.Debug("directory refused", "peer", remote, "err", err)
		return p2p.WriteFrame(st, frameRefused, []byte(codeForbidden))
	}
	b, skipped, err := Encode(s.Directory())
	if err != nil {
		return fmt.Errorf("encoding the directory: %w", err)
	}
	if skipped > 0 {
		s.log.Warn("workers left out of the directory", "skipped", skipped, "max_workers", MaxWorkers, "max_bytes", MaxSize)
	}
	return p2p.WriteFrame(st, frameDirectory, b)
}
