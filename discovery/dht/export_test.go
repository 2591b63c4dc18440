package dht

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"
)

// HeldProviders is how many providers d's store holds for key (multihash
// bytes), read through the DHT's own provider store.
func HeldProviders(ctx context.Context, d *DHT, key []byte) int {
	provs, err := d.d.ProviderStore().GetProviders(ctx, key)
	if err != nil {
		return -1
	}
	return len(provs)
}

// InRoutingTable says whether p is in d's routing table.
func (d *DHT) InRoutingTable(p peer.ID) bool { return d.d.RoutingTable().Find(p) != "" }
