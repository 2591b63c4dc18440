// Package testnet brings up a whole Cocoon network on 127.0.0.1 in one
// process: proxies, workers and clients as real nodes with real libp2p
// hosts. `cocoon testnet` runs it for people; tests use the same harness
// through New, which ties every node's life to the test.
package testnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cocoon-mesh/cocoon/chain/sandbox"
	"github.com/cocoon-mesh/cocoon/inference/backend/sim"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// Net is a local network being assembled. Add workers first, then proxies
// (which are told about every worker added so far), then clients (told
// about every proxy).
type Net struct {
	dir     string
	network string
	log     *slog.Logger

	// chain, when set, is the sandbox chain with the root contract: nodes
	// find each other only through it, never through flags.
	chain *Chain
	// payments, when set, turns payments on in every node added from now
	// on, each with a wallet funded from the sandbox's faucet.
	payments bool

	mu       sync.Mutex          // guards the node lists
	unlisted map[*node.Node]bool // proxies kept out of the root contract
	workers  []*node.Node
	proxies  []*node.Node
	clients  []*node.Node
}

// NewNet makes an empty network whose nodes keep their data under dir.
func NewNet(dir string, log *slog.Logger) *Net {
	return &Net{dir: dir, network: "local", log: log, unlisted: make(map[*node.Node]bool)}
}

// UseChain makes every node added from now on find the others only through
// c's root contract: no peer addresses are passed to nodes, and each proxy
// is added to the contract's bootstrap list as it starts. The network owns
// c from then on: Close closes it.
func (n *Net) UseChain(c *Chain) { n.chain = c }

// RefreshRegistry has every node read the root contract now, as each
// would at its next refresh interval.
func (n *Net) RefreshRegistry(ctx context.Context) error {
	n.mu.Lock()
	all := append(append(slices.Clone(n.workers), n.proxies...), n.clients...)
	n.mu.Unlock()
	for _, nd := range all {
		if err := nd.RefreshRegistry(ctx); err != nil {
			return err
		}
	}
	return nil
}

// EnablePayments turns payments on for every node added from now on: each
// gets a wallet on the chain funded from the sandbox's faucet, clients and
// proxies open channels on their own, and every answer moves their states.
// It needs the chain (UseChain).
func (n *Net) EnablePayments() error {
	if n.chain == nil {
		return errors.New("payments need the sandbox chain")
	}
	n.payments = true
	return nil
}

// Funding is what each role's wallet gets from the faucet when payments
// are on, in nanoTON: a client's covers its channel to a proxy, a proxy's
// one channel per worker.
var Funding = map[config.Role]int64{config.RoleClient: 10_000_000_000, config.RoleProxy: 20_000_000_000, config.RoleWorker: 1_000_000_000}

// fund sends a node's wallet its Funding, before the node starts.
func (n *Net) fund(ctx context.Context, cfg config.Config) error {
	key, err := ton.LoadKey(cfg.DataDir)
	if err != nil {
		return err
	}
	w, err := ton.NewWallet(key, n.chain.Sandbox, ton.WalletConfig{NetworkID: node.WalletNetworkID(cfg.Network)})
	if err != nil {
		return err
	}
	return n.chain.Sandbox.Fund(ctx, w.Address(), big.NewInt(Funding[cfg.Role]))
}

// Chain is the network's chain, or nil.
func (n *Net) Chain() *Chain { return n.chain }

// Modify changes a node's configuration before it starts.
type Modify func(*config.Config)

func (n *Net) start(ctx context.Context, role config.Role, mods []Modify, opts []node.Option) (*node.Node, error) {
	return n.startListed(ctx, role, true, mods, opts)
}

