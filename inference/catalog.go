package inference

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/p2p"
)

// The catalog protocol, /cocoon/<network>/models/1, answers what a node
// serves: a worker its own models and capacity, a proxy the models of the
// workers it can reach. The requester sends nothing; the server answers one
// frame and closes.
const (
	CatalogProtocolName    = "models"
	CatalogProtocolVersion = "1"

	frameCatalog    byte = 1
	maxCatalogBytes      = 1 << 20
)

// Catalog is a node's answer on the catalog protocol.
type Catalog struct {
	Models        []Model `json:"models"`
	MaxConcurrent int     `json:"max_concurrent,omitempty"` // workers: requests served at once
	Active        int     `json:"active,omitempty"`         // workers: requests being served now
}

// ServeCatalog answers one catalog request on s.
func ServeCatalog(s network.Stream, c *Catalog) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return p2p.WriteFrame(s, frameCatalog, b)
}

// FetchCatalog asks p for its catalog.
func FetchCatalog(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID) (*Catalog, error) {
	s, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return nil, fmt.Errorf("opening catalog stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	c, err := readCatalog(s)
	if err != nil {
		s.Reset()
		return nil, err
	}
	s.Close()
	return c, nil
}

func readCatalog(s network.Stream) (*Catalog, error) {
	fr := p2p.NewFrameReader(s, maxCatalogBytes, 0)
	defer fr.Release()
	typ, b, err := fr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading catalog: %w", err)
	}
	if typ != frameCatalog {
		return nil, fmt.Errorf("%w: catalog frame type %d", ErrMalformed, typ)
	}
	return DecodeCatalog(b)
}

// DecodeCatalog decodes and checks a catalog.
func DecodeCatalog(b []byte) (*Catalog, error) {
	var c Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: catalog: %v", ErrMalformed, err)
	}
	if len(c.Models) > 1024 {
		return nil, fmt.Errorf("%w: catalog lists %d models, over 1024", ErrMalformed, len(c.Models))
	}
	for _, m := range c.Models {
		if m.ID == "" || len(m.ID) > 256 {
			return nil, fmt.Errorf("%w: catalog model ID %q", ErrMalformed, m.ID)
		}
		if len(m.Endpoints) > len(Kinds) {
			return nil, fmt.Errorf("%w: model %q lists %d endpoints", ErrMalformed, m.ID, len(m.Endpoints))
		}
		for _, e := range m.Endpoints {
			if _, err := ParseKind(e); err != nil {
				return nil, fmt.Errorf("%w: model %q: %v", ErrMalformed, m.ID, err)
			}
		}
	}
	if c.MaxConcurrent < 0 || c.Active < 0 {
		return nil, fmt.Errorf("%w: negative capacity", ErrMalformed)
	}
	return &c, nil
}
