package scale

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/discovery/dht"
)

// DHTResult is what the DHT phase measured.
type DHTResult struct {
	Servers       int           `json:"servers"`   // proxies: DHT server mode
	Clients       int           `json:"clients"`   // everyone else: client mode
	Join          time.Duration `json:"join_ns"`   // until every routing table was filled
	Providers     int           `json:"providers"` // workers that provided two models each
	Provide       Dist          `json:"provide"`   // one ProvideModel call
	ProvideErrors int           `json:"provide_errors"`
	Lookups       int           `json:"lookups"`
	Found         int           `json:"found"` // lookups that returned a worker serving the model
	Ratio         float64       `json:"found_ratio"`
	Latency       Dist          `json:"find_model"` // FindModel for the first provider, every lookup
}

// DHT starts the DHT on every node: the first servers() nodes in server
// mode (proxies; the graph is random, so any are as good), the others as
// clients, each joining through three proxies, as nodes join through the
// bootstrap proxies of the root contract. It stops gossip first, so it
// must be the last phase. Then cfg.Providers
// clients provide two models each, and cfg.Lookups lookups from random
// other clients look for one worker serving a random model.
func (s *Sim) DHT(ctx context.Context) error {
	cfg := s.cfg
	servers := cfg.servers()
	catalogue := models[:min(cfg.Models, len(models))]
	r := DHTResult{Servers: servers, Clients: cfg.Nodes - servers}

	s.stopGossip()
	if err := s.linkServers(servers); err != nil {
		return err
	}
	boots := s.bootstraps(servers)
	t0 := time.Now()
	if err := s.joinDHT(ctx, servers, boots); err != nil {
		return err
	}
	r.Join = time.Since(t0)

	clients := s.rng.Perm(cfg.Nodes - servers)
	r.Providers = min(cfg.Providers, len(clients))
	providers, askers := clients[:r.Providers], clients[r.Providers:]
	serves, err := s.provideModels(ctx, &r, providers, catalogue)
	if err != nil {
		return err
	}
	if len(askers) == 0 || len(providers) == 0 {
		s.result.DHT = r
		return nil
	}
	if err := s.lookUpModels(ctx, &r, askers, len(providers), catalogue, serves); err != nil {
		return err
	}
	s.result.DHT = r
	return nil
}

// stopGossip closes every node's gossip (see the package doc: every DHT
// connection would also be a gossip peer).
func (s *Sim) stopGossip() {
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		if n.gossip != nil {
			wg.Go(n.gossip.Close)
		}
	}
	wg.Wait()
	for _, n := range s.nodes {
		n.gossip = nil
	}
}