// startListed starts a node; a proxy on a network with a chain is listed
// in the root contract only if listed is true.
func (n *Net) startListed(ctx context.Context, role config.Role, listed bool, mods []Modify, opts []node.Option) (*node.Node, error) {
	cfg := config.Default(role)
	cfg.Network = n.network
	cfg.Gossip.AnnounceInterval = config.Duration(time.Second)
	n.mu.Lock()
	idx := len(n.workers) + len(n.proxies) + len(n.clients)
	static := n.chain == nil
	if !static {
		cfg.Discovery.Root = n.chain.Root.StringRaw()
		cfg.Discovery.LookupInterval = config.Duration(time.Second)
		opts = append(opts, node.WithChain(n.chain.Sandbox))
	}
	switch role {
	case config.RoleWorker:
		cfg.Worker.CheckInterval = config.Duration(time.Second)
	case config.RoleProxy:
		for _, w := range n.workers {
			if static {
				cfg.Proxy.Workers = append(cfg.Proxy.Workers, w.Addrs()...)
			}
		}
		cfg.Proxy.CheckInterval = config.Duration(time.Second)
	case config.RoleClient:
		for _, p := range n.proxies {
			if static {
				cfg.Client.Proxies = append(cfg.Client.Proxies, p.Addrs()...)
			}
		}
		cfg.Client.CheckInterval = config.Duration(time.Second)
		cfg.Client.APIAddr = "127.0.0.1:0"
		cfg.P2P.Listen = nil
	}
	n.mu.Unlock()
	cfg.DataDir = filepath.Join(n.dir, fmt.Sprintf("%s-%d", role, idx))
	if n.payments {
		cfg.Payments.Enabled = true
	}
	for _, m := range mods {
		m(&cfg)
	}
	if n.payments && cfg.Payments.Enabled {
		if err := n.fund(ctx, cfg); err != nil {
			return nil, fmt.Errorf("funding the wallet: %w", err)
		}
	}
	nd, err := node.New(cfg, n.log.With("node", fmt.Sprintf("%s-%d", role, idx)), opts...)
	if err != nil {
		return nil, err
	}
	if err := nd.Start(ctx); err != nil {
		return nil, err
	}
	n.mu.Lock()
	switch role {
	case config.RoleWorker:
		n.workers = append(n.workers, nd)
	case config.RoleProxy:
		n.proxies = append(n.proxies, nd)
	case config.RoleClient:
		n.clients = append(n.clients, nd)
	}
	proxies := slices.DeleteFunc(slices.Clone(n.proxies), func(p *node.Node) bool { return n.unlisted[p] })
	if !listed {
		n.unlisted[nd] = true
	}
	all := append(append(slices.Clone(n.workers), proxies...), n.clients...)
	n.mu.Unlock()
	if role == config.RoleProxy && !static && listed {
		// The operator lists the new proxy in the root contract; running
		// nodes would read it at their next refresh, and are told now.
		if err := n.chain.SetBootstrap(ctx, proxies); err != nil {
			return nil, err
		}
		for _, other := range all {
			if err := other.RefreshRegistry(ctx); err != nil {
				return nil, err
			}
		}
	}
	return nd, nil
}

// AddWorker starts a worker (sim backend unless mods or opts say otherwise).
func (n *Net) AddWorker(ctx context.Context, mods []Modify, opts ...node.Option) (*node.Node, error) {
	return n.start(ctx, config.RoleWorker, mods, opts)
}

// AddProxy starts a proxy that knows every worker added so far.
func (n *Net) AddProxy(ctx context.Context, mods ...Modify) (*node.Node, error) {
	return n.start(ctx, config.RoleProxy, mods, nil)
}

// AddProxyUnlisted starts a proxy that the root contract does not list:
// others can find it only through the DHT (mods may give it bootstrap
// peers). Without a chain it is AddProxy.
func (n *Net) AddProxyUnlisted(ctx context.Context, mods ...Modify) (*node.Node, error) {
	return n.startListed(ctx, config.RoleProxy, false, mods, nil)
}

// AddClient starts a client that knows every proxy added so far, its API
// on a free loopback port unless mods say otherwise.
func (n *Net) AddClient(ctx context.Context, mods ...Modify) (*node.Node, error) {
	return n.start(ctx, config.RoleClient, mods, nil)
}

// AddNode starts a node of role with node options, as AddWorker,
// AddProxy and AddClient do without them: tests give nodes synthetic TDX
// evidence and a fake Intel this way.
func (n *Net) AddNode(ctx context.Context, role config.Role, mods []Modify, opts ...node.Option) (*node.Node, error) {
	return n.start(ctx, role, mods, opts)
}

