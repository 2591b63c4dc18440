package dht

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestQueryFilter: outside the local network a lookup does not dial a peer
// a response names at loopback, LAN or no addresses at all; it does one
// with a public address, and on the local network any.
func TestQueryFilter(t *testing.T) {
	addr := func(s string) ma.Multiaddr { return ma.StringCast(s) }
	id := peer.ID("sybil")
	cases := []struct {
		local bool
		addrs []ma.Multiaddr
		want  bool
	}{
		{false, []ma.Multiaddr{addr("/ip4/127.0.0.1/tcp/4001")}, false},
		{false, []ma.Multiaddr{addr("/ip4/192.168.1.7/tcp/4001"), addr("/ip4/10.0.0.1/udp/4001/quic-v1")}, false},
		{false, nil, false},
		{false, []ma.Multiaddr{addr("/ip4/10.0.0.1/tcp/4001"), addr("/ip4/1.2.3.4/tcp/4001")}, true},
		{true, []ma.Multiaddr{addr("/ip4/127.0.0.1/tcp/4001")}, true},
	}
	for _, c := range cases {
		f := queryFilter(addrFilter(c.local, DefaultLimits.Addrs))
		if got := f(nil, peer.AddrInfo{ID: id, Addrs: c.addrs}); got != c.want {
			t.Errorf("local=%v %v: dialed %v, want %v", c.local, c.addrs, got, c.want)
		}
	}
}
