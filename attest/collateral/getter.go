package collateral

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// MaxAsk bounds the peers one Get asks.
const MaxAsk = 8

// askTimeout bounds one peer's answer.
const askTimeout = 10 * time.Second

// Peers names the peers to ask for collateral, in the order to ask them:
// a node's proxies.
type Peers interface {
	Peers() []peer.ID
}

// PeersFunc is a func as a Peers.
type PeersFunc func() []peer.ID

// Peers calls f.
func (f PeersFunc) Peers() []peer.ID { return f() }

// Getter is a tdx.Getter (and tdx.ContextGetter) that fetches from Intel,
// and when Intel cannot be reached, from peers' caches.
type Getter struct {
	network string
	intel   tdx.Getter
	h       host.Host
	peers   Peers
	log     *slog.Logger
}

var _ tdx.ContextGetter = (*Getter)(nil)

// NewGetter fetches through intel (tdx.NewHTTPSGetter if nil), falling
// back to asking the peers that peers names (none if nil) over h, on
// network's collateral protocol.
func NewGetter(network string, intel tdx.Getter, h host.Host, peers Peers, log *slog.Logger) *Getter {
	if intel == nil {
		intel = tdx.NewHTTPSGetter()
	}
	if peers == nil {
		peers = PeersFunc(func() []peer.ID { return nil })
	}
	return &Getter{network: network, intel: intel, h: h, peers: peers, log: log.With("component", "collateral")}
}

// Get is GetContext without a deadline of its own.
func (g *Getter) Get(url string) (map[string][]string, []byte, error) {
	return g.GetContext(context.Background(), url)
}

// GetContext fetches url from Intel, or failing that from the first peer
// that has it cached. It asks nobody for a URL that is not a collateral
// URL (ErrNotCollateralURL). When nobody has it, the error wraps Intel's.
func (g *Getter) GetContext(ctx context.Context, url string) (map[string][]string, []byte, error) {
	if !tdx.IsCollateralURL(url) {
		return nil, nil, fmt.Errorf("%w: %.100q", ErrNotCollateralURL, url)
	}
	h, b, ierr := tdx.GetContext(ctx, g.intel, url)
	if ierr == nil {
		return h, b, nil
	}
	asked := 0
	var perr error
	for _, p := range g.peers.Peers() {
		if asked == MaxAsk || ctx.Err() != nil {
			break
		}
		if p == g.h.ID() {
			continue
		}
		asked++
		h, b, err := Fetch(ctx, g.h, g.network, p, url)
		if err == nil {
			g.log.Info("Intel PCS unreachable, collateral relayed by a peer", "peer", p, "url", url, "intel_err", ierr)
			return h, b, nil
		}
		g.log.Debug("peer has no collateral to relay", "peer", p, "url", url, "err", err)
		perr = errors.Join(perr, fmt.Errorf("peer %s: %w", p, err))
	}
	if perr == nil {
		perr = errors.New("no peer to ask")
	}
	return nil, nil, fmt.Errorf("%w; asked %d peers: %v", ierr, asked, perr)
}

// Fetch asks p, over h, for its cached answer to url on network's
// collateral protocol. Errors: ErrNotCollateralURL (p was not asked),
// ErrNotCached, ErrRefused, ErrMalformed, or the stream's.
func Fetch(ctx context.Context, h host.Host, network string, p peer.ID, url string) (map[string][]string, []byte, error) {
	if !tdx.IsCollateralURL(url) {
		return nil, nil, fmt.Errorf("%w: %.100q", ErrNotCollateralURL, url)
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, ProtocolID(network))
	if err != nil {
		return nil, nil, fmt.Errorf("opening collateral stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	header, body, err := exchange(s, url)
	if err != nil {
		s.Reset()
		return nil, nil, err
	}
	s.Close()
	return header, body, nil
}

// duplex is the side of a stream exchange uses.
type duplex interface {
	io.ReadWriter
	CloseWrite() error
}

// exchange sends the request for url on s and reads the answer.
func exchange(s duplex, url string) (map[string][]string, []byte, error) {
	if err := p2p.WriteFrame(s, frameRequest, []byte(url)); err != nil {
		return nil, nil, fmt.Errorf("sending collateral request: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		return nil, nil, fmt.Errorf("closing collateral request: %w", err)
	}
	fr := p2p.NewFrameReader(s, maxAnswer, 0)
	defer fr.Release()
	typ, payload, err := fr.Next()
	if err != nil {
		if errors.Is(err, p2p.ErrFrameTooLarge) || errors.Is(err, p2p.ErrFrameShort) || errors.Is(err, p2p.ErrFrameVersion) {
			return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil, nil, fmt.Errorf("reading collateral answer: %w", err)
	}
	switch typ {
	case frameAnswer:
		header, body, err := decodeAnswer(payload)
		if err != nil {
			return nil, nil, err
		}
		return header, append([]byte(nil), body...), nil
	case frameRefused:
		if string(payload) == codeNotCached {
			return nil, nil, ErrNotCached
		}
		return nil, nil, fmt.Errorf("%w: %.64q", ErrRefused, payload)
	}
	return nil, nil, fmt.Errorf("%w: frame type %d", ErrMalformed, typ)
}