// WaitReady waits until nd is ready (see node.Node.Ready) or ctx ends.
func WaitReady(ctx context.Context, nd *node.Node) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if nd.Ready(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be ready: %w", nd.ID(), ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops every node, clients first.
func (n *Net) Close() {
	n.mu.Lock()
	all := append(append(append([]*node.Node{}, n.clients...), n.proxies...), n.workers...)
	n.mu.Unlock()
	for _, nd := range all {
		nd.Close()
	}
	if n.chain != nil {
		n.chain.Close()
	}
}

// Options shape a network started by Start.
type Options struct {
	Workers    int    // sim workers unless BackendURL is set
	BackendURL string // an OpenAI-compatible engine every worker serves
	Models     []string
	APIAddr    string // the client's API address
	Dir        string // data dirs; a temporary one if empty
	Worker     []Modify
	Progress   func(string) // called at each step, for people watching
	// Static skips the chain: nodes are told each other's addresses
	// instead of finding them through the root contract. For machines
	// without Node.js. It implies NoPayments.
	Static bool
	// NoPayments leaves payments off on a network with a chain.
	NoPayments bool
}

// Started is a network brought up by Start.
type Started struct {
	*Net
	Client *node.Node
	Proxy  *node.Node
	tmp    string
}

// Start brings up one proxy, opts.Workers workers and one client, and waits
// until the client serves.
func Start(ctx context.Context, opts Options, log *slog.Logger) (*Started, error) {
	if opts.Workers < 1 {
		return nil, fmt.Errorf("workers: %d must be at least 1", opts.Workers)
	}
	if opts.Progress == nil {
		opts.Progress = func(string) {}
	}
	s := &Started{}
	dir := opts.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "cocoon-testnet-")
		if err != nil {
			return nil, err
		}
		dir, s.tmp = tmp, tmp
	}
	s.Net = NewNet(dir, log)
	if err := s.start(ctx, opts, log); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// start brings up the chain (unless static), the proxy, the workers and
// the client, in the order each needs the others, and waits until the
// client can answer.
func (s *Started) start(ctx context.Context, opts Options, log *slog.Logger) error {
	progress := opts.Progress
	if opts.Static {
		// Workers first: the proxy is told their addresses.
		if err := s.addWorkers(ctx, opts); err != nil {
			return err
		}
	} else if err := s.startChain(ctx, opts, log); err != nil {
		return err
	}
	p, err := s.AddProxy(ctx)
	if err != nil {
		return fmt.Errorf("starting proxy: %w", err)
	}
	s.Proxy = p
	if opts.Static {
		progress(fmt.Sprintf("proxy up: %s", p.ID()))
	} else {
		progress(fmt.Sprintf("proxy up and listed in the root contract: %s", p.ID()))
		if err := s.addWorkers(ctx, opts); err != nil {
			return err
		}
	}
	c, err := s.AddClient(ctx, func(c *config.Config) {
		if opts.APIAddr != "" {
			c.Client.APIAddr = opts.APIAddr
		}
	})
	if err != nil {
		return fmt.Errorf("starting client: %w", err)
	}
	s.Client = c
	if s.payments {
		progress(fmt.Sprintf("client up: %s, waiting for it to reach the proxy, see models and open its payment channel", c.ID()))
	} else {
		progress(fmt.Sprintf("client up: %s, waiting for it to reach the proxy and see models", c.ID()))
	}
	return s.waitUp(ctx, progress)
}

// addWorkers starts opts.Workers workers, in front of opts.BackendURL's
// engine or the simulator.
func (s *Started) addWorkers(ctx context.Context, opts Options) error {
	wmods := append([]Modify{}, opts.Worker...)
	if opts.BackendURL != "" {
		wmods = append(wmods, func(c *config.Config) {
			c.Worker.Backend = "openai"
			c.Worker.OpenAI.URL = opts.BackendURL
			c.Worker.OpenAI.Models = opts.Models
		})
	} else if len(opts.Models) > 0 {
		wmods = append(wmods, func(c *config.Config) { c.Worker.Sim.Models = opts.Models })
	}
	for i := range opts.Workers {
		w, err := s.AddWorker(ctx, wmods)
		if err != nil {
			return fmt.Errorf("starting worker %d: %w", i, err)
		}
		opts.Progress(fmt.Sprintf("worker %d/%d up: %s", i+1, opts.Workers, w.ID()))
	}
	return nil
}

