package admin_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/xssnick/tonutils-go/address"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
	"github.com/cocoon-mesh/cocoon/payments/channels"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testID is the peer ID of the test key made from seed, with its public
// key.
func testID(t *testing.T, seed byte) (peer.ID, crypto.PubKey) {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id, pub
}

// fakeNode is a node's common state.
type fakeNode struct {
	id        peer.ID
	addrs     []string
	connected int
	ready     bool
	tier      attest.Tier
	tierErr   error
}

func (n *fakeNode) ID() peer.ID                               { return n.id }
func (n *fakeNode) Addrs() []string                           { return n.addrs }
func (n *fakeNode) Connected() int                            { return n.connected }
func (n *fakeNode) Ready(context.Context) bool                { return n.ready }
func (n *fakeNode) Tier(context.Context) (attest.Tier, error) { return n.tier, n.tierErr }

// fakeHandshaker presents ev (or fails with evErr), holds verdicts, and
// reports renewal as the state of its renewal.
type fakeHandshaker struct {
	ev       *attest.Evidence
	evErr    error
	verdicts map[peer.ID]attest.Verdict
	renewal  attest.Renewal
}

func (h *fakeHandshaker) Renewal() attest.Renewal { return h.renewal }

func (h *fakeHandshaker) Evidence(context.Context) (*attest.Evidence, error) { return h.ev, h.evErr }

func (h *fakeHandshaker) Verified(p peer.ID) (attest.Verdict, bool) {
	v, ok := h.verdicts[p]
	return v, ok
}

// fakeValidator answers every validation with v or err, and checks that
// it is asked about the node's own key.
type fakeValidator struct {
	t   *testing.T
	key crypto.PubKey
	v   attest.Verdict
	err error
}

func (f fakeValidator) Validate(_ context.Context, _ *attest.Evidence, pub crypto.PubKey, _ time.Time) (attest.Verdict, error) {
	if !f.key.Equals(pub) {
		f.t.Errorf("the doctor validates with key %v, want the node's %v", pub, f.key)
	}
	return f.v, f.err
}

type fakeKeeper struct{ peers, up []peer.ID }

func (k fakeKeeper) Peers() []peer.ID { return k.peers }
func (k fakeKeeper) Up() []peer.ID    { return k.up }

type fakeBook []*offers.Offer

func (b fakeBook) Live(role offers.Role) []*offers.Offer {
	var out []*offers.Offer
	for _, o := range b {
		if role == "" || o.Role == role {
			out = append(out, o)
		}
	}
	return out
}

type fakeEngine struct {
	cat    *inference.Catalog
	err    error
	stats  worker.Stats
	active int
	cap    int
}

func (e fakeEngine) Catalog(context.Context) (*inference.Catalog, error) { return e.cat, e.err }
func (e fakeEngine) Stats() worker.Stats                                 { return e.stats }
func (e fakeEngine) Active() int                                         { return e.active }
func (e fakeEngine) Capacity() int                                       { return e.cap }

type fakeRouter struct {
	workers []router.WorkerStats
	cat     *inference.Catalog
}

func (r fakeRouter) Workers() []router.WorkerStats { return r.workers }
func (r fakeRouter) Catalog() *inference.Catalog   { return r.cat }

// fakeUpstream answers with cat or err; with neither, with no model.
type fakeUpstream struct {
	cat *inference.Catalog
	err error
}

func (u fakeUpstream) Catalog(context.Context) (*inference.Catalog, error) {
	if u.cat == nil && u.err == nil {
		return &inference.Catalog{}, nil
	}
	return u.cat, u.err
}

type fakeRegistry struct{ reg *registry.Registry }

func (r fakeRegistry) Current() *registry.Registry { return r.reg }

type fakeDHT int

func (d fakeDHT) RoutingTableSize() int { return int(d) }

// fakeChannels lists its channels and records the operations asked of
// it, failing each with the error opErr names for it.
type fakeChannels struct {
	mu      sync.Mutex
	list    []channels.ChannelStatus
	payable map[peer.ID]bool
	opErr   map[string]error
	ops     []string
}

func (c *fakeChannels) List() []channels.ChannelStatus { return c.list }

func (c *fakeChannels) Payable(p peer.ID) error {
	if c.payable[p] {
		return nil
	}
	return errors.New("no funded channel")
}

func (c *fakeChannels) op(name string, p peer.ID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops = append(c.ops, name+" "+p.String())
	return c.opErr[name]
}

func (c *fakeChannels) Open(_ context.Context, p peer.ID) error         { return c.op("open", p) }
func (c *fakeChannels) CloseChannel(_ context.Context, p peer.ID) error { return c.op("close", p) }
func (c *fakeChannels) Dispute(_ context.Context, p peer.ID) error      { return c.op("dispute", p) }
func (c *fakeChannels) FinishClose(_ context.Context, p peer.ID) error  { return c.op("finish", p) }

// reset forgets the operations done and fails the next ones with opErr.
func (c *fakeChannels) reset(opErr map[string]error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops, c.opErr = nil, opErr
}

// done are the operations asked, as "open <peer>" and the like.
func (c *fakeChannels) done() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// fakePayees are the peers a node pays.
type fakePayees []peer.ID

func (p fakePayees) Payees() []peer.ID { return p }

type fakeWallet struct {
	addr    *address.Address
	balance *big.Int
	err     error
}

func (w fakeWallet) Address() *address.Address                 { return w.addr }
func (w fakeWallet) Balance(context.Context) (*big.Int, error) { return w.balance, w.err }

// testAddress is a TON address for the fakes.
var testAddress = address.NewAddress(0, 0, bytes.Repeat([]byte{7}, 32))

// modelHash is a root contract model's hash, which the admin API ignores.
var modelHash = sha256.Sum256([]byte("model"))

// newServer is the admin API of a node with role, whose own evidence
// validates with the node's tier.
func newServer(t *testing.T, cfg admin.Config, node *fakeNode, hs *fakeHandshaker, key crypto.PubKey, role admin.Role, opts ...admin.Option) *admin.Server {
	t.Helper()
	v := fakeValidator{t: t, key: key, v: attest.Verdict{Tier: node.tier, Kind: "dev"}}
	att := admin.Attestation{Handshaker: hs, Validator: v, Key: key}
	return admin.New(cfg, node, att, role, metrics.NewRequests("test"), logtest.Discard, opts...)
}
