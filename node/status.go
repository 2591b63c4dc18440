package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Status is what a node sees, for `cocoon status` and the admin API.
type Status struct {
	Role    string   `json:"role"`
	Network string   `json:"network"`
	Peer    string   `json:"peer"`
	Addrs   []string `json:"addrs"`
	Ready   bool     `json:"ready"`
	Tier    string   `json:"tier,omitempty"` // of this node's own evidence
	APIAddr string   `json:"api_addr,omitempty"`

	// Registry is the root contract as last read; nil without one.
	Registry *RegistryStatus `json:"registry,omitempty"`
	// DHT is the number of DHT servers in the routing table; -1 without a DHT.
	DHT int `json:"dht_routing_table"`
	// Connected counts the peers this node has a connection to.
	Connected int `json:"connected"`
	// Kept are the peers the node keeps up (a client's or worker's proxies,
	// a proxy's flagged workers), with whether each passed its last check.
	Kept []KeptPeer `json:"kept,omitempty"`
	// Offers are the live offers in the node's book (workers and proxies).
	Offers []OfferStatus `json:"offers,omitempty"`
	// Workers is a proxy's view of the workers it routes to.
	Workers []WorkerStatus `json:"workers,omitempty"`
	// Serving is a worker's own measurements.
	Serving *ServingStatus `json:"serving,omitempty"`
	// Payments is what the node earned and spent; nil without payments.
	Payments *PaymentsStatus `json:"payments,omitempty"`
}

// RegistryStatus summarises the root contract.
type RegistryStatus struct {
	Address        string `json:"address"`
	Seqno          uint32 `json:"seqno"`
	Bootstrap      int    `json:"bootstrap"`
	Measurements   int    `json:"measurements"`
	Models         int    `json:"models"`
	DevAttestation bool   `json:"dev_attestation"`
	ProxyFeePPM    uint32 `json:"proxy_fee_ppm"`
}

// KeptPeer is one peer a keeper looks after.
type KeptPeer struct {
	Peer     string `json:"peer"`
	Up       bool   `json:"up"`
	Attested string `json:"attested,omitempty"` // tier of its live verdict
}

// OfferStatus is one live offer.
type OfferStatus struct {
	Peer     string   `json:"peer"`
	Role     string   `json:"role"`
	Models   []string `json:"models,omitempty"`
	Price    int64    `json:"price,omitempty"` // prompt+completion of the first model, nanoTON per million
	Load     int      `json:"load"`
	Capacity int      `json:"capacity,omitempty"`
	Tier     string   `json:"tier,omitempty"`
	FeePPM   int64    `json:"fee_ppm,omitempty"`
	Expires  string   `json:"expires"`
}

// WorkerStatus is a proxy's record of one worker.
type WorkerStatus struct {
	Peer     string   `json:"peer"`
	Up       bool     `json:"up"`
	Models   []string `json:"models"`
	Active   int      `json:"active"`
	Capacity int      `json:"capacity"`
	Served   int      `json:"served"`
	Failures int      `json:"failures"`
	TTFTms   float64  `json:"ttft_ms"`
	Success  float64  `json:"success"`
}

// ServingStatus is a worker's own record.
type ServingStatus struct {
	Active       int     `json:"active"`
	Capacity     int     `json:"capacity"`
	Served       int64   `json:"served"`
	TTFTms       float64 `json:"ttft_ms"`
	TokensPerSec float64 `json:"tokens_per_sec"`
}

// Status reports what the node sees now.
func (n *Node) Status(ctx context.Context) Status {
	s := Status{Role: n.cfg.Role.String(), Network: n.cfg.Network, DHT: -1}
	if n.h == nil {
		return s
	}
	s.Peer = n.h.ID().String()
	s.Addrs = n.Addrs()
	s.Ready = n.Ready(ctx)
	s.APIAddr = n.APIAddr()
	if t, err := n.ownTier(ctx); err == nil {
		s.Tier = t.String()
	}
	if n.registry != nil {
		if reg := n.registry.Current(); reg != nil {
			s.Registry = &RegistryStatus{Address: n.cfg.Discovery.Root, Seqno: reg.Seqno, Bootstrap: len(reg.Bootstrap),
				Measurements: len(reg.Measurements), Models: len(reg.Models), DevAttestation: reg.DevAttestation,
				ProxyFeePPM: reg.Fees.ProxyFeePPM}
		}
	}
	if n.dht != nil {
		s.DHT = n.dht.RoutingTableSize()
	}
	s.Connected = len(n.h.Network().Peers())
	if n.keeper != nil {
		up := make(map[peer.ID]bool)
		for _, p := range n.keeper.Up() {
			up[p] = true
		}
		for _, p := range n.keeper.Peers() {
			kp := KeptPeer{Peer: p.String(), Up: up[p]}
			if v, ok := n.hs.Verified(p); ok {
				kp.Attested = v.Tier.String()
			}
			s.Kept = append(s.Kept, kp)
		}
	}
	for _, o := range n.Offers() {
		os := OfferStatus{Peer: o.Peer, Role: string(o.Role), Load: o.Load, Capacity: o.MaxConcurrent, Tier: o.Tier,
			FeePPM: o.FeePPM, Expires: time.UnixMilli(o.Expiry).UTC().Format(time.RFC3339)}
		for i, m := range o.Models {
			os.Models = append(os.Models, m.ID)
			if i == 0 {
				os.Price = m.Price.Prompt + m.Price.Completion
			}
		}
		s.Offers = append(s.Offers, os)
	}
	if n.router != nil {
		for _, w := range n.router.Workers() {
			s.Workers = append(s.Workers, WorkerStatus{Peer: w.Peer.String(), Up: w.Up, Models: w.Models, Active: w.Active,
				Capacity: w.MaxConcurrent, Served: w.Served, Failures: w.Failures,
				TTFTms: float64(w.TTFT.Microseconds()) / 1000, Success: w.Success})
		}
	}
	if n.worker != nil {
		st := n.worker.Stats()
		s.Serving = &ServingStatus{Active: n.worker.Active(), Capacity: n.cfg.Worker.MaxConcurrent, Served: st.Served,
			TTFTms: float64(st.TTFT.Microseconds()) / 1000, TokensPerSec: st.TokensPerSec}
	}
	s.Payments = n.paymentsStatus()
	return s
}
