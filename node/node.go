// Package node assembles a role from the domain packages: it is the only
// package that imports them all, and the only one cmd and testnet import.
// It holds wiring only: what a node shares whatever its role (identity,
// host, attestation, root contract, DHT, payments, admin API) here, and
// each role's parts in a type of its own (worker.go, proxy.go,
// client.go). The one switch on Role is newRole.
package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments/channels"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// Node is one running Cocoon node.
type Node struct {
	cfg      config.Config
	log      *slog.Logger
	opts     options
	requests *metrics.Requests // what the node measured of the requests it sent or served, for /metrics

	// Set by Start.
	h     host.Host
	relay *p2p.Relay // a proxy's relay service; nil in other roles
	sv    *p2p.Service
	hs    *attest.Handshaker
	kinds *attest.Kinds // the evidence kinds this node accepts from peers
	keys  *seal.Keyring // a worker's sealing keys, in memory only; nil in other roles
	disc  *discoveryParts
	pay   *payState // nil without payments
	role  role
	admin *admin.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	reloadMu sync.Mutex    // one Reload at a time
	live     config.Config // the configuration as the last Reload applied it; guarded by reloadMu
}

// options are what Options change.
type options struct {
	backend inference.Backend // a worker's engine; from its config if nil
	chain   chain.Chain       // the chain the root contract is read from; a lite client if nil
	issuer  attest.Issuer     // the node's evidence; from attest.issuer if nil
	pcs     tdx.Getter        // how the node reaches Intel PCS; HTTPS if nil
	clear   bool              // a client sends requests in the clear (benchmarks only)
	payLate time.Duration     // a payer's batch beyond what payments.batch allows (tests only)
	now     func() time.Time  // the attestation clock; time.Now if nil
	// reload reads the configuration again (WithReload); backendFixed:
	// the backend came from WithBackend, so a reload does not replace it.
	reload       func() (config.Config, error)
	backendFixed bool
}

// Option changes how New assembles a node.
type Option func(*options)

// WithBackend makes a worker serve b instead of the backend its config
// names. Tests and benchmarks use it to put fakes behind a real worker.
func WithBackend(b inference.Backend) Option {
	return func(o *options) { o.backend, o.backendFixed = b, true }
}

// WithChain makes the node read its root contract through c instead of a
// lite client built from discovery.global_config. `cocoon testnet` and the
// tests pass the sandbox chain.
func WithChain(c chain.Chain) Option { return func(o *options) { o.chain = c } }

// WithIssuer makes the node present the evidence issuer makes instead of
// the one attest.issuer names (which must not be none). Tests pass
// synthetic TDX quotes under a test root (attest/tdx/tdxtest).
func WithIssuer(issuer attest.Issuer) Option { return func(o *options) { o.issuer = issuer } }

// WithIntelPCS makes the node fetch Intel's collateral through g instead
// of HTTPS to Intel PCS: tests pass a fake Intel, or one that cannot be
// reached.
func WithIntelPCS(g tdx.Getter) Option { return func(o *options) { o.pcs = g } }

// WithClock makes the node's attestation read the time from now instead
// of time.Now: its own evidence's expiry and renewal, and its verdicts'
// expiry. Tests move it to reach a renewal or an expiry without waiting.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithoutSealing makes a client send requests in the clear, which every
// proxy on the way reads, as before requests were sealed end to end. It
// exists for `make bench`, to measure what sealing costs beside it; no
// configuration or flag reaches it.
func WithoutSealing() Option { return func(o *options) { o.clear = true } }

// WithPaymentsLate makes a payer gather its payments for d before it signs
// them, beyond the second payments.batch allows: a client that pays late,
// as a hostile or broken one could, for the tests of what its debt costs
// others. No configuration or flag reaches it.
func WithPaymentsLate(d time.Duration) Option { return func(o *options) { o.payLate = d } }

