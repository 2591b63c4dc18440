package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
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
func (s *Server) Doctor(ctx context.Context) []Check {
	out := []Check{s.checkAttestation(ctx), s.checkRegistry(), s.checkDHT()}
	out = append(out, s.role.checks(ctx, s)...)
	return append(out, s.checkPayments(ctx))
}

func (w Worker) checks(ctx context.Context, s *Server) []Check {
	return []Check{w.checkGPU(ctx, s), w.checkEngine(ctx, s), w.checkProxies(s), w.checkSelected(), w.checkPrice(s)}
}

func (p Proxy) checks(_ context.Context, _ *Server) []Check {
	return []Check{p.checkWorkers()}
}

func (c Client) checks(ctx context.Context, s *Server) []Check {
	return []Check{s.checkProxies(c.Proxies), c.checkModels(ctx)}
}

// checkAttestation validates the node's own evidence as a peer would, with
// the network's rules from the root contract, and says whether its
// renewal fails: a warning while the current evidence is valid (peers
// still accept it), a failure once it expired (they refuse the node).
func (s *Server) checkAttestation(ctx context.Context) Check {
	c := Check{Name: "attestation"}
	r := s.att.Handshaker.Renewal()
	var renewal string
	if r.Failures > 0 {
		renewal = fmt.Sprintf("renewal failing since %s (%d attempts, next at %s): %s",
			r.FailingSince.UTC().Format(time.RFC3339), r.Failures, r.RetryAt.UTC().Format(time.RFC3339), r.LastError)
	}
	const fixRenewal = "check the issuer (with attest.issuer tdx: configfs-tsm or /dev/tdx_guest and the quote generation service); the node retries with backoff on its own"
	ev, err := s.att.Handshaker.Evidence(ctx)
	if err != nil {
		c.Result, c.Detail = Fail, "cannot issue evidence: "+err.Error()
		c.Fix = "with attest.issuer tdx, run inside an Intel TDX guest whose kernel exposes configfs-tsm or /dev/tdx_guest"
		if renewal != "" {
			c.Detail = "the evidence expired and " + renewal + "; peers refuse this node and its offers stopped"
			c.Fix = fixRenewal
		}
		return c
	}
	if ev == nil {
		c.Result, c.Detail = Pass, "none presented (attest.issuer none): peers hold no verdict on this node, and need none from a client or a proxy"
		return c
	}
	v, err := s.att.Validator.Validate(ctx, ev, s.att.Key, time.Now())
	if err != nil {
		c.Result, c.Detail = Fail, fmt.Sprintf("peers would refuse this node's %s evidence: %v", ev.Kind, err)
		c.Fix = "run the image whose measurements the root contract allows, or (on a local network) allow dev attestation"
		if errors.Is(err, tdx.ErrTCB) {
			c.Fix = "the platform's TCB is below the root contract's minimum (get_min_tcb): update the TDX module, the microcode and the BIOS to the versions it names"
		}
		return c
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("%s evidence, verified as peers verify it: tier %s", ev.Kind, v.Tier)
	if v.Tier == attest.TierDev {
		c.Result = Warn
		c.Fix = "dev evidence proves nothing; clients asking for tee or tee-gpu never reach this node: run in a TDX guest with attest.issuer tdx"
	}
	if renewal != "" {
		c.Result = Warn
		c.Detail += "; " + renewal + "; serving the current evidence until it expires at " + r.Expiry.UTC().Format(time.RFC3339)
		c.Fix = fixRenewal
	}
	return c
}

// checkGPU says whether the worker's evidence reaches tee-gpu.
func (w Worker) checkGPU(ctx context.Context, s *Server) Check {
	c := Check{Name: "gpu confidential computing"}
	if !w.GPU {
		c.Result, c.Detail = Warn, "not requested (attest.gpu is off): tier tee at most"
		c.Fix = "on a host with NVIDIA H100/H200 GPUs in CC mode passed to the TD, set attest.gpu (scripts/gpu-check.sh shows the GPU's state)"
		return c
	}
	t, err := s.node.Tier(ctx)
	if err == nil && t == attest.TierTEEGPU {
		c.Result, c.Detail = Pass, "GPU evidence attached: tier tee-gpu"
		return c
	}
	c.Result, c.Detail = Fail, "attest.gpu is on but the evidence carries no accepted GPU report"
	c.Fix = "turn CC mode on (nvidia-smi conf-compute -scc on, then reset the GPU) and check with scripts/gpu-check.sh"
	return c
}

// checkEngine asks the engine for its models, as a proxy would.
func (w Worker) checkEngine(ctx context.Context, s *Server) Check {
	c := Check{Name: "engine"}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cat, err := w.Engine.Catalog(ctx)
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
	if reg := s.registryNow(); reg != nil && len(reg.Models) > 0 {
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
func (s *Server) checkRegistry() Check {
	c := Check{Name: "root contract"}
	if s.registry == nil {
		c.Result, c.Detail = Warn, "none configured: this node knows only the peers it is given"
		c.Fix = "set discovery.root (and discovery.global_config) to join a public network"
		return c
	}
	reg := s.registry.Current()
	if reg == nil {
		c.Result, c.Detail = Fail, "not read yet"
		c.Fix = "check discovery.global_config and that the lite servers are reachable"
		return c
	}
	c.Result = Pass
	c.Detail = fmt.Sprintf("%s, seqno %d: %d bootstrap proxies, %d allowed measurements, %d models, dev attestation %t",
		s.root, reg.Seqno, len(reg.Bootstrap), len(reg.Measurements), len(reg.Models), reg.DevAttestation)
	return c
}

// checkDHT says whether the node sees other DHT servers.
func (s *Server) checkDHT() Check {
	c := Check{Name: "dht"}
	switch {
	case s.dht == nil:
		c.Result, c.Detail = Warn, "off: no bootstrap peer"
		c.Fix = "set discovery.root or discovery.bootstrap"
	case s.dht.RoutingTableSize() == 0 && s.role.aloneInDHT(s):
		c.Result, c.Detail = Warn, "no other DHT server: this is the network's only bootstrap proxy"
		c.Fix = "nothing to do while it is the only one; more proxies in the root contract make the DHT resilient"
	case s.dht.RoutingTableSize() == 0:
		c.Result, c.Detail = Fail, "no DHT server in the routing table"
		c.Fix = "check that the bootstrap proxies are reachable (p2p.listen, firewalls)"
	default:
		c.Result, c.Detail = Pass, fmt.Sprintf("%d servers in the routing table", s.dht.RoutingTableSize())
	}
	return c
}

func (Worker) aloneInDHT(*Server) bool { return false }
func (Client) aloneInDHT(*Server) bool { return false }

// aloneInDHT reports whether this proxy is the only one the root contract
// and the configuration name.
func (p Proxy) aloneInDHT(s *Server) bool {
	others := p.Bootstrap
	if reg := s.registryNow(); reg != nil {
		self := s.node.ID()
		for _, ai := range reg.Bootstrap {
			if ai.ID != self {
				others++
			}
		}
	}
	return others == 0
}

// checkProxies says whether the node reaches proxies among those k keeps
// up (a worker or a client): the keeper brings a proxy up once it passed
// the handshake, with evidence or, where that will do, without.
func (s *Server) checkProxies(k Keeper) Check {
	c := Check{Name: "proxies"}
	up, attested := 0, 0
	for _, p := range k.Up() {
		up++
		if _, ok := s.att.Handshaker.Verified(p); ok {
			attested++
		}
	}
	known := len(k.Peers())
	switch {
	case up > 0:
		c.Result, c.Detail = Pass, fmt.Sprintf("%d of %d known proxies reachable (%d with evidence this node verified)", up, known, attested)
	case known == 0:
		c.Result, c.Detail = Fail, "no proxy known"
		c.Fix = "set discovery.root, or list proxies in worker.proxies / client.proxies"
	default:
		c.Result, c.Detail = Fail, fmt.Sprintf("none of %d known proxies is reachable", known)
		c.Fix = "check the node's log for the handshake or dial errors; the proxies may refuse this node's evidence, or present none where client.min_proxy_trust asks for it"
	}
	return c
}

// checkProxies is a worker's proxies check: proxies route by offers, so
// the worker's own offer must be in the mesh, which it is when it hears
// proxies' offers.
func (w Worker) checkProxies(s *Server) Check {
	c := s.checkProxies(w.Proxies)
	if c.Result == Pass && len(w.Offers.Live(offers.RoleProxy)) == 0 {
		c.Result = Warn
		c.Detail += "; no proxy's offer heard, so proxies may not hear this worker's"
		c.Fix = "wait a gossip interval; if it persists, check the offers topic (cocoon status)"
	}
	return c
}

// checkSelected says whether proxies send the worker requests.
func (w Worker) checkSelected() Check {
	c := Check{Name: "selected"}
	st := w.Engine.Stats()
	if st.Served > 0 {
		c.Result, c.Detail = Pass, fmt.Sprintf("%d requests answered since start, %d active", st.Served, w.Engine.Active())
		return c
	}
	c.Result, c.Detail = Warn, "no request answered since start"
	c.Fix = "proxies prefer cheaper, faster workers that succeed: compare the price check below, and the ttft and tokens/s in cocoon status"
	return c
}

// checkPrice compares the worker's price with the other workers' offers
// for its models.
func (w Worker) checkPrice(s *Server) Check {
	c := Check{Name: "price"}
	own := w.Price.Prompt + w.Price.Completion
	self := s.node.ID().String()
	var others []int64
	for _, o := range w.Offers.Live(offers.RoleWorker) {
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
func (p Proxy) checkWorkers() Check {
	c := Check{Name: "workers"}
	up, models := 0, map[string]bool{}
	for _, w := range p.Router.Workers() {
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
func (c Client) checkModels(ctx context.Context) Check {
	ch := Check{Name: "models"}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cat, err := c.Upstream.Catalog(ctx)
	if err != nil || len(cat.Models) == 0 {
		ch.Result, ch.Detail = Fail, "no model reachable"
		if err != nil {
			ch.Detail += ": " + err.Error()
		}
		ch.Fix = "the proxies have no worker up, or this node reaches no proxy (see proxies above)"
		return ch
	}
	var ids []string
	for _, m := range cat.Models {
		ids = append(ids, m.ID)
	}
	ch.Result, ch.Detail = Pass, strings.Join(ids, ", ")
	return ch
}

// checkPayments checks the wallet and the channels.
func (s *Server) checkPayments(ctx context.Context) Check {
	c := Check{Name: "payments"}
	if s.pay == nil {
		c.Result, c.Detail = Warn, "off (payments.enabled): nothing is paid or earned"
		c.Fix = "set payments.enabled on a network with a chain"
		return c
	}
	bal, err := s.pay.Wallet.Balance(ctx)
	wallet := fmt.Sprintf("wallet %s", s.pay.Wallet.Address())
	if err != nil {
		c.Result, c.Detail = Fail, wallet+": cannot read the balance: "+err.Error()
		c.Fix = "check the chain connection (discovery.global_config)"
		return c
	}
	wallet += fmt.Sprintf(" holds %s nanoTON", bal)
	var open []string
	var unsigned uint64
	for _, ch := range s.pay.Channels.List() {
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
	if fix := s.role.unpaid(s, s.pay, len(open)); fix != "" {
		c.Result, c.Fix = Fail, fix
		return c
	}
	c.Result = Pass
	return c
}

// unpaid: a worker is paid on the channels proxies open to it.
func (Worker) unpaid(_ *Server, _ *Payments, open int) string {
	if open == 0 {
		return "no proxy has opened a channel to this worker: proxies open one when they route to it (see proxies and selected)"
	}
	return ""
}

// unpaid: a proxy pays the workers that are up.
func (p Proxy) unpaid(_ *Server, pay *Payments, _ int) string {
	var payees []peer.ID
	for _, w := range p.Router.Workers() {
		if w.Up {
			payees = append(payees, w.Peer)
		}
	}
	return unfunded(pay, payees)
}

// unpaid: a client pays the proxies that are up.
func (c Client) unpaid(_ *Server, pay *Payments, _ int) string {
	return unfunded(pay, c.Proxies.Up())
}

// unfunded says how to fund a channel when the node can pay none of
// payees; "" when it can pay one.
func unfunded(pay *Payments, payees []peer.ID) string {
	if slices.ContainsFunc(payees, func(p peer.ID) bool { return pay.Channels.Payable(p) == nil }) {
		return ""
	}
	return fmt.Sprintf("no funded channel: send at least %d nanoTON plus fees to the wallet (cocoon wallet address), or lower payments.deposit", pay.Deposit)
}

func shortPeer(p peer.ID) string {
	str := p.String()
	if len(str) > 12 {
		return str[:4] + ".." + str[len(str)-6:]
	}
	return str
}
