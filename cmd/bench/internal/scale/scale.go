// Package scale is a many-node discovery simulation on go-libp2p's mocknet,
// used by the bench (go run ./cmd/bench -scale 200,1000); it is not used in
// production.
//
// Every node is a mocknet host with an Ed25519 identity, linked to others
// with a fixed latency, running the real offers.Gossip (signed offers,
// validation, peer scoring) on a random connected graph. The phases, each
// a method of Sim, measure:
//
//   - Gossip: workers publish signed offers; how many (offer, node) pairs
//     enter the node's book, and how long after Publish;
//   - Attack: a node with its own gossipsub and no validator publishes a
//     forged, a replayed and an oversized offer; none may enter any book;
//   - Join: a new worker joins the running network and publishes its offer;
//     how long until a proxy holds it and has had an answer from the
//     worker on a stream (the first routed request, simulated);
//   - DHT: a tenth of the nodes run the DHT in server mode (proxies), the
//     rest join it as clients through three of them; workers provide their
//     models, and random clients look them up. Gossip is stopped first:
//     every DHT connection would also be a gossip peer, and with every
//     node on the same few cores the simulation would measure little but
//     their heartbeats and score upkeep.
//
// Nothing here sleeps to synchronise: every wait is on a condition, with a
// deadline.
package scale

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/discovery/dht"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/internal/procstat"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// Config sizes a simulation.
type Config struct {
	Network string        // the network name in protocol IDs and offers; "local": mocknet's addresses are private
	Nodes   int           // honest nodes running offers.Gossip
	Degree  int           // every node is connected to at least this many others
	Latency time.Duration // one-way latency of every mocknet link
	Seed    uint64        // the topology, the roles and the lookups

	// Gossip phase.
	Publishers int           // workers that publish an offer
	Spread     time.Duration // the publications are spread evenly over this window
	Deadline   time.Duration // an offer must enter a book within this of its Publish

	// DHT phase.
	DHTServers int // 0: a tenth of the nodes, at least 10 (all of them if fewer)
	Providers  int // workers that provide their models
	Models     int // models in the catalogue; each provider serves two
	Lookups    int // FindModel calls from random clients

	// Join phase.
	Joins int // new workers, one after the other

	// Tuning are gossipsub options added to every node's own (see
	// offers.GossipConfig.Options); nil measures the production settings.
	Tuning []pubsub.Option
	// MeshMin is the mesh every node must have before anything is
	// published; 0: one under gossipsub's default Dlo. Lower it with D.
	MeshMin int
	Log     *slog.Logger // progress at Info, trouble at Warn; nil: discard
}

// DefaultConfig is the bench's simulation of n nodes.
func DefaultConfig(n int) Config {
	return Config{
		Network: "local", Nodes: n, Degree: 8, Latency: 10 * time.Millisecond, Seed: 1,
		Publishers: 20, Spread: time.Second, Deadline: 5 * time.Second,
		Providers: 50, Models: 10, Lookups: 100,
		Joins: 5,
	}
}

// Validate checks that the simulation can be built.
func (c Config) Validate() error {
	switch {
	case c.Nodes < 4:
		return fmt.Errorf("nodes: %d, want at least 4", c.Nodes)
	case c.Degree < 1 || c.Degree >= c.Nodes:
		return fmt.Errorf("degree: %d, want 1 to %d", c.Degree, c.Nodes-1)
	case c.Publishers < 1 || c.Publishers > c.Nodes:
		return fmt.Errorf("publishers: %d, want 1 to %d", c.Publishers, c.Nodes)
	case c.Deadline <= 0 || c.Spread < 0 || c.Latency < 0:
		return errors.New("deadline must be positive, spread and latency not negative")
	case c.DHTServers < 0 || c.DHTServers > c.Nodes:
		return fmt.Errorf("dht servers: %d, want 0 (default) to %d", c.DHTServers, c.Nodes)
	case c.Providers < 0 || c.Models < 2 || c.Lookups < 0 || c.Joins < 0:
		return errors.New("providers, lookups and joins must not be negative, models at least 2")
	}
	return nil
}

// servers is how many nodes run the DHT in server mode.
func (c Config) servers() int {
	if c.DHTServers > 0 {
		return c.DHTServers
	}
	return min(c.Nodes, max(10, c.Nodes/10))
}

// Result is what a whole run measured.
type Result struct {
	Nodes  int           `json:"nodes"`
	Edges  int           `json:"edges"`       // gossip connections between honest nodes
	Setup  time.Duration `json:"setup_ns"`    // hosts, gossip, links and connections
	Mesh   time.Duration `json:"mesh_ns"`     // then until every node's mesh was formed
	Gossip GossipResult  `json:"gossip"`      // ...
	Attack AttackResult  `json:"attack"`      //
	DHT    DHTResult     `json:"dht"`         //
	Join   JoinResult    `json:"join"`        //
	Took   time.Duration `json:"took_ns"`     // the whole run, closing included
	CPU    time.Duration `json:"cpu_time_ns"` // process CPU time over the run
}

