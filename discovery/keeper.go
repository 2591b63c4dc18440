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
	// libp2p's disconnect notifications, or another peer's check), so it
	// must be idempotent and safe for concurrent use.
	Down(p peer.ID)
}

// Bounds of a Keeper against peers found by anyone: records in the DHT
// cost nothing to make.
const (
	// DefaultMaxFound is how many found peers (Add) a Keeper keeps
	// besides the listed ones.
	DefaultMaxFound = 32
	// checkParallel is how many found peers are checked at once. Listed
	// peers are checked apart, each as soon as it is due, so found ones
	// never delay them.
	checkParallel = 8
	// evictAfter is how many checks in a row a found peer may fail before
	// the Keeper forgets it.
	evictAfter = 2
	// checkTimeout bounds one check: the dial and the Checker's Up.
	checkTimeout = 10 * time.Second
	// evictedFor is how long a dropped found peer is refused when found
	// again: lookups return the same records every round.
	evictedFor = 10 * time.Minute
)

// KeeperOption tunes a Keeper.
type KeeperOption func(*Keeper)

// WithMaxFound keeps at most n found peers besides the listed ones
// (DefaultMaxFound if n <= 0).
func WithMaxFound(n int) KeeperOption {
	return func(k *Keeper) {
		if n > 0 {
			k.maxFound = n
		}
	}
}

// kept is one peer of a Keeper.
type kept struct {
	ai       peer.AddrInfo
	listed   bool // configured or in the root contract: never evicted
	checking bool // a check is under way
	checked  bool // checked at least once
	up       bool // the last check passed
	fails    int  // checks failed in a row
}

// Keeper keeps a host connected to a set of peers and checks each one every
// interval, or at once when a connection drops. Listed peers (those it is
// made with, and AddListed's: the configuration's and the root contract's)
// come first, are each checked on their own and are never dropped; found
// peers (Add: from the DHT) are at most DefaultMaxFound, checked
// checkParallel at a time, and forgotten after evictAfter failed checks in
// a row, so that fake records cannot delay the check of a real peer.
type Keeper struct {
	h        host.Host
	interval time.Duration
	checker  Checker
	log      *slog.Logger
	poke     chan struct{}
	settled  chan struct{} // closed once every listed peer was checked
	slots    chan struct{} // checks of found peers under way
	maxFound int

	mu      sync.Mutex            // guards peers, each kept peer, settle and evicted
	peers   []*kept               // listed ones first
	settle  bool                  // settled is closed
	evicted map[peer.ID]time.Time // found peers dropped, until when they are refused
	running sync.WaitGroup
}

// NewKeeper keeps h connected to peers, listed, each checked by checker.
// It starts nothing; Run keeps them.
func NewKeeper(h host.Host, peers []peer.AddrInfo, interval time.Duration, checker Checker, log *slog.Logger, opts ...KeeperOption) *Keeper {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	k := &Keeper{h: h, interval: interval, checker: checker, log: log.With("component", "discovery"),
		poke: make(chan struct{}, 1), settled: make(chan struct{}), slots: make(chan struct{}, checkParallel),
		maxFound: DefaultMaxFound, evicted: make(map[peer.ID]time.Time)}
	for _, o := range opts {
		o(k)
	}
	for _, ai := range peers {
		k.add(ai, true)
	}
	return k
}

// Add adds a found peer to the set, or new addresses to a peer already in
// it, and has it checked at once. It reports whether the peer is new; a
// new peer finds no room while DefaultMaxFound found peers are up, and one
// dropped for failing is refused for evictedFor.
func (k *Keeper) Add(ai peer.AddrInfo) bool { return k.add(ai, false) }

// AddListed adds a listed peer (the root contract's): it comes before
// every found one and is never dropped.
func (k *Keeper) AddListed(ai peer.AddrInfo) bool { return k.add(ai, true) }

func (k *Keeper) add(ai peer.AddrInfo, listed bool) bool {
	if ai.ID == k.h.ID() {
		return false
	}
	k.mu.Lock()
	i := slices.IndexFunc(k.peers, func(p *kept) bool { return p.ai.ID == ai.ID })
	if i >= 0 {
		p := k.peers[i]
		for _, a := range ai.Addrs {
			if !slices.ContainsFunc(p.ai.Addrs, a.Equal) {
				p.ai.Addrs = append(p.ai.Addrs, a)
			}
		}
		if listed && !p.listed {
			p.listed = true
			k.peers = slices.Delete(k.peers, i, i+1)
			k.insertLocked(p)
		}
		k.mu.Unlock()
		return false
	}
	if !listed {
		if until, ok := k.evicted[ai.ID]; ok && time.Now().Before(until) {
			k.mu.Unlock()
			return false
		}
		if !k.roomLocked() {
			k.mu.Unlock()
			k.log.Debug("found peer dropped: the keeper is full", "peer", ai.ID)
			return false
		}
	}
	k.insertLocked(&kept{ai: ai, listed: listed})
	k.mu.Unlock()
	k.Poke()
	return true
}

// insertLocked puts p after the last listed peer if it is listed, else at
// the end.
func (k *Keeper) insertLocked(p *kept) {
	if !p.listed {
		k.peers = append(k.peers, p)
		return
	}
	i := slices.IndexFunc(k.peers, func(q *kept) bool { return !q.listed })
	if i < 0 {
		i = len(k.peers)
	}
	k.peers = slices.Insert(k.peers, i, p)
}

