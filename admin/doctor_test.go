package admin_test

import (
	"context"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/channels"
)

// doctorCase is a node to examine, and what one of its checks must say.
type doctorCase struct {
	name string
	// tier is what the node's own evidence earns; tee if zero.
	tier          attest.Tier
	evErr, valErr error
	renewal       attest.Renewal // the state of the node's renewal
	role          admin.Role
	opts          []admin.Option
	// check is the check's name; result its result; detail and fix are
	// in its Detail and Fix. A pass has no fix, a warning or a failure has
	// one.
	check, result, detail, fix string
}

// doctorIDs are the peers of the doctor's tests: the node itself, two
// proxies, two workers and a client.
type doctorIDs struct{ self, p1, p2, w1, w2, c peer.ID }

func runDoctor(t *testing.T, ids doctorIDs, c doctorCase) []admin.Check {
	t.Helper()
	self, pub := testID(t, 1)
	if self != ids.self {
		t.Fatal("the node's ID is not doctorIDs.self")
	}
	tier := c.tier
	if tier == 0 {
		tier = attest.TierTEE
	}
	node := &fakeNode{id: self, tier: tier}
	hs := &fakeHandshaker{ev: &attest.Evidence{Kind: "tdx"}, evErr: c.evErr, renewal: c.renewal,
		verdicts: map[peer.ID]attest.Verdict{ids.p1: {Tier: attest.TierTEE}, ids.p2: {Tier: attest.TierTEE}}}
	v := fakeValidator{t: t, key: pub, v: attest.Verdict{Tier: tier, Kind: "tdx"}, err: c.valErr}
	srv := admin.New(admin.Config{Network: "testnet"}, node, admin.Attestation{Handshaker: hs, Validator: v, Key: pub},
		c.role, metrics.NewRequests("test"), logtest.Discard, c.opts...)
	return srv.Doctor(t.Context())
}

// failingRenewal is a renewal that failed 3 times; valid says whether the
// evidence it serves meanwhile is still valid.
func failingRenewal(valid bool) attest.Renewal {
	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return attest.Renewal{Expiry: since.Add(15 * time.Minute), Valid: valid, Failures: 3, LastError: "quote provider down",
		FailingSince: since, RetryAt: since.Add(4 * time.Second)}
}