// linkServers lets any honest node dial any of the first servers nodes,
// as any node can reach a proxy.
func (s *Sim) linkServers(servers int) error {
	for i := range servers {
		for j := range s.cfg.Nodes {
			if i != j {
				if err := s.link(s.nodes[i].h.ID(), s.nodes[j].h.ID()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// bootstraps is, for each honest node, the three proxies it joins the DHT
// through: the first three for the first servers, then three random ones
// of those already up, as if the root contract listed every proxy.
func (s *Sim) bootstraps(servers int) [][]peer.AddrInfo {
	info := func(i int) peer.AddrInfo { return peer.AddrInfo{ID: s.nodes[i].h.ID(), Addrs: s.nodes[i].h.Addrs()} }
	boots := make([][]peer.AddrInfo, s.cfg.Nodes)
	for i := range s.cfg.Nodes {
		switch {
		case i < min(3, servers):
			for j := range i {
				boots[i] = append(boots[i], info(j))
			}
		case i < servers:
			for j := range 3 {
				boots[i] = append(boots[i], info(j))
			}
		default:
			for _, j := range s.sample(servers, min(3, servers)) {
				boots[i] = append(boots[i], info(j))
			}
		}
	}
	return boots
}

// joinDHT starts the DHT on every honest node through its bootstrap
// proxies: the first three servers one after the other, then the other
// servers, and once the servers' routing tables are filled, the clients;
// it returns when every client's routing table holds a peer.
func (s *Sim) joinDHT(ctx context.Context, servers int, boots [][]peer.AddrInfo) error {
	cfg := s.cfg
	start := func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		d, err := dht.Start(ctx, s.nodes[i].h, dht.Config{Network: cfg.Network, Server: i < servers, Bootstrap: boots[i]})
		if err != nil {
			return fmt.Errorf("node %d joining the DHT: %w", i, err)
		}
		s.nodes[i].dht = d
		return nil
	}
	first := min(3, servers)
	for i := range first {
		if err := start(ctx, i); err != nil {
			return err
		}
	}
	if err := parallel(ctx, servers-first, 8, func(ctx context.Context, k int) error { return start(ctx, first+k) }); err != nil {
		return err
	}
	if err := poll(ctx, time.Minute, "the servers' routing tables", s.tablesFilled(0, servers, min(servers-1, 10))); err != nil {
		return err
	}
	if err := parallel(ctx, cfg.Nodes-servers, 16, func(ctx context.Context, k int) error { return start(ctx, servers+k) }); err != nil {
		return err
	}
	return poll(ctx, time.Minute, "the clients' routing tables", s.tablesFilled(servers, cfg.Nodes, 1))
}

// tablesFilled reports whether the routing tables of nodes from to to
// each hold at least want peers.
func (s *Sim) tablesFilled(from, to, want int) func() bool {
	return func() bool {
		for _, n := range s.nodes[from:to] {
			if n.dht.RoutingTableSize() < want {
				return false
			}
		}
		return true
	}
}

// servedBy is the two models the k-th provider serves.
func servedBy(catalogue []string, k int) []string {
	return []string{catalogue[k%len(catalogue)], catalogue[(k+1)%len(catalogue)]}
}

// provideModels has each provider (a client, by its index among the
// clients) provide its two models, recording the calls' times and failures
// in r; it returns which workers serve each model.
func (s *Sim) provideModels(ctx context.Context, r *DHTResult, providers []int, catalogue []string) (map[string]map[peer.ID]bool, error) {
	var (
		mu       sync.Mutex // guards provides and r.ProvideErrors
		provides []time.Duration
	)
	err := parallel(ctx, len(providers), 16, func(ctx context.Context, k int) error {
		n := s.nodes[r.Servers+providers[k]]
		for _, m := range servedBy(catalogue, k) {
			t := time.Now()
			err := n.dht.ProvideModel(ctx, m)
			mu.Lock()
			if err != nil {
				r.ProvideErrors++
			} else {
				provides = append(provides, time.Since(t))
			}
			mu.Unlock()
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	r.Provide = summarize(provides)
	serves := make(map[string]map[peer.ID]bool)
	for k, p := range providers {
		for _, m := range servedBy(catalogue, k) {
			if serves[m] == nil {
				serves[m] = make(map[peer.ID]bool)
			}
			serves[m][s.nodes[r.Servers+p].h.ID()] = true
		}
	}
	return serves, nil
}

// lookUpModels has random askers (clients, by their index among the
// clients) look for one worker serving a model that one of the providers
// serves, cfg.Lookups times, and records in r how many found one and how
// long the lookups took.
func (s *Sim) lookUpModels(ctx context.Context, r *DHTResult, askers []int, providers int, catalogue []string, serves map[string]map[peer.ID]bool) error {
	type lookup struct {
		node  int
		model string
	}
	plan := make([]lookup, s.cfg.Lookups) // models someone serves
	for k := range plan {
		plan[k] = lookup{r.Servers + askers[s.rng.IntN(len(askers))], catalogue[s.rng.IntN(min(len(catalogue), providers+1))]}
	}
	var (
		mu    sync.Mutex // guards finds and r.Found
		finds []time.Duration
	)
	err := parallel(ctx, len(plan), 8, func(ctx context.Context, k int) error {
		l := plan[k]
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t := time.Now()
		found := s.nodes[l.node].dht.FindModel(fctx, l.model, 1)
		took := time.Since(t)
		cancel()
		mu.Lock()
		defer mu.Unlock()
		finds = append(finds, took)
		if len(found) > 0 && serves[l.model][found[0].ID] {
			r.Found++
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	r.Lookups = len(plan)
	r.Ratio = float64(r.Found) / float64(r.Lookups)
	r.Latency = summarize(finds)
	return nil
}