// startChain starts the sandbox chain with the root contract, and funds
// the nodes' wallets unless payments are off.
func (s *Started) startChain(ctx context.Context, opts Options, log *slog.Logger) error {
	if sandbox.Installed(sandbox.Config{}) {
		opts.Progress("starting the sandbox chain")
	} else {
		opts.Progress("starting the sandbox chain: installing its npm packages into ~/.cache/cocoon first (once, about 10 to 60 s)")
	}
	models := opts.Models
	if len(models) == 0 && opts.BackendURL == "" {
		models = sim.DefaultConfig().Models
	}
	c, err := StartChain(ctx, s.network, models, log)
	if err != nil {
		return err
	}
	s.UseChain(c)
	opts.Progress(fmt.Sprintf("root contract deployed at %s", c.Root.StringRaw()))
	if opts.NoPayments {
		return nil
	}
	if err := s.EnablePayments(); err != nil {
		return err
	}
	opts.Progress(fmt.Sprintf("payments on: wallets funded from the sandbox faucet (client %s, proxy %s, each worker %s); channels open on their own",
		TON(Funding[config.RoleClient]), TON(Funding[config.RoleProxy]), TON(Funding[config.RoleWorker])))
	return nil
}

// waitUp waits, for at most 30 s, until the client is ready and, with
// payments, the proxy too, then shows the channels opened.
func (s *Started) waitUp(ctx context.Context, progress func(string)) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := WaitReady(wctx, s.Client); err != nil {
		return err
	}
	if !s.payments {
		return nil
	}
	// The proxy's channels to the workers open alongside.
	if err := WaitReady(wctx, s.Proxy); err != nil {
		return err
	}
	for _, nd := range []*node.Node{s.Client, s.Proxy} {
		for _, ch := range nd.Channels().List() {
			if ch.Payer && ch.State == "open" {
				progress(fmt.Sprintf("payment channel %s -> %s open at %s, deposit %s", nd.Role(), shortID(ch.Peer.String()),
					ch.Address, TON(int64(ch.Deposit))))
			}
		}
	}
	return nil
}

// TON formats nanoTON as TON.
func TON(nano int64) string {
	return fmt.Sprintf("%d.%09d TON", nano/1_000_000_000, nano%1_000_000_000)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:4] + ".." + id[len(id)-6:]
	}
	return id
}

// Payments sums up what every node of the network spent and earned, as
// their channels' signed states say; empty without payments.
func (n *Net) Payments() string {
	if !n.payments {
		return ""
	}
	n.mu.Lock()
	clients, proxies, workers := slices.Clone(n.clients), slices.Clone(n.proxies), slices.Clone(n.workers)
	n.mu.Unlock()
	var spent, proxyIn, proxyOut, earned int64
	for _, c := range clients {
		s, _ := c.Channels().Totals()
		spent += int64(s)
	}
	for _, p := range proxies {
		s, e := p.Channels().Totals()
		proxyIn += int64(e)
		proxyOut += int64(s)
	}
	for _, w := range workers {
		if m := w.Channels(); m != nil {
			_, e := m.Totals()
			earned += int64(e)
		}
	}
	return fmt.Sprintf("clients spent %d nanoTON; proxies received %d and paid workers %d (fees %d); workers earned %d",
		spent, proxyIn, proxyOut, proxyIn-proxyOut, earned)
}

// Dashboard is where one node of the network shows its web dashboard.
type Dashboard struct {
	Node string // the node's role and number among its role: "worker 2"
	URL  string
}

// Dashboards lists the web dashboard of every node that serves one:
// proxies, then workers, then clients.
func (n *Net) Dashboards() []Dashboard {
	n.mu.Lock()
	groups := [][]*node.Node{slices.Clone(n.proxies), slices.Clone(n.workers), slices.Clone(n.clients)}
	n.mu.Unlock()
	var out []Dashboard
	for _, g := range groups {
		for i, nd := range g {
			if u := nd.DashboardURL(); u != "" {
				out = append(out, Dashboard{Node: fmt.Sprintf("%s %d", nd.Role(), i+1), URL: u})
			}
		}
	}
	return out
}

// Close stops the network and removes a temporary data dir.
func (s *Started) Close() {
	s.Net.Close()
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}
