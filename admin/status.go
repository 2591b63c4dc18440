package admin

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
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
	// Evidence is the node's own evidence and its renewal; nil for a node
	// that presents none.
	Evidence *EvidenceStatus `json:"evidence,omitempty"`

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
	// Recent are the last requests a client sent, newest first: model,
	// worker, tier, times, tokens, cost and outcome of each.
	Recent []metrics.Record `json:"recent,omitempty"`
}

// EvidenceStatus is the node's own evidence and its renewal, which runs in
// the background once a third of the validity is left.
type EvidenceStatus struct {
	// Expiry is when the current evidence expires; zero with none.
	Expiry time.Time `json:"expiry"`
	// Valid says it has not expired.
	Valid bool `json:"valid"`
	// Renewal is "ok", or "failing" after a failed attempt: the node
	// serves its current evidence while it is valid and retries with
	// backoff.
	Renewal string `json:"renewal"`
	// Failures, LastError, FailingSince and RetryAt describe a failing
	// renewal.
	Failures     int        `json:"renewal_failures,omitempty"`
	LastError    string     `json:"renewal_error,omitempty"`
	FailingSince *time.Time `json:"renewal_failing_since,omitempty"`
	RetryAt      *time.Time `json:"renewal_retry_at,omitempty"`
}

// evidenceStatus is r as the status shows it; nil for a node that
// presents no evidence (none issued, none tried).
func evidenceStatus(r attest.Renewal) *EvidenceStatus {
	if r.Expiry.IsZero() && r.Failures == 0 {
		return nil
	}
	es := &EvidenceStatus{Expiry: r.Expiry, Valid: r.Valid, Renewal: "ok"}
	if r.Failures > 0 {
		es.Renewal, es.Failures, es.LastError = "failing", r.Failures, r.LastError
		es.FailingSince, es.RetryAt = &r.FailingSince, &r.RetryAt
	}
	return es
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
func (s *Server) Status(ctx context.Context) Status {
	st := Status{Role: s.role.name(), Network: s.cfg.Network, DHT: -1}
	id := s.node.ID()
	if id == "" {
		return st
	}
	st.Peer = id.String()
	st.Addrs = s.node.Addrs()
	st.Ready = s.node.Ready(ctx)
	if t, err := s.node.Tier(ctx); err == nil {
		st.Tier = t.String()
	}
	st.Evidence = evidenceStatus(s.att.Handshaker.Renewal())
	if reg := s.registryNow(); reg != nil {
		st.Registry = &RegistryStatus{Address: s.root, Seqno: reg.Seqno, Bootstrap: len(reg.Bootstrap),
			Measurements: len(reg.Measurements), Models: len(reg.Models), DevAttestation: reg.DevAttestation,
			ProxyFeePPM: reg.Fees.ProxyFeePPM}
	}
	if s.dht != nil {
		st.DHT = s.dht.RoutingTableSize()
	}
	st.Connected = s.node.Connected()
	st.Kept = s.keptStatus(s.role.kept())
	s.role.status(&st)
	st.Payments = s.paymentsStatus(ctx)
	st.Recent = s.requests.Recent()
	return st
}

// keptStatus is k's peers, with whether each is up and its verdict.
func (s *Server) keptStatus(k Keeper) []KeptPeer {
	up := make(map[peer.ID]bool)
	for _, p := range k.Up() {
		up[p] = true
	}
	var out []KeptPeer
	for _, p := range k.Peers() {
		kp := KeptPeer{Peer: p.String(), Up: up[p]}
		if v, ok := s.att.Handshaker.Verified(p); ok {
			kp.Attested = v.Tier.String()
		}
		out = append(out, kp)
	}
	return out
}

// offerStatuses are the live offers in b.
func offerStatuses(b Book) []OfferStatus {
	var out []OfferStatus
	for _, o := range b.Live("") {
		os := OfferStatus{Peer: o.Peer, Role: string(o.Role), Load: o.Load, Capacity: o.MaxConcurrent, Tier: o.Tier,
			FeePPM: o.FeePPM, Expires: time.UnixMilli(o.Expiry).UTC().Format(time.RFC3339)}
		for i, m := range o.Models {
			os.Models = append(os.Models, m.ID)
			if i == 0 {
				os.Price = m.Price.Prompt + m.Price.Completion
			}
		}
		out = append(out, os)
	}
	return out
}

func (w Worker) status(st *Status) {
	st.Offers = offerStatuses(w.Offers)
	stats := w.Engine.Stats()
	st.Serving = &ServingStatus{Active: w.Engine.Active(), Capacity: w.Engine.Capacity(), Served: stats.Served,
		TTFTms: float64(stats.TTFT.Microseconds()) / 1000, TokensPerSec: stats.TokensPerSec}
}

func (p Proxy) status(st *Status) {
	st.Offers = offerStatuses(p.Offers)
	for _, w := range p.Router.Workers() {
		st.Workers = append(st.Workers, WorkerStatus{Peer: w.Peer.String(), Up: w.Up, Models: w.Models, Active: w.Active,
			Capacity: w.MaxConcurrent, Served: w.Served, Failures: w.Failures,
			TTFTms: float64(w.TTFT.Microseconds()) / 1000, Success: w.Success})
	}
}

func (c Client) status(st *Status) { st.APIAddr = c.APIAddr }

func (Worker) name() string { return "worker" }
func (Proxy) name() string  { return "proxy" }
func (Client) name() string { return "client" }

func (w Worker) kept() Keeper { return w.Proxies }
func (p Proxy) kept() Keeper  { return p.Workers }
func (c Client) kept() Keeper { return c.Proxies }

// registryNow is the root contract as last read; nil without one.
func (s *Server) registryNow() *registry.Registry {
	if s.registry == nil {
		return nil
	}
	return s.registry.Current()
}