// New checks cfg and prepares a node; it starts nothing.
func New(cfg config.Config, log *slog.Logger, opts ...Option) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tdx.TestRootBuild && cfg.Network != "local" {
		return nil, fmt.Errorf("network %q: this binary trusts test roots beside Intel's (built with -tags cocoon_testroot) and runs only on a local network", cfg.Network)
	}
	n := &Node{cfg: cfg, live: cfg, log: log.With("role", cfg.Role.String()), requests: metrics.NewRequests(cfg.Role.String())}
	for _, o := range opts {
		o(&n.opts)
	}
	n.disc = &discoveryParts{chain: n.opts.chain}
	if cfg.Role == config.RoleWorker && n.opts.backend == nil {
		b, err := newBackend(cfg.Worker, n.log)
		if err != nil {
			return nil, err
		}
		n.opts.backend = b
	}
	return n, nil
}

// Start brings the node up: identity, host, handshake, root contract and
// DHT, payments, the role's services, and the admin API. Close undoes it.
func (n *Node) Start(ctx context.Context) error {
	if err := n.start(ctx); err != nil {
		n.Close()
		return err
	}
	n.log.Info("node started", "network", n.cfg.Network, "addrs", n.Addrs(), "admin", n.AdminURL())
	return nil
}

func (n *Node) start(ctx context.Context) error {
	key, err := n.identity()
	if err != nil {
		return err
	}
	if n.h, err = p2p.NewHost(n.cfg.P2P, key); err != nil {
		return err
	}
	n.log = n.log.With("self", n.h.ID()) // "peer" is the other side, in every log line
	n.sv = p2p.NewService(n.h, n.log)
	if err := n.startAttestation(ctx); err != nil {
		return err
	}
	if n.cfg.P2P.RelayService {
		if n.relay, err = p2p.NewRelay(n.h, n.cfg.P2P, relayGate{n.hs}, n.log); err != nil {
			return err
		}
	}
	if err := n.startDiscovery(ctx); err != nil {
		return err
	}
	if err := n.startPayments(); err != nil {
		return err
	}
	if n.role, err = n.newRole(ctx, key); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Go(func() { n.hs.Run(runCtx) }) // renews own evidence ahead of its expiry
	for _, run := range n.role.runs() {
		n.wg.Go(func() { run(runCtx) })
	}
	n.admin = n.newAdmin()
	return n.admin.Start(ctx)
}

// identity is the node's libp2p key. Under attest.issuer tdx it is made
// in memory at each start, so that the key the TDX quote binds never
// leaves the TD: an operator who could read it from the data dir could
// replay the evidence from outside, and one who could plant it could make
// the TD speak for a key he holds. Peers learn the new peer ID from the
// worker's offers and DHT records, as for any node. Other issuers keep it
// in the data dir.
func (n *Node) identity() (crypto.PrivKey, error) {
	if n.cfg.Attest.Issuer == tdx.Kind {
		return p2p.EphemeralIdentity(n.cfg.DataDir)
	}
	return p2p.LoadOrCreateIdentity(n.cfg.DataDir)
}

// ID is the node's peer ID; empty before Start.
func (n *Node) ID() peer.ID {
	if n.h == nil {
		return ""
	}
	return n.h.ID()
}

// Addrs are the node's listen addresses with /p2p/<id>, for other nodes'
// configuration; a private worker's are those of its relay slots.
func (n *Node) Addrs() []string {
	if n.h == nil {
		return nil
	}
	addrs := n.h.Addrs()
	if n.role != nil {
		addrs = n.role.addrs(addrs)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.Encapsulate(ma.StringCast("/p2p/"+n.h.ID().String())).String())
	}
	return out
}

// Connected counts the peers the node has a connection to.
func (n *Node) Connected() int { return len(n.h.Network().Peers()) }

