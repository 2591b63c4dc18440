package node

import (
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
)

// offerSide is what a worker or a proxy has of gossip: the book of others'
// offers, the offers topic, and the announcer of its own offer.
type offerSide struct {
	book      *offers.Book
	gossip    *offers.Gossip
	announcer *offers.Announcer
}

// newOfferSide joins the offers topic and prepares to announce self,
// signed with key.
func (n *Node) newOfferSide(key crypto.PrivKey, self offers.Self) (*offerSide, error) {
	book := offers.NewBook(nil)
	g, err := offers.StartGossip(n.h, offers.GossipConfig{Network: n.cfg.Network}, book, n.log)
	if err != nil {
		return nil, err
	}
	a := offers.NewAnnouncer(n.h, g, key, self, n.cfg.Network, n.cfg.Gossip.AnnounceInterval.D(), n.log)
	return &offerSide{book: book, gossip: g, announcer: a}, nil
}
