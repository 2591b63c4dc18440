package p2p

import (
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// HostConfig configures a libp2p host.
type HostConfig struct {
	// Listen are the multiaddrs to listen on. Empty means no listener (a
	// client that only dials). Never leave libp2p to pick: its default
	// listens on every interface.
	Listen []string `toml:"listen"`
	// MaxStreamsPerPeer bounds concurrent streams with one peer, each way.
	// A proxy carries every request of a client on one connection, so this
	// is the concurrency one client can reach.
	MaxStreamsPerPeer int `toml:"max_streams_per_peer"`
	// MaxStreams bounds concurrent streams in the whole host.
	MaxStreams int `toml:"max_streams"`
	// MaxConns bounds open connections; the connection manager trims to
	// ConnsLow once ConnsHigh is passed.
	MaxConns  int `toml:"max_conns"`
	ConnsLow  int `toml:"conns_low"`
	ConnsHigh int `toml:"conns_high"`
	// RelayService makes the host relay connections to peers behind NAT
	// (circuit relay v2): NewRelay starts it. Proxies run it; relayed
	// connections carry inference, so they are not limited in time or
	// bytes, and only peers the RelayGate admits may use it.
	RelayService bool `toml:"relay_service"`
	// RelayMaxReservations bounds the relay's slots (one per private
	// worker); an eighth of them may come from one IP address.
	RelayMaxReservations int `toml:"relay_max_reservations"`
	// RelayMaxCircuits bounds the relayed connections to or from one peer
	// at once: to a private worker, one per proxy that routes to it.
	RelayMaxCircuits int `toml:"relay_max_circuits"`
	// RelayCircuitsPerPeer bounds the relayed connections one source
	// opens at once, so that a few admitted peers cannot take a worker's
	// RelayMaxCircuits.
	RelayCircuitsPerPeer int `toml:"relay_circuits_per_peer"`
	// Private says the host cannot be reached from outside (behind NAT, no
	// open port): it accepts connections through relays it holds a slot on
	// (see Reservations), and tries hole punching.
	Private bool `toml:"private"`
}

// DefaultHostConfig listens on loopback TCP and QUIC with ports chosen by
// the system.
func DefaultHostConfig() HostConfig {
	return HostConfig{
		Listen:            []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		MaxStreamsPerPeer: 4096,
		MaxStreams:        16384,
		MaxConns:          2048,
		ConnsLow:          512,
		ConnsHigh:         1024,

		RelayMaxReservations: 512,
		RelayMaxCircuits:     64,
		RelayCircuitsPerPeer: 4,
	}
}

// Validate checks the limits and addresses.
func (c HostConfig) Validate() error {
	for _, a := range c.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("listen: %q: %w", a, err)
		}
	}
	if c.Private && c.RelayService {
		return fmt.Errorf("relay_service: a private host cannot relay for others")
	}
	if c.MaxStreamsPerPeer <= 0 || c.MaxStreams < c.MaxStreamsPerPeer {
		return fmt.Errorf("max_streams_per_peer (%d) must be positive and at most max_streams (%d)", c.MaxStreamsPerPeer, c.MaxStreams)
	}
	if c.RelayService && (c.RelayMaxReservations < 8 || c.RelayMaxCircuits <= 0 || c.RelayCircuitsPerPeer <= 0 || c.RelayCircuitsPerPeer > c.RelayMaxCircuits) {
		return fmt.Errorf("relay_max_reservations (%d) must be at least 8, relay_max_circuits (%d) positive and relay_circuits_per_peer (%d) between 1 and relay_max_circuits",
			c.RelayMaxReservations, c.RelayMaxCircuits, c.RelayCircuitsPerPeer)
	}
	if c.ConnsLow <= 0 || c.ConnsHigh < c.ConnsLow || c.MaxConns < c.ConnsHigh {
		return fmt.Errorf("conns_low (%d) <= conns_high (%d) <= max_conns (%d) must hold", c.ConnsLow, c.ConnsHigh, c.MaxConns)
	}
	return nil
}

