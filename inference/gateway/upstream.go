package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/host"
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

// ProxySet is the proxies a client node may send requests to: those with a
// live attestation verdict.
type ProxySet interface {
	Proxies() []peer.ID
}

// Proxies is the Upstream of a client node: libp2p streams to proxies,
// reused from request to request. Each request is sealed to workers the
// client verified itself, from the proxy's directory: the proxy relays
// what it cannot read.
type Proxies struct {
	h       host.Host
	pool    *inference.Pool
	catalog protocol.ID
	set     ProxySet
	sealer  *sealer // nil: requests go in the clear
	next    atomic.Uint64
}

// NewProxies sends requests through h to the proxies set names, rotating
// between them, sealed to the workers that workers verified behind each.
// A nil workers sends requests in the clear, for tests of the proxy path
// only: the proxy then reads every prompt. Close releases its idle
// streams.
func NewProxies(h host.Host, network string, set ProxySet, workers Workers) *Proxies {
	p := &Proxies{
		h:       h,
		pool:    inference.NewPool(h, network, inference.DefaultPoolConfig()),
		catalog: p2p.ProtocolID(network, inference.CatalogProtocolName, inference.CatalogProtocolVersion),
		set:     set,
	}
	if workers != nil {
		p.sealer = newSealer(network, workers)
	}
	return p
}

// Close closes the idle streams to proxies.
func (p *Proxies) Close() { p.pool.Close() }

// ErrNoProxy means no proxy is reachable (at client.min_proxy_trust); retrying after the node
// connects to one can help.
var ErrNoProxy = errors.New("no proxy is reachable")

func (p *Proxies) order() []peer.ID {
	ids := p.set.Proxies()
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
			if p.sealer != nil {
				p.sealer.learnCatalog(c)
			}
			return c, nil
		}
		last = err
	}
	return nil, last
}

// Open sends req to the first proxy that answers it. A proxy that fails
// before its first frame is replaced by the next; nothing reached the app
// yet. A sealed request that no worker behind any proxy can take fails
// with an *inference.Error saying why.
func (p *Proxies) Open(ctx context.Context, req *inference.Request) (Response, error) {
	var last error = ErrNoProxy
	for _, id := range p.order() {
		if p.sealer != nil {
			resp, err := p.openSealed(ctx, id, req)
			if err == nil || ctx.Err() != nil {
				return resp, err
			}
			last = err
			continue
		}
		call, err := p.pool.Send(ctx, id, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			last = fmt.Errorf("proxy %s: %w", id, err)
			continue
		}
		return &callResponse{call: call, proxy: id}, nil
	}
	return nil, last
}

// openSealed seals req to candidates behind proxy and sends it there. When
// the proxy can route to none of them (its workers changed since the
// client read its directory), the directory is read again and the
// request sealed afresh, once. When the workers no longer hold the
// sessions it named by reference, it is sealed again with the sessions'
// keys, once.
func (p *Proxies) openSealed(ctx context.Context, proxy peer.ID, req *inference.Request) (Response, error) {
	refresh, resent := false, false
	for {
		resp, err := p.sendSealed(ctx, proxy, req, refresh)
		if err != nil {
			return nil, err
		}
		ev, err := resp.callResponse.Next()
		if err != nil {
			resp.Close()
			return nil, fmt.Errorf("proxy %s: %w", proxy, err)
		}
		if ev.Type == inference.FrameError {
			switch {
			case !refresh && ev.Err.Code == inference.CodeNotCandidate:
				resp.Close()
				refresh = true
				continue
			case !resent && ev.Err.Code == inference.CodeSessionUnknown:
				resp.Close()
				resp.opener.ResendKeys()
				resent = true
				continue
			}
		}
		resp.pending = &ev
		return resp, nil
	}
}

func (p *Proxies) sendSealed(ctx context.Context, proxy peer.ID, req *inference.Request, refresh bool) (*sealedResponse, error) {
	cs, err := p.sealer.candidates(ctx, proxy, req, refresh)
	if err != nil {
		return nil, err
	}
	sealed, opener, chose, err := p.sealer.seal(req, cs)
	if err != nil {
		return nil, fmt.Errorf("sealing the request: %w", err)
	}
	call, err := p.pool.Send(ctx, proxy, sealed)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", proxy, err)
	}
	return &sealedResponse{callResponse: &callResponse{call: call, proxy: proxy}, opener: opener, chosen: chose}, nil
}

// callResponse decodes a pooled call's frames into events.
type callResponse struct {
	call  *inference.Call
	proxy peer.ID
}

// Proxy names the proxy answering.
func (r *callResponse) Proxy() peer.ID { return r.proxy }

func (r *callResponse) Next() (inference.Event, error) {
	typ, p, err := r.call.Next()
	if err != nil {
		return inference.Event{}, err
	}
	return inference.DecodeEvent(typ, p)
}

func (r *callResponse) Buffered() bool { return r.call.Buffered() }

func (r *callResponse) Close() { r.call.Done() }

// Stop asks the worker, through the proxy, to end the answer as it is.
func (r *callResponse) Stop() { r.call.Stop() }
