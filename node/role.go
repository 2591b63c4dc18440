package node

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// role is the part of a node its role adds: a workerRole, proxyRole or
// clientRole, each holding only what that role uses.
type role interface {
	// runs are what the role runs in the background until the node
	// closes; the node starts and waits for them.
	runs() []func(context.Context)
	// addrs are the addresses the node announces, given the host's.
	addrs(host []ma.Multiaddr) []ma.Multiaddr
	// keeper keeps the peers the role works with up.
	keeper() *discovery.Keeper
	// ready reports whether the node can do its job.
	ready(ctx context.Context) bool
	// admin is what the admin API shows and checks of the role.
	admin() admin.Role
	// stopServing stops taking new work from outside the mesh (a client's
	// HTTP API); it runs first when the node closes.
	stopServing()
	// close releases what the role holds once its runs have returned.
	close()
	// policyChanged tells the role that the root contract's policy
	// changed: the node's verdicts on dropped were taken back (their
	// evidence is no longer allowed), and what the role verified itself
	// must be verified again.
	policyChanged(dropped []peer.ID)
}

// newRole assembles the node's role on its started host. It is the one
// switch on Role.
func (n *Node) newRole(ctx context.Context, key crypto.PrivKey) (role, error) {
	switch n.cfg.Role {
	case config.RoleWorker:
		return n.newWorker(ctx, key)
	case config.RoleProxy:
		return n.newProxy(key)
	case config.RoleClient:
		return n.newClient()
	}
	return nil, fmt.Errorf("role: %v is not a role", n.cfg.Role)
}
