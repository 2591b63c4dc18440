package node

import (
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
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
// signed with key. The book is bounded and never evicts the offer of a
// peer this node holds a verdict on; the gossip prunes it.
func (n *Node) newOfferSide(key crypto.PrivKey, self offers.Self) (*offerSide, error) {
	gc := n.cfg.Gossip
	book := offers.NewBook(nil, offers.WithLimits(gc.BookSize, gc.BookPerPeer), offers.WithAttested(attestedPeers{n.hs}))
	g, err := offers.StartGossip(n.h, offers.GossipConfig{Network: n.cfg.Network, PeerRate: gc.PeerRate}, book, n.log)
	if err != nil {
		return nil, err
	}
	a := offers.NewAnnouncer(n.h, g, key, self, n.cfg.Network, n.cfg.Gossip.AnnounceInterval.D(), n.log)
	return &offerSide{book: book, gossip: g, announcer: a}, nil
}

// attestedPeers are the peers the node holds a live verdict on, as an
// offer book asks.
type attestedPeers struct{ hs *attest.Handshaker }

func (a attestedPeers) Attested(p peer.ID) bool {
	_, ok := a.hs.Verified(p)
	return ok
}