// APIAddr is where a client serves the OpenAI API ("" for other roles).
func (n *Node) APIAddr() string {
	if c, ok := n.role.(*clientRole); ok {
		return c.apiAddr()
	}
	return ""
}

// Ready reports whether the node can do its job: a client has an attested
// proxy that knows at least one model, a proxy has a worker, a worker is
// always ready once started.
func (n *Node) Ready(ctx context.Context) bool { return n.role != nil && n.role.ready(ctx) }

// Verified returns the node's live verdict on p: the trust tier p's
// evidence earned here, and for a worker the sealing key it binds.
func (n *Node) Verified(p peer.ID) (attest.Verdict, bool) {
	if n.hs == nil {
		return attest.Verdict{}, false
	}
	return n.hs.Verified(p)
}

// PeersUp lists the configured peers (a proxy's workers, a client's
// proxies) whose last check passed.
func (n *Node) PeersUp() []peer.ID {
	if n.role == nil {
		return nil
	}
	return n.role.keeper().Up()
}

// Poke makes the node re-check its peers now instead of at the next tick.
func (n *Node) Poke() {
	if n.role != nil {
		n.role.keeper().Poke()
	}
}

// Offers lists the live offers in the node's offer book (workers and
// proxies keep one).
func (n *Node) Offers() []*offers.Offer {
	if o, ok := n.role.(interface{ offerBook() *offers.Book }); ok {
		return o.offerBook().Live("")
	}
	return nil
}

// Role is the node's role.
func (n *Node) Role() config.Role { return n.cfg.Role }

// DataDir is the node's data directory.
func (n *Node) DataDir() string { return n.cfg.DataDir }

// AdminURL is where the node serves its admin API ("" if it does not).
func (n *Node) AdminURL() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.URL()
}

// DashboardURL is the link to the node's web dashboard ("" if the admin
// API is off); see admin.Server.DashboardURL.
func (n *Node) DashboardURL() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.DashboardURL()
}

// Status reports what the node sees now, as the admin API does.
func (n *Node) Status(ctx context.Context) admin.Status {
	if n.admin == nil {
		return admin.Status{Role: n.cfg.Role.String(), Network: n.cfg.Network, DHT: -1}
	}
	return n.admin.Status(ctx)
}

// Doctor checks what decides whether the node does its job, as `cocoon
// doctor` shows it.
func (n *Node) Doctor(ctx context.Context) []admin.Check {
	if n.admin == nil {
		return nil
	}
	return n.admin.Doctor(ctx)
}

// Wallet returns the node's TON wallet; nil without payments.
func (n *Node) Wallet() *ton.Wallet {
	if n.pay == nil {
		return nil
	}
	return n.pay.wallet
}

// Channels returns the node's payment channels' manager; nil without
// payments.
func (n *Node) Channels() *channels.Manager {
	if n.pay == nil {
		return nil
	}
	return n.pay.m
}

// Close stops everything Start started and waits for it.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		if n.role != nil {
			n.role.stopServing()
		}
		if n.admin != nil {
			n.admin.Close()
		}
		if n.cancel != nil {
			n.cancel()
		}
		if n.sv != nil {
			n.sv.Close()
		}
		n.wg.Wait() // the announcer stops before gossip closes
		if n.role != nil {
			n.role.close()
		}
		n.closePayments()
		n.closeDiscovery()
		if n.relay != nil {
			n.relay.Close()
		}
		if n.h != nil {
			err = n.h.Close()
		}
	})
	return err
}

// relayGate admits to the relay service the peers this node holds a live
// verdict on, attesting one it has none on first (a private worker
// attested the proxy, and was attested back, before it reserves; another
// proxy opening a circuit to it may not have been): the relay serves the
// network, not strangers, and peers presenting no evidence get nothing.
type relayGate struct{ hs *attest.Handshaker }

func (g relayGate) Admit(ctx context.Context, p peer.ID) bool {
	_, err := g.hs.Attest(ctx, p)
	return err == nil
}