// Dist summarises durations.
type Dist struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func summarize(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p int) time.Duration { return s[min(len(s)-1, (len(s)*p+99)/100-1)] } // nearest rank
	return Dist{N: len(s), P50: at(50), P99: at(99), Max: s[len(s)-1]}
}

// node is one simulated peer.
type node struct {
	h      host.Host
	key    crypto.PrivKey
	book   *offers.Book
	gossip *offers.Gossip     // nil once stopped for the DHT phase
	mesh   atomic.Int32       // peers in its offers mesh, counted by its tracer
	dht    *dht.DHT           // nil until the DHT phase, and for nodes that never join it
	svc    *p2p.Service       // joined workers: the ping protocol
	sub    event.Subscription // the offers it accepted, for the recorder
}

// Sim is a running simulation.
type Sim struct {
	cfg   Config
	log   *slog.Logger
	rng   *mrand.Rand
	mn    mocknet.Mocknet
	rec   *recorder
	nodes []*node // the honest nodes first, then the workers that joined
	adj   [][]int // the gossip graph between honest nodes
	evil  *attacker
	hosts atomic.Int32 // hosts made, for their addresses

	subs   sync.WaitGroup // the goroutines reading nodes' accepted offers
	linkMu sync.Mutex     // guards linked
	linked map[[2]peer.ID]bool

	result Result
}

// New builds the network: cfg.Nodes hosts each running offers.Gossip, and
// the attacker, connected in a random graph; it returns once every node's
// gossip mesh has formed (a message published earlier could be lost).
func New(ctx context.Context, cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sim{
		cfg: cfg, log: log, rng: mrand.New(mrand.NewPCG(cfg.Seed, 0x5ca1e)), mn: mocknet.New(),
		rec: newRecorder(), linked: make(map[[2]peer.ID]bool),
	}
	s.mn.SetLinkDefaults(mocknet.LinkOptions{Latency: cfg.Latency})
	t0 := time.Now()
	if err := s.build(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.result.Setup = time.Since(t0)
	t0 = time.Now()
	if err := s.awaitMesh(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.result.Mesh = time.Since(t0)
	return s, nil
}

func (s *Sim) build(ctx context.Context) error {
	for range s.cfg.Nodes {
		if _, err := s.addNode(); err != nil {
			return err
		}
	}
	var err error
	if s.evil, err = s.newAttacker(ctx); err != nil {
		return err
	}
	s.adj = randomGraph(s.rng, s.cfg.Nodes, s.cfg.Degree)
	var pairs [][2]host.Host
	for i, ns := range s.adj {
		for _, j := range ns {
			if i < j {
				pairs = append(pairs, [2]host.Host{s.nodes[i].h, s.nodes[j].h})
			}
		}
	}
	s.result.Nodes, s.result.Edges = s.cfg.Nodes, len(pairs)
	for _, j := range s.sample(s.cfg.Nodes, s.cfg.Degree) {
		s.evil.neighbours = append(s.evil.neighbours, j)
		pairs = append(pairs, [2]host.Host{s.evil.h, s.nodes[j].h})
	}
	return s.connect(ctx, pairs)
}

// addNode starts a host and its gossip; its index is its place in s.nodes.
func (s *Sim) addNode() (*node, error) {
	h, key, err := s.newHost()
	if err != nil {
		return nil, err
	}
	n := &node{h: h, key: key, book: offers.NewBook(nil)}
	i := len(s.nodes)
	opts := append([]pubsub.Option{pubsub.WithRawTracer(meshTracer{&n.mesh})}, s.cfg.Tuning...)
	// Delivery is timed by when each offer entered the book, which the
	// event carries; reading it later does not change the figure.
	sub, err := h.EventBus().Subscribe(new(offers.EvtOfferAccepted), eventbus.BufSize(1024))
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", i, err)
	}
	n.sub = sub
	s.subs.Go(func() {
		for e := range sub.Out() {
			ev := e.(offers.EvtOfferAccepted)
			s.rec.accepted(i, ev.From, ev.Offer.Seq, ev.At)
		}
	})
	n.gossip, err = offers.StartGossip(h, offers.GossipConfig{Network: s.cfg.Network, Options: opts}, n.book, s.log)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", i, err)
	}
	s.nodes = append(s.nodes, n)
	return n, nil
}

// newHost adds a mocknet host with an Ed25519 key: offers are signed with
// the peer's own key, which an Ed25519 peer ID carries.
func (s *Sim) newHost() (host.Host, crypto.PrivKey, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	// Mocknet routes by peer ID; the address only has to be unique.
	c := s.hosts.Add(1)
	addr, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4242", c>>16&255, c>>8&255, c&255))
	if err != nil {
		return nil, nil, err
	}
	h, err := s.mn.AddPeer(key, addr)
	if err != nil {
		return nil, nil, fmt.Errorf("adding a mocknet peer: %w", err)
	}
	return h, key, nil
}