// roomLocked makes room for one more found peer, dropping a found one
// that failed its last check if need be, and reports whether there is
// room.
func (k *Keeper) roomLocked() bool {
	found := 0
	for _, p := range k.peers {
		if !p.listed {
			found++
		}
	}
	if found < k.maxFound {
		return true
	}
	i := slices.IndexFunc(k.peers, func(p *kept) bool { return !p.listed && p.checked && !p.up && !p.checking })
	if i < 0 {
		return false
	}
	k.peers = slices.Delete(k.peers, i, i+1)
	return true
}

// Up lists the peers whose last check passed, listed ones first.
func (k *Keeper) Up() []peer.ID {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []peer.ID
	for _, p := range k.peers {
		if p.up {
			out = append(out, p.ai.ID)
		}
	}
	return out
}

// Peers lists every peer in the set, up or not: listed ones first, each
// kind in the order added.
func (k *Keeper) Peers() []peer.ID {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]peer.ID, len(k.peers))
	for i, p := range k.peers {
		out[i] = p.ai.ID
	}
	return out
}

// Settled reports whether every listed peer has been checked at least
// once.
func (k *Keeper) Settled() bool {
	select {
	case <-k.settled:
		return true
	default:
		return false
	}
}

// Run checks the peers until ctx ends, and waits for the checks under way.
// The first round runs at once.
func (k *Keeper) Run(ctx context.Context) error {
	nb := &network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		if k.tracked(c.RemotePeer()) && k.h.Network().Connectedness(c.RemotePeer()) != network.Connected {
			k.markDown(c.RemotePeer())
			k.Poke()
		}
	}}
	k.h.Network().Notify(nb)
	defer k.h.Network().StopNotify(nb)
	defer k.running.Wait()

	t := time.NewTicker(k.interval)
	defer t.Stop()
	for {
		k.checkAll(ctx)
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
	return slices.ContainsFunc(k.peers, func(q *kept) bool { return q.ai.ID == p })
}

// checkAll starts a check of every peer not being checked already: listed
// ones at once, found ones as slots free up.
func (k *Keeper) checkAll(ctx context.Context) {
	type check struct {
		p      *kept
		ai     peer.AddrInfo // a copy: add changes p.ai under k.mu
		listed bool
	}
	k.mu.Lock()
	var due []check
	for _, p := range k.peers {
		if !p.checking {
			p.checking = true
			ai := p.ai
			ai.Addrs = slices.Clone(ai.Addrs)
			due = append(due, check{p, ai, p.listed})
		}
	}
	k.settleLocked()
	k.mu.Unlock()
	for _, c := range due {
		p, ai, listed := c.p, c.ai, c.listed
		k.running.Go(func() {
			if !listed {
				select {
				case k.slots <- struct{}{}:
					defer func() { <-k.slots }()
				case <-ctx.Done():
					k.done(p, ctx.Err(), false)
					return
				}
			}
			k.done(p, k.check(ctx, ai), true)
		})
	}
}

// done records the outcome of p's check.
func (k *Keeper) done(p *kept, err error, ran bool) {
	k.mu.Lock()
	p.checking = false
	if !ran {
		k.mu.Unlock()
		return
	}
	was, checked := p.up, p.checked
	p.up, p.checked = err == nil, true
	evicted := false
	if err != nil {
		p.fails++
		if !p.listed && p.fails >= evictAfter {
			if i := slices.Index(k.peers, p); i >= 0 {
				k.peers = slices.Delete(k.peers, i, i+1)
				evicted = true
				k.rememberEvictedLocked(p.ai.ID)
			}
		}
	} else {
		p.fails = 0
	}
	k.settleLocked()
	k.mu.Unlock()
	id := p.ai.ID
	switch {
	case evicted:
		k.log.Info("found peer dropped: unreachable or failing", "peer", id, "err", err)
		k.checker.Down(id)
	case err != nil && was:
		k.log.Warn("peer down", "peer", id, "err", err)
		k.checker.Down(id)
	case err != nil && !checked:
		// The first failure says why; repeats would flood the log.
		k.log.Warn("peer unreachable; retrying every check interval", "peer", id, "err", err)
		k.checker.Down(id)
	case err != nil:
		k.log.Debug("peer still unreachable", "peer", id, "err", err)
		k.checker.Down(id)
	case !was:
		k.log.Info("peer up", "peer", id)
	}
}

// rememberEvictedLocked refuses id for evictedFor, forgetting those whose
// time is up (and the oldest, past 16 times the found peers), so the
// memory stays bounded.
func (k *Keeper) rememberEvictedLocked(id peer.ID) {
	now := time.Now()
	for p, until := range k.evicted {
		if !now.Before(until) {
			delete(k.evicted, p)
		}
	}
	for len(k.evicted) >= 16*k.maxFound {
		var oldest peer.ID
		var at time.Time
		for p, until := range k.evicted {
			if oldest == "" || until.Before(at) {
				oldest, at = p, until
			}
		}
		delete(k.evicted, oldest)
	}
	k.evicted[id] = now.Add(evictedFor)
}

// settleLocked closes settled once every listed peer was checked.
func (k *Keeper) settleLocked() {
	if k.settle || slices.ContainsFunc(k.peers, func(p *kept) bool { return p.listed && !p.checked }) {
		return
	}
	k.settle = true
	close(k.settled)
}

func (k *Keeper) markDown(p peer.ID) {
	k.mu.Lock()
	for _, q := range k.peers {
		if q.ai.ID == p {
			q.up = false
		}
	}
	k.mu.Unlock()
	k.checker.Down(p)
}

func (k *Keeper) check(ctx context.Context, ai peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
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
