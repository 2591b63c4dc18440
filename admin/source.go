package admin

import (
	"context"
	"math/big"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/channels"
)

// Node is what the admin API reads of every running node.
type Node interface {
	// ID is the node's peer ID; "" before its host is up.
	ID() peer.ID
	// Addrs are the node's listen addresses with /p2p/<id>.
	Addrs() []string
	// Connected counts the peers the node has a connection to.
	Connected() int
	// Ready reports whether the node can do its job.
	Ready(ctx context.Context) bool
	// Tier is the trust tier the node's own evidence earns.
	Tier(ctx context.Context) (attest.Tier, error)
}

// Handshaker is the node's side of the attestation handshake: the
// evidence it presents and its live verdicts on peers.
// *attest.Handshaker is one.
type Handshaker interface {
	Evidence(ctx context.Context) (*attest.Evidence, error)
	Verified(p peer.ID) (attest.Verdict, bool)
	// Renewal is the state of the node's own evidence and its renewal.
	Renewal() attest.Renewal
}

// Attestation is how the node proves itself and judges its peers. The
// doctor validates the node's own evidence with Validator, as a peer would.
type Attestation struct {
	Handshaker Handshaker
	// Validator checks evidence with the network's rules: the node's
	// *attest.Kinds.
	Validator attest.Validator
	// Key is the node's public identity key, which its evidence binds.
	Key crypto.PubKey
}

// Keeper is a set of peers a node keeps up. *discovery.Keeper is one.
type Keeper interface {
	// Peers are all the peers it looks after.
	Peers() []peer.ID
	// Up are those whose last check passed.
	Up() []peer.ID
}

// Book is a node's offer book. *offers.Book is one.
type Book interface {
	// Live returns the live offers of role (any role if empty).
	Live(role offers.Role) []*offers.Offer
}

// Engine is a worker's server in front of its engine. *worker.Server is
// one.
type Engine interface {
	// Catalog asks the engine for its models.
	Catalog(ctx context.Context) (*inference.Catalog, error)
	// Stats are what the worker measured of its engine.
	Stats() worker.Stats
	// Active counts the requests being served.
	Active() int
	// Capacity is how many requests the worker serves at once
	// (worker.max_concurrent, as the last reload left it).
	Capacity() int
}

// Router is a proxy's router. *router.Router is one.
type Router interface {
	// Workers reports every worker the router has known, up or down.
	Workers() []router.WorkerStats
	// Catalog is the union of the models the proxy can route to.
	Catalog() *inference.Catalog
}

// Upstream is a client's way to its proxies. *gateway.Proxies is one.
type Upstream interface {
	// Catalog asks the first proxy that answers for its models.
	Catalog(ctx context.Context) (*inference.Catalog, error)
}

// Registry is the root contract as the node reads it. *registry.Reader is
// one.
type Registry interface {
	// Current is the root contract as last read; nil before the first
	// read.
	Current() *registry.Registry
}

// DHT is the node's view of the DHT. *dht.DHT is one.
type DHT interface {
	// RoutingTableSize counts the DHT servers in the routing table.
	RoutingTableSize() int
}

// Channels are the node's payment channels. *channels.Manager is one.
type Channels interface {
	// List reports every channel, oldest first.
	List() []channels.ChannelStatus
	// Payable says why the node cannot pay p now; nil if it can.
	Payable(p peer.ID) error
	// Open opens a channel to p.
	Open(ctx context.Context, p peer.ID) error
	// CloseChannel closes the channel the node pays p on, cooperatively;
	// channels.ErrNoChannel when there is none.
	CloseChannel(ctx context.Context, p peer.ID) error
	// Dispute starts an uncooperative close of the channel with p.
	Dispute(ctx context.Context, p peer.ID) error
	// FinishClose finishes an uncooperative close after its quarantine.
	FinishClose(ctx context.Context, p peer.ID) error
}

// Wallet is the node's TON wallet. *ton.Wallet is one.
type Wallet interface {
	Address() *address.Address
	// Balance is the wallet's balance in nanoTON.
	Balance(ctx context.Context) (*big.Int, error)
}

// Payees lists the peers a node pays now: a client's attested proxies, a
// proxy's workers that are up. The node's paying role is one.
type Payees interface {
	Payees() []peer.ID
}

// Payments are a node's channels and wallet, when payments are on.
type Payments struct {
	Channels Channels
	Wallet   Wallet
	// Payees are the only peers POST /channels/open opens a channel to;
	// nil on a node that pays no one (a worker).
	Payees Payees
	// Deposit is what each channel the node opens holds, in nanoTON
	// (payments.deposit); the doctor names it when no channel is funded.
	Deposit uint64
}

// Role is the part of a node that its role adds: a Worker, a Proxy or a
// Client, with every interface in it set. It decides what the status
// shows of the role and which checks the doctor runs; the status names
// the role after it ("worker", "proxy", "client").
type Role interface {
	// name is the role as the status shows it.
	name() string
	// kept is the peers the role keeps up.
	kept() Keeper
	// status fills in what only the role has.
	status(st *Status)
	// catalog is the models the node sees the network serve.
	catalog(ctx context.Context) (*inference.Catalog, error)
	// checks are the doctor's checks for the role.
	checks(ctx context.Context, s *Server) []Check
	// aloneInDHT reports whether an empty routing table is expected: the
	// node is the network's only bootstrap proxy.
	aloneInDHT(s *Server) bool
	// unpaid says how to fix the node's payments, given its open
	// channels; "" when they are as the role needs them.
	unpaid(s *Server, p *Payments, open int) string
}

// Worker is what a worker adds to a node.
type Worker struct {
	Engine Engine
	// Proxies are the proxies the worker keeps up.
	Proxies Keeper
	Offers  Book
	// Price is what the worker charges (worker.price).
	Price payments.Price
	// GPU says whether the node presents GPU evidence (attest.gpu).
	GPU bool
}

// Proxy is what a proxy adds to a node.
type Proxy struct {
	Router Router
	// Workers are the workers the proxy keeps up (proxy.workers).
	Workers Keeper
	Offers  Book
	// Bootstrap counts the configured bootstrap peers
	// (discovery.bootstrap), which the doctor counts with the root
	// contract's to tell whether this proxy is the network's only one.
	Bootstrap int
}

// Client is what a client adds to a node.
type Client struct {
	// Proxies are the proxies the client keeps up.
	Proxies  Keeper
	Upstream Upstream
	// APIAddr is where the client serves the OpenAI API.
	APIAddr string
}

// An Option gives the admin API a part that not every node has. A node
// passes one only for a part it has: a nil pointer in an Option's
// interface is not "none".
type Option func(*Server)

// WithRegistry gives the node's root contract, at address root
// (discovery.root).
func WithRegistry(root string, r Registry) Option {
	return func(s *Server) { s.root, s.registry = root, r }
}

// WithDHT gives the node's DHT.
func WithDHT(d DHT) Option { return func(s *Server) { s.dht = d } }

// WithPayments gives the node's payments.
func WithPayments(p Payments) Option { return func(s *Server) { s.pay = &p } }