func TestDoctor(t *testing.T) {
	var ids doctorIDs
	ids.self, _ = testID(t, 1)
	ids.p1, _ = testID(t, 2)
	ids.p2, _ = testID(t, 3)
	ids.w1, _ = testID(t, 4)
	ids.w2, _ = testID(t, 5)
	ids.c, _ = testID(t, 6)

	proxyOffer := &offers.Offer{Peer: ids.p1.String(), Role: offers.RoleProxy, Expiry: expiry}
	workerOffer := func(id peer.ID, prompt, completion int64) *offers.Offer {
		return &offers.Offer{Peer: id.String(), Role: offers.RoleWorker, Expiry: expiry,
			Models: []offers.ModelOffer{{ID: "m1", Price: payments.Price{Prompt: prompt, Completion: completion}}, {ID: "m2", Price: payments.Price{Prompt: 1e9}}}}
	}
	// A worker that passes every check but the ones a case changes.
	healthyWorker := func(change func(w *admin.Worker)) admin.Worker {
		w := admin.Worker{
			Engine:  fakeEngine{cat: &inference.Catalog{Models: []inference.Model{{ID: "m1"}}, Active: 1, MaxConcurrent: 8}, active: 1, cap: 8, stats: worker.Stats{Served: 3}},
			Proxies: fakeKeeper{peers: []peer.ID{ids.p1, ids.p2}, up: []peer.ID{ids.p1}},
			Offers:  fakeBook{proxyOffer}, Price: payments.Price{Prompt: 100, Completion: 200}, GPU: true,
		}
		if change != nil {
			change(&w)
		}
		return w
	}
	proxyRole := func(up bool, bootstrap int) admin.Proxy {
		return admin.Proxy{
			Router: fakeRouter{workers: []router.WorkerStats{
				{Peer: ids.w1, Up: up, Models: []string{"m1", "m2"}}, {Peer: ids.w2, Up: up, Models: []string{"m2", "m3"}}}},
			Workers: fakeKeeper{}, Offers: fakeBook{}, Bootstrap: bootstrap,
		}
	}
	client := func(up []peer.ID, u fakeUpstream) admin.Client {
		return admin.Client{Proxies: fakeKeeper{peers: []peer.ID{ids.p1, ids.p2}, up: up}, Upstream: u}
	}
	reg := func(bootstrap []peer.ID, models ...string) admin.Option {
		r := &registry.Registry{Seqno: 7, Measurements: make([]registry.Measurement, 1)}
		for _, id := range bootstrap {
			r.Bootstrap = append(r.Bootstrap, peer.AddrInfo{ID: id})
		}
		for _, m := range models {
			r.Models = append(r.Models, registry.Model{Hash: modelHash, Name: m})
		}
		return admin.WithRegistry("0:abc", fakeRegistry{r})
	}
	wallet := fakeWallet{addr: testAddress, balance: big.NewInt(5)}
	pay := func(w fakeWallet, payable []peer.ID, list ...channels.ChannelStatus) admin.Option {
		ch := &fakeChannels{list: list, payable: map[peer.ID]bool{}}
		for _, p := range payable {
			ch.payable[p] = true
		}
		return admin.WithPayments(admin.Payments{Channels: ch, Wallet: w, Deposit: 1_000_000})
	}
	fromClient := channels.ChannelStatus{Peer: ids.c, State: "open", Unsigned: 7}
	toWorker := channels.ChannelStatus{Peer: ids.w1, Payer: true, State: "open", Unsigned: 2}
	closed := channels.ChannelStatus{Peer: ids.w2, Payer: true, State: "closed", Unsigned: 100}
	short := func(p peer.ID) string { s := p.String(); return s[:4] + ".." + s[len(s)-6:] }

	for _, c := range []doctorCase{
		// Attestation.
		{name: "no evidence", evErr: errors.New("no TDX device"), role: healthyWorker(nil),
			check: "attestation", result: admin.Fail, detail: "cannot issue evidence: no TDX device", fix: "run inside an Intel TDX guest"},
		{name: "evidence refused", valErr: errors.New("measurement not allowed"), role: healthyWorker(nil),
			check: "attestation", result: admin.Fail, detail: "peers would refuse this node's tdx evidence: measurement not allowed", fix: "measurements the root contract allows"},
		{name: "dev evidence", tier: attest.TierDev, role: healthyWorker(nil),
			check: "attestation", result: admin.Warn, detail: "tdx evidence, verified as peers verify it: tier dev", fix: "dev evidence proves nothing"},
		{name: "tee evidence", role: healthyWorker(nil),
			check: "attestation", result: admin.Pass, detail: "tdx evidence, verified as peers verify it: tier tee"},
		{name: "renewal failing, evidence valid", role: healthyWorker(nil), renewal: failingRenewal(true),
			check: "attestation", result: admin.Warn, detail: "tier tee; renewal failing since 2026-12-01T10:00:00Z (3 attempts, next at 2026-12-01T10:00:04Z): quote provider down; serving the current evidence until it expires at 2026-12-01T10:15:00Z", fix: "retries with backoff"},
		{name: "renewal failing, evidence expired", role: healthyWorker(nil), renewal: failingRenewal(false), evErr: attest.ErrRenewal,
			check: "attestation", result: admin.Fail, detail: "the evidence expired and renewal failing since 2026-12-01T10:00:00Z (3 attempts, next at 2026-12-01T10:00:04Z): quote provider down; peers refuse this node", fix: "check the issuer"},
		// Root contract.
		{name: "no root contract", role: healthyWorker(nil),
			check: "root contract", result: admin.Warn, detail: "none configured", fix: "set discovery.root"},
		{name: "root contract not read", role: healthyWorker(nil), opts: []admin.Option{admin.WithRegistry("0:abc", fakeRegistry{})},
			check: "root contract", result: admin.Fail, detail: "not read yet", fix: "discovery.global_config"},
		{name: "root contract", role: healthyWorker(nil), opts: []admin.Option{reg([]peer.ID{ids.p1, ids.p2}, "m1", "m2")},
			check: "root contract", result: admin.Pass, detail: "0:abc, seqno 7: 2 bootstrap proxies, 1 allowed measurements, 2 models, dev attestation false"},
		// DHT.
		{name: "no dht", role: healthyWorker(nil),
			check: "dht", result: admin.Warn, detail: "off: no bootstrap peer", fix: "set discovery.root or discovery.bootstrap"},
		{name: "empty dht", role: healthyWorker(nil), opts: []admin.Option{admin.WithDHT(fakeDHT(0))},
			check: "dht", result: admin.Fail, detail: "no DHT server in the routing table", fix: "p2p.listen"},
		{name: "only proxy", role: proxyRole(true, 0), opts: []admin.Option{admin.WithDHT(fakeDHT(0)), reg([]peer.ID{ids.self})},
			check: "dht", result: admin.Warn, detail: "this is the network's only bootstrap proxy", fix: "nothing to do"},
		{name: "proxy with configured peers", role: proxyRole(true, 1), opts: []admin.Option{admin.WithDHT(fakeDHT(0)), reg([]peer.ID{ids.self})},
			check: "dht", result: admin.Fail, detail: "no DHT server in the routing table"},
		{name: "proxy with another in the root contract", role: proxyRole(true, 0), opts: []admin.Option{admin.WithDHT(fakeDHT(0)), reg([]peer.ID{ids.self, ids.p1})},
			check: "dht", result: admin.Fail, detail: "no DHT server in the routing table"},
		{name: "dht", role: healthyWorker(nil), opts: []admin.Option{admin.WithDHT(fakeDHT(4))},
			check: "dht", result: admin.Pass, detail: "4 servers in the routing table"},
		// A worker's GPU and engine.
		{name: "gpu off", role: healthyWorker(func(w *admin.Worker) { w.GPU = false }),
			check: "gpu confidential computing", result: admin.Warn, detail: "attest.gpu is off", fix: "set attest.gpu"},
		{name: "gpu without report", role: healthyWorker(nil),
			check: "gpu confidential computing", result: admin.Fail, detail: "carries no accepted GPU report", fix: "nvidia-smi conf-compute -scc on"},
		{name: "gpu", tier: attest.TierTEEGPU, role: healthyWorker(nil),
			check: "gpu confidential computing", result: admin.Pass, detail: "GPU evidence attached: tier tee-gpu"},
		{name: "engine down", role: healthyWorker(func(w *admin.Worker) { w.Engine = fakeEngine{err: errors.New("connection refused")} }),
			check: "engine", result: admin.Fail, detail: "the engine does not answer: connection refused", fix: "worker.openai.url"},
		{name: "engine without model", role: healthyWorker(func(w *admin.Worker) { w.Engine = fakeEngine{cat: &inference.Catalog{}} }),
			check: "engine", result: admin.Fail, detail: "the engine serves no model", fix: "load a model"},
		{name: "model not listed", role: healthyWorker(nil), opts: []admin.Option{reg(nil, "m2")},
			check: "engine", result: admin.Warn, detail: "serving m1 (1/8 requests active); not in the root contract's model list: m1", fix: "serve a model the network lists"},
		{name: "engine", role: healthyWorker(nil), opts: []admin.Option{reg(nil, "m1")},
			check: "engine", result: admin.Pass, detail: "serving m1 (1/8 requests active)"},
		// A worker's proxies, selection and price.
		{name: "worker unheard", role: healthyWorker(func(w *admin.Worker) { w.Offers = fakeBook{} }),
			check: "proxies", result: admin.Warn, detail: "1 of 2 known proxies reachable (1 with evidence this node verified); no proxy's offer heard", fix: "wait a gossip interval"},
		{name: "worker's proxies", role: healthyWorker(nil),
			check: "proxies", result: admin.Pass, detail: "1 of 2 known proxies reachable (1 with evidence this node verified)"},
		{name: "no proxy known", role: healthyWorker(func(w *admin.Worker) { w.Proxies = fakeKeeper{} }),
			check: "proxies", result: admin.Fail, detail: "no proxy known", fix: "worker.proxies / client.proxies"},
		{name: "no proxy up", role: healthyWorker(func(w *admin.Worker) { w.Proxies = fakeKeeper{peers: []peer.ID{ids.p1, ids.p2}} }),
			check: "proxies", result: admin.Fail, detail: "none of 2 known proxies is reachable", fix: "handshake or dial errors"},
		// A proxy needs no evidence: what it relays is sealed.
		{name: "proxy up without evidence", role: healthyWorker(func(w *admin.Worker) { w.Proxies = fakeKeeper{peers: []peer.ID{ids.w1}, up: []peer.ID{ids.w1}} }),
			check: "proxies", result: admin.Pass, detail: "1 of 1 known proxies reachable (0 with evidence this node verified)"},
		{name: "not selected", role: healthyWorker(func(w *admin.Worker) { w.Engine = fakeEngine{cat: &inference.Catalog{}, active: 1} }),
			check: "selected", result: admin.Warn, detail: "no request answered since start", fix: "proxies prefer cheaper, faster workers"},
		{name: "selected", role: healthyWorker(nil),
			check: "selected", result: admin.Pass, detail: "3 requests answered since start, 1 active"},
		{name: "price alone", role: healthyWorker(func(w *admin.Worker) { w.Offers = fakeBook{proxyOffer, workerOffer(ids.self, 1, 1)} }),
			check: "price", result: admin.Pass, detail: "300 nanoTON per million prompt+completion tokens; no other worker's offer to compare"},
		{name: "price high", role: healthyWorker(func(w *admin.Worker) {
			w.Offers = fakeBook{workerOffer(ids.w1, 50, 50), workerOffer(ids.self, 1, 1), workerOffer(ids.w2, 100, 100), workerOffer(ids.c, 75, 75)}
		}), check: "price", result: admin.Warn, detail: "300 nanoTON per million prompt+completion tokens; going rate (median of 3 workers) 150, cheapest 100",
			fix: "lower worker.price"},
		{name: "price at the going rate", role: healthyWorker(func(w *admin.Worker) { w.Offers = fakeBook{workerOffer(ids.w1, 100, 100)} }),
			check: "price", result: admin.Pass, detail: "going rate (median of 1 workers) 200, cheapest 200"},
		// A proxy's workers.
		{name: "no worker", role: proxyRole(false, 0),
			check: "workers", result: admin.Fail, detail: "no worker to route to", fix: "root contract's bootstrap list"},
		{name: "workers", role: proxyRole(true, 0),
			check: "workers", result: admin.Pass, detail: "2 workers up, serving 3 models"},
		// A client's proxies and models.
		{name: "client's proxies", role: client([]peer.ID{ids.p1, ids.p2}, fakeUpstream{}),
			check: "proxies", result: admin.Pass, detail: "2 of 2 known proxies reachable (2 with evidence this node verified)"},
		{name: "no model reachable", role: client(nil, fakeUpstream{err: errors.New("no proxy available")}),
			check: "models", result: admin.Fail, detail: "no model reachable: no proxy available", fix: "the proxies have no worker up"},
		{name: "no model", role: client(nil, fakeUpstream{cat: &inference.Catalog{}}),
			check: "models", result: admin.Fail, detail: "no model reachable", fix: "see proxies above"},
		{name: "models", role: client(nil, fakeUpstream{cat: &inference.Catalog{Models: []inference.Model{{ID: "m1"}, {ID: "m2"}}}}),
			check: "models", result: admin.Pass, detail: "m1, m2"},
		// Payments.
		{name: "payments off", role: healthyWorker(nil),
			check: "payments", result: admin.Warn, detail: "off (payments.enabled)", fix: "set payments.enabled"},
		{name: "no balance", role: healthyWorker(nil), opts: []admin.Option{pay(fakeWallet{addr: testAddress, err: errors.New("lite server down")}, nil)},
			check: "payments", result: admin.Fail, detail: "wallet " + testAddress.String() + ": cannot read the balance: lite server down", fix: "check the chain connection"},
		{name: "worker unpaid", role: healthyWorker(nil), opts: []admin.Option{pay(wallet, nil, closed)},
			check: "payments", result: admin.Fail, detail: "wallet " + testAddress.String() + " holds 5 nanoTON; 0 open channels (), 0 nanoTON not yet signed for",
			fix: "no proxy has opened a channel to this worker"},
		{name: "worker paid", role: healthyWorker(nil), opts: []admin.Option{pay(wallet, nil, fromClient, closed)},
			check: "payments", result: admin.Pass, detail: "holds 5 nanoTON; 1 open channels (from " + short(ids.c) + "), 7 nanoTON not yet signed for"},
		{name: "client unfunded", role: client([]peer.ID{ids.p1}, fakeUpstream{}), opts: []admin.Option{pay(wallet, []peer.ID{ids.p2})},
			check: "payments", result: admin.Fail, detail: "0 open channels", fix: "send at least 1000000 nanoTON plus fees to the wallet"},
		{name: "client paying a proxy without evidence", role: admin.Client{Proxies: fakeKeeper{up: []peer.ID{ids.w1}}, Upstream: fakeUpstream{}},
			opts: []admin.Option{pay(wallet, []peer.ID{ids.w1})}, check: "payments", result: admin.Pass, detail: "holds 5 nanoTON"},
		{name: "client funded", role: client([]peer.ID{ids.p1}, fakeUpstream{}), opts: []admin.Option{pay(wallet, []peer.ID{ids.p1}, toWorker)},
			check: "payments", result: admin.Pass, detail: "1 open channels (to " + short(ids.w1) + "), 2 nanoTON not yet signed for"},
		{name: "proxy unfunded", role: proxyRole(true, 0), opts: []admin.Option{pay(wallet, nil, fromClient)},
			check: "payments", result: admin.Fail, fix: "or lower payments.deposit"},
		{name: "proxy's workers down", role: proxyRole(false, 0), opts: []admin.Option{pay(wallet, []peer.ID{ids.w1})},
			check: "payments", result: admin.Fail, fix: "no funded channel"},
		{name: "proxy funded", role: proxyRole(true, 0), opts: []admin.Option{pay(wallet, []peer.ID{ids.w2}, fromClient, toWorker)},
			check: "payments", result: admin.Pass, detail: "2 open channels (from " + short(ids.c) + ", to " + short(ids.w1) + "), 9 nanoTON not yet signed for"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checks := runDoctor(t, ids, c)
			i := slices.IndexFunc(checks, func(ch admin.Check) bool { return ch.Name == c.check })
			if i < 0 {
				t.Fatalf("no %q check in %+v", c.check, checks)
			}
			got := checks[i]
			if got.Result != c.result || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("%s: %s %q, want %s with %q", c.check, got.Result, got.Detail, c.result, c.detail)
			}
			switch {
			case got.Result == admin.Pass && got.Fix != "":
				t.Errorf("%s passes with a fix: %q", c.check, got.Fix)
			case got.Result != admin.Pass && got.Fix == "":
				t.Errorf("%s: %s without a fix", c.check, got.Result)
			case !strings.Contains(got.Fix, c.fix):
				t.Errorf("%s: fix %q, want it to say %q", c.check, got.Fix, c.fix)
			}
		})
	}
}

