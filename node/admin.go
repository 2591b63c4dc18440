package node

import (
	"github.com/cocoon-mesh/cocoon/admin"
)

// newAdmin prepares the node's admin API (admin.addr) over what it has:
// its role's parts, and where the node has them its root contract, DHT
// and payments.
func (n *Node) newAdmin() *admin.Server {
	var opts []admin.Option
	if n.disc.registry != nil {
		opts = append(opts, admin.WithRegistry(n.cfg.Discovery.Root, n.disc.registry))
	}
	if n.disc.dht != nil {
		opts = append(opts, admin.WithDHT(n.disc.dht))
	}
	if n.pay != nil {
		pay := n.adminPayments()
		if p, ok := n.role.(admin.Payees); ok { // a paying role: a client's proxies, a proxy's workers
			pay.Payees = p
		}
		opts = append(opts, admin.WithPayments(pay))
	}
	opts = append(opts, admin.WithControl(n))
	att := admin.Attestation{Handshaker: n.hs, Validator: n.kinds, Key: n.h.Peerstore().PubKey(n.h.ID())}
	cfg := admin.Config{Addr: n.cfg.Admin.Addr, DataDir: n.cfg.DataDir, Network: n.cfg.Network}
	return admin.New(cfg, n, att, n.role.admin(), n.requests, n.log, opts...)
}

// AdminToken is the token the node's admin API wants this run, as it
// wrote it to admin.token in the data dir ("" before Start).
func (n *Node) AdminToken() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.Token()
}