// link lets a and b connect, once.
func (s *Sim) link(a, b peer.ID) error {
	k := [2]peer.ID{min(a, b), max(a, b)}
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if s.linked[k] {
		return nil
	}
	if _, err := s.mn.LinkPeers(a, b); err != nil {
		return err
	}
	s.linked[k] = true
	return nil
}

// connect links and connects each pair, a few at a time.
func (s *Sim) connect(ctx context.Context, pairs [][2]host.Host) error {
	for _, p := range pairs {
		if err := s.link(p[0].ID(), p[1].ID()); err != nil {
			return err
		}
	}
	return parallel(ctx, len(pairs), 16, func(ctx context.Context, i int) error {
		a, b := pairs[i][0], pairs[i][1]
		if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
			return fmt.Errorf("connecting %s to %s: %w", a.ID(), b.ID(), err)
		}
		return nil
	})
}

// awaitMesh waits until every honest node has MeshMin peers in its offers
// mesh (or as many as it has neighbours), and the attacker's neighbours
// know it subscribes to the topic.
func (s *Sim) awaitMesh(ctx context.Context) error {
	meshMin := s.cfg.MeshMin
	if meshMin == 0 {
		meshMin = pubsub.GossipSubDlo - 1 // its heartbeat grafts up to Dlo
	}
	return poll(ctx, 30*time.Second, "every node's gossip mesh", func() bool {
		for i, n := range s.nodes[:s.cfg.Nodes] {
			if int(n.mesh.Load()) < min(meshMin, len(s.adj[i])) {
				return false
			}
		}
		return len(s.evil.topic.ListPeers()) >= len(s.evil.neighbours)
	})
}

// Run builds a network of cfg and runs every phase.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	t0, cpu0 := time.Now(), procstat.SelfCPU()
	s, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.log.Info("network up", "nodes", cfg.Nodes, "setup", s.result.Setup, "mesh", s.result.Mesh)
	for _, p := range []struct {
		name string
		run  func(context.Context) error
	}{{"gossip", s.Gossip}, {"attack", s.Attack}, {"join", s.Join}, {"dht", s.DHT}} {
		t := time.Now()
		if err := p.run(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		s.log.Info("phase done", "phase", p.name, "took", time.Since(t).Round(time.Millisecond))
	}
	s.Close()
	r := s.Result()
	r.Took, r.CPU = time.Since(t0), procstat.SelfCPU()-cpu0
	return &r, nil
}

// Result is what the phases run so far measured.
func (s *Sim) Result() Result { return s.result }

// Close stops every node. It may be called more than once.
func (s *Sim) Close() {
	if s.mn == nil {
		return
	}
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		wg.Go(func() {
			if n.svc != nil {
				n.svc.Close()
			}
			if n.dht != nil {
				n.dht.Close()
			}
			if n.gossip != nil {
				n.gossip.Close()
			}
		})
	}
	wg.Wait()
	for _, n := range s.nodes {
		if n.sub != nil {
			n.sub.Close()
		}
	}
	s.subs.Wait()
	if s.evil != nil {
		s.evil.close()
	}
	s.mn.Close()
	s.mn = nil
}

// randomGraph connects n nodes so that each has at least degree
// neighbours: a random tree first, so the graph is connected, then random
// edges between nodes still short of degree.
func randomGraph(rng *mrand.Rand, n, degree int) [][]int {
	adj := make([][]int, n)
	has := make(map[[2]int]bool)
	add := func(a, b int) {
		if a == b || has[[2]int{min(a, b), max(a, b)}] {
			return
		}
		has[[2]int{min(a, b), max(a, b)}] = true
		adj[a] = append(adj[a], b)
		adj[b] = append(adj[b], a)
	}
	for i := 1; i < n; i++ {
		add(i, rng.IntN(i))
	}
	for i := range n {
		for tries := 0; len(adj[i]) < degree && tries < 100*degree; tries++ {
			if j := rng.IntN(n); len(adj[j]) < degree+degree/2 {
				add(i, j)
			}
		}
	}
	return adj
}

// sample picks k distinct numbers under n.
func (s *Sim) sample(n, k int) []int {
	return s.rng.Perm(n)[:k]
}

// parallel runs fn(0..n-1), at most conc at once, and returns the first
// error; the calls still running get a cancelled context then.
func parallel(ctx context.Context, n, conc int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	sem := make(chan struct{}, conc)
loop:
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// poll waits until cond holds, checking it every few milliseconds, for
// conditions nothing signals; it fails after timeout.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("%w: %s", errTimeout, what)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// errTimeout is a wait that ran out of time.
var errTimeout = errors.New("timed out waiting for")
