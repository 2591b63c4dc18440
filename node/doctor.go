package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
)

// Check is one thing `cocoon doctor` looks at.
type Check struct {
	Name   string `json:"name"`
	Result string `json:"result"` // pass, warn or fail
	Detail string `json:"detail"`
	// Fix says what to do about a warn or fail.
	Fix string `json:"fix,omitempty"`
}

// Check results.
const (
	Pass = "pass"
	Warn = "warn"
	Fail = "fail"
)

// Doctor checks, for the node's role, what decides whether it serves and
// earns (a worker), routes (a proxy) or gets answers it can pay for (a
// client), and says how to fix what fails. It asks only this node and the
// chain; nothing it does changes anything.
func (n *Node) Doctor(ctx context.Context) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }
	add(n.checkAttestation(ctx))
	add(n.checkRegistry())
	add(n.checkDHT())
	switch n.cfg.Role {
	case RoleWorker:
		add(n.checkGPU(ctx))
		add(n.checkEngine(ctx))
		add(n.checkProxies())
		add(n.checkSelected())
		add(n.checkPrice())
	case RoleProxy:
		add(n.checkWorkers())
	case RoleClient:
		add(n.checkProxies())
		add(n.checkModels(ctx))
	}
	add(n.checkPayments(ctx))
	return out
}

