package collateral

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cocoon-mesh/cocoon/p2p"
)

// streamTimeout bounds a whole exchange: a MiB takes well under a second
// on any link a node serves from.
const streamTimeout = 30 * time.Second

// Cache is where a Server finds answers: the node's collateral cache
// (*tdx.Validator implements it). Cached must never fetch.
type Cache interface {
	Cached(url string) (header map[string][]string, body []byte, ok bool)
}

// Server answers peers' collateral requests from a Cache.
type Server struct {
	network string
	cache   Cache
	log     *slog.Logger
}

// NewServer serves network's collateral protocol from cache. Register it
// on a p2p.Service.
func NewServer(network string, cache Cache, log *slog.Logger) *Server {
	return &Server{network: network, cache: cache, log: log.With("component", "collateral")}
}

// Register serves the protocol on sv.
func (s *Server) Register(sv *p2p.Service) {
	sv.Handle(ProtocolID(s.network), streamTimeout, s.serve)
}

func (s *Server) serve(_ context.Context, st network.Stream) error {
	if err := s.answer(st); err != nil {
		return fmt.Errorf("peer %s: %w", st.Conn().RemotePeer(), err)
	}
	return nil
}

// answer reads one request from rw and writes one frame back: the cached
// answer, or a refusal. It returns an error only when rw fails.
func (s *Server) answer(rw io.ReadWriter) error {
	fr := p2p.NewFrameReader(rw, MaxURL, 0)
	defer fr.Release()
	typ, payload, err := fr.Next()
	switch {
	case errors.Is(err, p2p.ErrFrameTooLarge), errors.Is(err, p2p.ErrFrameShort), errors.Is(err, p2p.ErrFrameVersion):
		return p2p.WriteFrame(rw, frameRefused, []byte(codeBadRequest))
	case err != nil:
		return fmt.Errorf("reading collateral request: %w", err)
	case typ != frameRequest:
		return p2p.WriteFrame(rw, frameRefused, []byte(codeBadRequest))
	}
	url, err := decodeRequest(payload)
	if err != nil {
		s.log.Debug("collateral request refused", "err", err)
		return p2p.WriteFrame(rw, frameRefused, []byte(codeBadRequest))
	}
	header, body, ok := s.cache.Cached(url)
	if !ok {
		return p2p.WriteFrame(rw, frameRefused, []byte(codeNotCached))
	}
	b, err := encodeAnswer(header, body)
	if err != nil {
		s.log.Warn("cached collateral too large to relay", "url", url, "err", err)
		return p2p.WriteFrame(rw, frameRefused, []byte(codeNotCached))
	}
	return p2p.WriteFrame(rw, frameAnswer, b)
}
