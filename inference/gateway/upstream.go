package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// Upstream is where the gateway sends requests: the mesh, through a proxy.
type Upstream interface {
	// Catalog lists the models the network serves now.
	Catalog(ctx context.Context) (*inference.Catalog, error)
	// Open sends req and returns its response. Cancelling ctx aborts it.
	Open(ctx context.Context, req *inference.Request) (Response, error)
}

// Response is a response in flight.
type Response interface {
	// Next returns the next event; see inference.ResponseReader.
	Next() (inference.Event, error)
	// Buffered reports whether another event is already waiting.
	Buffered() bool
	// Close releases the response, aborting it if it has not ended.
	Close()
}

// Proxies is the Upstream of a client node: libp2p streams to proxies it
// has attested.
type Proxies struct {
	h        host.Host
	proto    protocol.ID
	catalog  protocol.ID
	attested func() []peer.ID
	next     atomic.Uint64
}

// NewProxies sends requests through h to the proxies attested returns
// (peers with a live attestation verdict), rotating between them.
func NewProxies(h host.Host, network string, attested func() []peer.ID) *Proxies {
	return &Proxies{
		h:        h,
		proto:    p2p.ProtocolID(network, inference.ProtocolName, inference.ProtocolVersion),
		catalog:  p2p.ProtocolID(network, inference.CatalogProtocolName, inference.CatalogProtocolVersion),
		attested: attested,
	}
}

// ErrNoProxy means no attested proxy is reachable; retrying after the node
// connects to one can help.
var ErrNoProxy = errors.New("no attested proxy is reachable")

func (p *Proxies) order() []peer.ID {
	ids := p.attested()
	if len(ids) > 1 {
		k := int(p.next.Add(1) % uint64(len(ids)))
		ids = append(ids[k:len(ids):len(ids)], ids[:k]...)
	}
	return ids
}

// Catalog asks the first proxy that answers.
func (p *Proxies) Catalog(ctx context.Context) (*inference.Catalog, error) {
	var last error = ErrNoProxy
	for _, id := range p.order() {
		c, err := inference.FetchCatalog(ctx, p.h, id, p.catalog)
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

// Open sends req to the first proxy that takes the stream.
func (p *Proxies) Open(ctx context.Context, req *inference.Request) (Response, error) {
	var last error = ErrNoProxy
	for _, id := range p.order() {
		s, err := p.h.NewStream(ctx, id, p.proto)
		if err != nil {
			last = fmt.Errorf("opening stream to proxy %s: %w", id, err)
			continue
		}
		if err := inference.WriteRequest(s, req); err != nil {
			s.Reset()
			last = fmt.Errorf("sending request to proxy %s: %w", id, err)
			continue
		}
		r := &streamResponse{s: s, rr: inference.NewResponseReader(s)}
		r.stop = context.AfterFunc(ctx, r.abort)
		return r, nil
	}
	return nil, last
}

type streamResponse struct {
	s    network.Stream
	rr   *inference.ResponseReader
	stop func() bool

	once  sync.Once
	ended bool // set by Next's caller goroutine only
}

func (r *streamResponse) Next() (inference.Event, error) {
	ev, err := r.rr.Next()
	if err == nil && (ev.Type == inference.FrameEnd || ev.Type == inference.FrameError) {
		r.ended = true
	}
	return ev, err
}

func (r *streamResponse) Buffered() bool { return r.rr.Buffered() }

func (r *streamResponse) abort() { r.once.Do(func() { r.s.Reset() }) }

func (r *streamResponse) Close() {
	r.stop()
	r.once.Do(func() {
		if r.ended {
			r.s.Close()
		} else {
			r.s.Reset()
		}
	})
	r.rr.Release()
}