// checkAttestation validates the node's own evidence as a peer would, with
// the network's rules from the root contract.
func (n *Node) checkAttestation(ctx context.Context) Check {
	c := Check{Name: "attestation"}
	ev, err := n.hs.Evidence(ctx)
	if err != nil {
		c.Result, c.Detail = Fail, "cannot issue evidence: "+err.Error()
		c.Fix = "with attest.issuer tdx, run inside an Intel TDX guest whose kernel exposes configfs-tsm or /dev/tdx_guest"
		return c
	}
	v, err := n.kinds.Validate(ctx, ev, n.h.Peerstore().PubKey(n.h.ID()), time.Now())
	if err != nil {
		c.Result, c.Detail = Fail, fmt.Sprintf("peers would refuse this node's %s evidence: %v", ev.Kind, err)
		c.Fix = "run the image whose measurements the root contract allows, or (on a local network) allow dev attestation"
		return c
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("%s evidence, verified as peers verify it: tier %s", ev.Kind, v.Tier)
	if v.Tier == attest.TierDev {
		c.Result = Warn
		c.Fix = "dev evidence proves nothing; clients asking for tee or tee-gpu never reach this node: run in a TDX guest with attest.issuer tdx"
	}
	return c
}

// checkGPU says whether the node's evidence reaches tee-gpu.
func (n *Node) checkGPU(ctx context.Context) Check {
	c := Check{Name: "gpu confidential computing"}
	if !n.cfg.Attest.GPU {
		c.Result, c.Detail = Warn, "not requested (attest.gpu is off): tier tee at most"
		c.Fix = "on a host with NVIDIA H100/H200 GPUs in CC mode passed to the TD, set attest.gpu (scripts/gpu-check.sh shows the GPU's state)"
		return c
	}
	t, err := n.ownTier(ctx)
	if err == nil && t == attest.TierTEEGPU {
		c.Result, c.Detail = Pass, "GPU evidence attached: tier tee-gpu"
		return c
	}
	c.Result, c.Detail = Fail, "attest.gpu is on but the evidence carries no accepted GPU report"
	c.Fix = "turn CC mode on (nvidia-smi conf-compute -scc on, then reset the GPU) and check with scripts/gpu-check.sh"
	return c
}

// checkEngine asks the engine for its models, as a proxy would.
func (n *Node) checkEngine(ctx context.Context) Check {
	c := Check{Name: "engine"}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cat, err := n.worker.Catalog(ctx)
	if err != nil {
		c.Result, c.Detail = Fail, "the engine does not answer: "+err.Error()
		c.Fix = "start the engine, or point worker.openai.url at it (e.g. http://127.0.0.1:8000/v1)"
		return c
	}
	if len(cat.Models) == 0 {
		c.Result, c.Detail = Fail, "the engine serves no model"
		c.Fix = "load a model in the engine, or list it in worker.openai.models"
		return c
	}
	var ids []string
	for _, m := range cat.Models {
		ids = append(ids, m.ID)
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("serving %s (%d/%d requests active)", strings.Join(ids, ", "), cat.Active, cat.MaxConcurrent)
	if reg := n.registryNow(); reg != nil && len(reg.Models) > 0 {
		var unknown []string
		for _, id := range ids {
			if !slices.ContainsFunc(reg.Models, func(m registry.Model) bool { return m.Name == id }) {
				unknown = append(unknown, id)
			}
		}
		if len(unknown) > 0 {
			c.Result = Warn
			c.Detail += fmt.Sprintf("; not in the root contract's model list: %s", strings.Join(unknown, ", "))
			c.Fix = "serve a model the network lists (cocoon status shows the root contract), or ask its owner to add yours"
		}
	}
	return c
}

// checkRegistry reads the root contract as last read.
func (n *Node) checkRegistry() Check {
	c := Check{Name: "root contract"}
	if n.registry == nil {
		c.Result, c.Detail = Warn, "none configured: this node knows only the peers it is given"
		c.Fix = "set discovery.root (and discovery.global_config) to join a public network"
		return c
	}
	reg := n.registry.Current()
	if reg == nil {
		c.Result, c.Detail = Fail, "not read yet"
		c.Fix = "check discovery.global_config and that the lite servers are reachable"
		return c
	}
	c.Result = Pass
	c.Detail = fmt.Sprintf("%s, seqno %d: %d bootstrap proxies, %d allowed measurements, %d models, dev attestation %t",
		n.cfg.Discovery.Root, reg.Seqno, len(reg.Bootstrap), len(reg.Measurements), len(reg.Models), reg.DevAttestation)
	return c
}

// checkDHT says whether the node sees other DHT servers.
func (n *Node) checkDHT() Check {
	c := Check{Name: "dht"}
	switch {
	case n.dht == nil:
		c.Result, c.Detail = Warn, "off: no bootstrap peer"
		c.Fix = "set discovery.root or discovery.bootstrap"
	case n.dht.RoutingTableSize() == 0 && n.cfg.Role == RoleProxy && n.aloneProxy():
		c.Result, c.Detail = Warn, "no other DHT server: this is the network's only bootstrap proxy"
		c.Fix = "nothing to do while it is the only one; more proxies in the root contract make the DHT resilient"
	case n.dht.RoutingTableSize() == 0:
		c.Result, c.Detail = Fail, "no DHT server in the routing table"
		c.Fix = "check that the bootstrap proxies are reachable (p2p.listen, firewalls)"
	default:
		c.Result, c.Detail = Pass, fmt.Sprintf("%d servers in the routing table", n.dht.RoutingTableSize())
	}
	return c
}

// aloneProxy reports whether this proxy is the only one the root contract
// and the configuration name.
func (n *Node) aloneProxy() bool {
	others := len(n.cfg.Discovery.Bootstrap)
	if reg := n.registryNow(); reg != nil {
		for _, ai := range reg.Bootstrap {
			if ai.ID != n.h.ID() {
				others++
			}
		}
	}
	return others == 0
}

// checkProxies says whether the node reaches attested proxies (a worker
// or a client).
func (n *Node) checkProxies() Check {
	c := Check{Name: "proxies"}
	up := 0
	for _, p := range n.keeper.Up() {
		if _, ok := n.hs.Verified(p); ok {
			up++
		}
	}
	known := len(n.keeper.Peers())
	switch {
	case up > 0:
		c.Result, c.Detail = Pass, fmt.Sprintf("%d of %d known proxies reachable and attested", up, known)
	case known == 0:
		c.Result, c.Detail = Fail, "no proxy known"
		c.Fix = "set discovery.root, or list proxies in worker.proxies / client.proxies"
	default:
		c.Result, c.Detail = Fail, fmt.Sprintf("none of %d known proxies is reachable and attested", known)
		c.Fix = "check the node's log for the handshake or dial errors; the proxies may refuse this node's evidence"
	}
	if n.cfg.Role == RoleWorker && c.Result == Pass && n.book != nil {
		// Proxies route by offers: the worker's own offer must be in the
		// mesh, which it is when it hears proxies' offers.
		if len(n.book.Live(offers.RoleProxy)) == 0 {
			c.Result = Warn
			c.Detail += "; no proxy's offer heard, so proxies may not hear this worker's"
			c.Fix = "wait a gossip interval; if it persists, check the offers topic (cocoon status)"
		}
	}
	return c
}

// checkSelected says whether proxies send the worker requests.
func (n *Node) checkSelected() Check {
	c := Check{Name: "selected"}
	st := n.worker.Stats()
	if st.Served > 0 {
		c.Result, c.Detail = Pass, fmt.Sprintf("%d requests answered since start, %d active", st.Served, n.worker.Active())
		return c
	}
	c.Result, c.Detail = Warn, "no request answered since start"
	c.Fix = "proxies prefer cheaper, faster workers that succeed: compare the price check below, and the ttft and tokens/s in cocoon status"
	return c
}

// checkPrice compares the worker's price with the other workers' offers
// for its models.
func (n *Node) checkPrice() Check {
	c := Check{Name: "price"}
	p := n.cfg.Worker.Price
	own := p.Prompt + p.Completion
	self := n.h.ID().String()
	var others []int64
	for _, o := range n.book.Live(offers.RoleWorker) {
		if o.Peer == self {
			continue
		}
		for _, m := range o.Models {
			others = append(others, m.Price.Prompt+m.Price.Completion)
			break
		}
	}
	if len(others) == 0 {
		c.Result, c.Detail = Pass, fmt.Sprintf("%d nanoTON per million prompt+completion tokens; no other worker's offer to compare", own)
		return c
	}
	sort.Slice(others, func(i, j int) bool { return others[i] < others[j] })
	median := others[len(others)/2]
	c.Detail = fmt.Sprintf("%d nanoTON per million prompt+completion tokens; going rate (median of %d workers) %d, cheapest %d",
		own, len(others), median, others[0])
	c.Result = Pass
	if own > median+median/2 {
		c.Result = Warn
		c.Fix = "proxies try the cheapest workers first: lower worker.price toward the going rate"
	}
	return c
}

// checkWorkers says whether a proxy has workers to route to.
func (n *Node) checkWorkers() Check {
	c := Check{Name: "workers"}
	up, models := 0, map[string]bool{}
	for _, w := range n.router.Workers() {
		if w.Up {
			up++
			for _, m := range w.Models {
				models[m] = true
			}
		}
	}
	if up == 0 {
		c.Result, c.Detail = Fail, "no worker to route to"
		c.Fix = "workers find this proxy through the root contract's bootstrap list or worker.proxies; check they reach it"
		return c
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("%d workers up, serving %d models", up, len(models))
	return c
}

// checkModels says whether a client sees models to ask for.
func (n *Node) checkModels(ctx context.Context) Check {
	c := Check{Name: "models"}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cat, err := n.up.Catalog(ctx)
	if err != nil || len(cat.Models) == 0 {
		c.Result, c.Detail = Fail, "no model reachable"
		if err != nil {
			c.Detail += ": " + err.Error()
		}
		c.Fix = "the proxies have no worker up, or this node reaches no proxy (see proxies above)"
		return c
	}
	var ids []string
	for _, m := range cat.Models {
		ids = append(ids, m.ID)
	}
	c.Result, c.Detail = Pass, strings.Join(ids, ", ")
	return c
}

// checkPayments checks the wallet and the channels.
func (n *Node) checkPayments(ctx context.Context) Check {
	c := Check{Name: "payments"}
	if n.pay == nil {
		c.Result, c.Detail = Warn, "off (payments.enabled): nothing is paid or earned"
		c.Fix = "set payments.enabled on a network with a chain"
		return c
	}
	bal, err := n.pay.wallet.Balance(ctx)
	wallet := fmt.Sprintf("wallet %s", n.pay.wallet.Address())
	if err != nil {
		c.Result, c.Detail = Fail, wallet+": cannot read the balance: "+err.Error()
		c.Fix = "check the chain connection (discovery.global_config)"
		return c
	}
	wallet += fmt.Sprintf(" holds %s nanoTON", bal)
	var open []string
	var unsigned uint64
	for _, ch := range n.pay.m.List() {
		if ch.State != "open" {
			continue
		}
		side := "from"
		if ch.Payer {
			side = "to"
		}
		open = append(open, side+" "+shortPeer(ch.Peer))
		unsigned += ch.Unsigned
	}
	c.Detail = fmt.Sprintf("%s; %d open channels (%s), %d nanoTON not yet signed for", wallet, len(open), strings.Join(open, ", "), unsigned)
	switch n.cfg.Role {
	case RoleWorker:
		if len(open) == 0 {
			c.Result = Fail
			c.Fix = "no proxy has opened a channel to this worker: proxies open one when they route to it (see proxies and selected)"
			return c
		}
	case RoleClient, RoleProxy:
		need := n.cfg.Payments.Deposit
		payable := slices.ContainsFunc(n.payees(), func(p peer.ID) bool { return n.pay.m.Payable(p) == nil })
		if !payable {
			c.Result = Fail
			c.Fix = fmt.Sprintf("no funded channel: send at least %d nanoTON plus fees to the wallet (cocoon wallet address), or lower payments.deposit", need)
			return c
		}
	}
	c.Result = Pass
	return c
}

// registryNow is the root contract as last read; nil without one.
func (n *Node) registryNow() *registry.Registry {
	if n.registry == nil {
		return nil
	}
	return n.registry.Current()
}

func shortPeer(p peer.ID) string {
	s := p.String()
	if len(s) > 12 {
		return s[:4] + ".." + s[len(s)-6:]
	}
	return s
}

// doctorRoutes serves GET /doctor on the admin API: the checks, as JSON.
func (n *Node) doctorRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /doctor", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Doctor(r.Context()))
	})
}