// TestDoctorChecks: each role gets its checks, in this order.
func TestDoctorChecks(t *testing.T) {
	_, pub := testID(t, 1)
	for _, c := range []struct {
		role admin.Role
		want []string
	}{
		{admin.Worker{Engine: fakeEngine{err: errors.New("down")}, Proxies: fakeKeeper{}, Offers: fakeBook{}},
			[]string{"attestation", "root contract", "dht", "gpu confidential computing", "engine", "proxies", "selected", "price", "payments"}},
		{admin.Proxy{Router: fakeRouter{}, Workers: fakeKeeper{}, Offers: fakeBook{}},
			[]string{"attestation", "root contract", "dht", "workers", "payments"}},
		{admin.Client{Proxies: fakeKeeper{}, Upstream: fakeUpstream{err: errors.New("none")}},
			[]string{"attestation", "root contract", "dht", "proxies", "models", "payments"}},
	} {
		id, _ := testID(t, 1)
		srv := newServer(t, admin.Config{}, &fakeNode{id: id, tier: attest.TierTEE}, &fakeHandshaker{ev: &attest.Evidence{Kind: "tdx"}}, pub, c.role)
		var got []string
		for _, ch := range srv.Doctor(context.Background()) {
			got = append(got, ch.Name)
			if ch.Result != admin.Pass && ch.Result != admin.Warn && ch.Result != admin.Fail {
				t.Errorf("%s: result %q", ch.Name, ch.Result)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("checks %q, want %q", got, c.want)
		}
	}
}