// NewHost starts a libp2p host with key as its identity: TCP and QUIC,
// Noise then TLS, yamux, a resource manager with the configured limits and
// a connection manager.
func NewHost(cfg HostConfig, key crypto.PrivKey) (host.Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	limiter := rcmgr.NewFixedLimiter(limits(cfg))
	rm, err := rcmgr.NewResourceManager(limiter, rcmgr.WithMetricsDisabled())
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(cfg.ConnsLow, cfg.ConnsHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(tls.ID, tls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, coalescingMuxer{inner: yamux.DefaultTransport}),
		libp2p.DialRanker(preferTCP),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.DisableMetrics(),
		// Every host can dial through relays to reach private ones.
		libp2p.EnableRelay(),
	}
	if cfg.RelayService {
		// NewRelay starts the service, once the gate exists. A relay must
		// be reachable by definition; AutoNAT cannot tell on loopback or
		// behind a load balancer.
		opts = append(opts, libp2p.ForceReachabilityPublic())
	}
	listen := cfg.Listen
	if cfg.Private {
		// Relayed connections arrive on the circuit listener.
		listen = append(slices.Clone(listen), "/p2p-circuit")
		opts = append(opts, libp2p.ForceReachabilityPrivate(), libp2p.EnableHolePunching())
	}
	if len(listen) == 0 {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrStrings(listen...))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		cm.Close()
		return nil, fmt.Errorf("starting libp2p host: %w", err)
	}
	return h, nil
}

func limits(cfg HostConfig) rcmgr.ConcreteLimitConfig {
	streams := rcmgr.LimitVal(cfg.MaxStreams)
	perPeer := rcmgr.LimitVal(cfg.MaxStreamsPerPeer)
	conns := rcmgr.LimitVal(cfg.MaxConns)
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Streams: streams, StreamsInbound: streams, StreamsOutbound: streams,
			Conns: conns, ConnsInbound: conns, ConnsOutbound: conns,
			Memory: rcmgr.LimitVal64(4 << 30),
		},
		Transient: rcmgr.ResourceLimits{
			Streams: streams, StreamsInbound: streams, StreamsOutbound: streams,
		},
		ServiceDefault:      rcmgr.ResourceLimits{Streams: streams, StreamsInbound: streams, StreamsOutbound: streams},
		ServicePeerDefault:  rcmgr.ResourceLimits{Streams: perPeer, StreamsInbound: perPeer, StreamsOutbound: perPeer},
		ProtocolDefault:     rcmgr.ResourceLimits{Streams: streams, StreamsInbound: streams, StreamsOutbound: streams},
		ProtocolPeerDefault: rcmgr.ResourceLimits{Streams: perPeer, StreamsInbound: perPeer, StreamsOutbound: perPeer},
		PeerDefault: rcmgr.ResourceLimits{
			Streams: perPeer, StreamsInbound: perPeer, StreamsOutbound: perPeer,
			Memory: rcmgr.LimitVal64(1 << 30),
		},
	}
	return partial.Build(rcmgr.DefaultLimits.AutoScale())
}

// quicFallbackDelay is how long a dial waits for TCP before it also tries
// QUIC.
const quicFallbackDelay = 250 * time.Millisecond

// preferTCP dials TCP addresses at once and everything else (QUIC) only
// if TCP has not connected within quicFallbackDelay. libp2p's default
// ranker prefers QUIC; measured here, a request through the mesh costs
// about a quarter more CPU over QUIC than over TCP with yamux (make bench
// -transport quic versus tcp), and QUIC streams carry about half the
// bytes per second.
func preferTCP(addrs []ma.Multiaddr) []network.AddrDelay {
	out := make([]network.AddrDelay, 0, len(addrs))
	hasTCP := false
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			hasTCP = true
			break
		}
	}
	for _, a := range addrs {
		var d time.Duration
		if _, err := a.ValueForProtocol(ma.P_TCP); err != nil && hasTCP {
			d = quicFallbackDelay
		}
		out = append(out, network.AddrDelay{Addr: a, Delay: d})
	}
	return out
}
