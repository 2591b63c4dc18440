package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// ParseAddrs parses multiaddrs that end in /p2p/<peer ID>, merging
// addresses of the same peer. Peers keep the order of their first address:
// it is the order a proxy prefers equally loaded workers in.
func ParseAddrs(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	index := make(map[peer.ID]int)
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("peer address %q: %w", a, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return nil, fmt.Errorf("peer address %q: %w (it must end in /p2p/<peer ID>)", a, err)
		}
		if i, ok := index[ai.ID]; ok {
			out[i].Addrs = append(out[i].Addrs, ai.Addrs...)
			continue
		}
		index[ai.ID] = len(out)
		out = append(out, *ai)
	}
	return out, nil
}

// Checker is what a Keeper asks of each peer it keeps, as peers come and
// go.
type Checker interface {
	// Up runs after every successful check of a connected peer: attest it,
	// ask what it serves. An error counts as the peer being down.
	Up(ctx context.Context, p peer.ID) error
	// Down runs when a peer is found unreachable or failing. It may run
	// again for a peer already down, and concurrently with Up (from
	// libp2p's disconnect notifications), so it must be idempotent and
	// safe for concurrent use.
	Down(p peer.ID)
}

// Keeper keeps a host connected to a set of peers and checks each one every
// interval, or at once when a connection drops. The set starts with the
// peers it is made with and grows with Add (peers found in the DHT or the
// root contract).
type Keeper struct {
	h        host.Host
	interval time.Duration
	checker  Checker
	log      *slog.Logger
	poke     chan struct{}
	settled  chan struct{} // closed after the first pass over every peer

	mu    sync.Mutex // guards peers and up
	peers []peer.AddrInfo
	up    map[peer.ID]bool
}

// NewKeeper keeps h connected to peers, each checked by checker. It
// starts nothing; Run keeps them.
func NewKeeper(h host.Host, peers []peer.AddrInfo, interval time.Duration, checker Checker, log *slog.Logger) *Keeper {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &Keeper{h: h, peers: peers, interval: interval, checker: checker,
		log: log.With("component", "discovery"), poke: make(chan struct{}, 1), settled: make(chan struct{}), up: make(map[peer.ID]bool)}
}

// Add adds a peer to the set, or new addresses to a peer already in it, and
// has it checked at once. It reports whether the peer is new.
func (k *Keeper) Add(ai peer.AddrInfo) bool {
	if ai.ID == k.h.ID() {
		return false
	}
	k.mu.Lock()
	i := slices.IndexFunc(k.peers, func(p peer.AddrInfo) bool { return p.ID == ai.ID })
	if i >= 0 {
		for _, a := range ai.Addrs {
			if !slices.ContainsFunc(k.peers[i].Addrs, a.Equal) {
				k.peers[i].Addrs = append(k.peers[i].Addrs, a)
			}
		}
	} else {
		k.peers = append(k.peers, ai)
	}
	k.mu.Unlock()
	if i < 0 {
		k.Poke()
	}
	return i < 0
}

// Up lists the peers whose last check passed.
func (k *Keeper) Up() []peer.ID {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []peer.ID
	for _, ai := range k.peers {
		if k.up[ai.ID] {
			out = append(out, ai.ID)
		}
	}
	return out
}

// Peers lists every peer in the set, up or not, in the order added.
func (k *Keeper) Peers() []peer.ID {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]peer.ID, len(k.peers))
	for i, ai := range k.peers {
		out[i] = ai.ID
	}
	return out
}

// Settled reports whether every peer has been checked at least once.
func (k *Keeper) Settled() bool {
	select {
	case <-k.settled:
		return true
	default:
		return false
	}
}

// Run checks the peers until ctx ends. The first pass runs at once.
func (k *Keeper) Run(ctx context.Context) error {
	nb := &network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		if k.tracked(c.RemotePeer()) && k.h.Network().Connectedness(c.RemotePeer()) != network.Connected {
			k.markDown(c.RemotePeer())
			select {
			case k.poke <- struct{}{}:
			default:
			}
		}
	}}
	k.h.Network().Notify(nb)
	defer k.h.Network().StopNotify(nb)

	t := time.NewTicker(k.interval)
	defer t.Stop()
	first := true
	for {
		k.checkAll(ctx)
		if first {
			close(k.settled)
			first = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-k.poke:
		}
	}
}

func (k *Keeper) tracked(p peer.ID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.ContainsFunc(k.peers, func(ai peer.AddrInfo) bool { return ai.ID == p })
}

func (k *Keeper) checkAll(ctx context.Context) {
	k.mu.Lock()
	peers := slices.Clone(k.peers)
	k.mu.Unlock()
	for _, ai := range peers {
		if ctx.Err() != nil {
			return
		}
		err := k.check(ctx, ai)
		k.mu.Lock()
		was, checked := k.up[ai.ID]
		k.up[ai.ID] = err == nil
		k.mu.Unlock()
		switch {
		case err != nil && was:
			k.log.Warn("peer down", "peer", ai.ID, "err", err)
			k.checker.Down(ai.ID)
		case err != nil && !checked:
			// The first failure says why; repeats would flood the log.
			k.log.Warn("peer unreachable; retrying every check interval", "peer", ai.ID, "err", err)
			k.checker.Down(ai.ID)
		case err != nil:
			k.log.Debug("peer still unreachable", "peer", ai.ID, "err", err)
			k.checker.Down(ai.ID)
		case !was:
			k.log.Info("peer up", "peer", ai.ID)
		}
	}
}

func (k *Keeper) markDown(p peer.ID) {
	k.mu.Lock()
	k.up[p] = false
	k.mu.Unlock()
	k.checker.Down(p)
}

func (k *Keeper) check(ctx context.Context, ai peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if k.h.Network().Connectedness(ai.ID) != network.Connected {
		// The keeper paces its own redials (one per check interval), and a
		// peer that restarted must not wait out libp2p's dial backoff,
		// which grows to minutes while it was down.
		if sw, ok := k.h.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
			sw.Backoff().Clear(ai.ID)
		}
		if err := k.h.Connect(ctx, ai); err != nil {
			return fmt.Errorf("connecting: %w", err)
		}
	}
	return k.checker.Up(ctx, ai.ID)
}

// Poke makes Run check every peer now.
func (k *Keeper) Poke() {
	select {
	case k.poke <- struct{}{}:
	default:
	}
}
