package admin_test

import (
	"encoding/json"
	"errors"
	"math/big"
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
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/channels"
)

// expiry is when the test offers expire, and how the status writes it.
var (
	expiry     = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	expiryText = "2030-01-02T03:04:05Z"
)

// proxyFixture is a proxy P on the network "testnet" that sees everything a status can show: a
// root contract, the DHT, workers W1 (up, attested) and W2 (down), a
// client C paying it, and another proxy X's offer.
type proxyFixture struct {
	p, w1, w2, c, x peer.ID
	srv             *admin.Server
	channels        *fakeChannels
	replace         *strings.Replacer // $P, $W1, ... to their IDs
}

func newProxyFixture(t *testing.T, cfg admin.Config) *proxyFixture {
	t.Helper()
	f := &proxyFixture{}
	p, pub := testID(t, 1)
	f.p = p
	f.w1, _ = testID(t, 2)
	f.w2, _ = testID(t, 3)
	f.c, _ = testID(t, 4)
	f.x, _ = testID(t, 5)
	f.replace = strings.NewReplacer("$P", f.p.String(), "$W1", f.w1.String(), "$W2", f.w2.String(), "$C", f.c.String(), "$X", f.x.String())
	node := &fakeNode{id: p, addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + p.String()}, connected: 3, ready: true, tier: attest.TierTEE}
	hs := &fakeHandshaker{ev: &attest.Evidence{Kind: "tdx"}, verdicts: map[peer.ID]attest.Verdict{f.w1: {Tier: attest.TierTEEGPU}}}
	reg := &registry.Registry{Seqno: 7, Bootstrap: []peer.AddrInfo{{ID: p}, {ID: f.x}}, Measurements: make([]registry.Measurement, 1),
		Models: []registry.Model{{Hash: modelHash, Name: "m1"}, {Hash: modelHash, Name: "m2"}}, Fees: registry.Fees{ProxyFeePPM: 20_000}}
	book := fakeBook{
		{Peer: f.w1.String(), Role: offers.RoleWorker, Expiry: expiry, MaxConcurrent: 8, Load: 2, Tier: "tee-gpu",
			Models: []offers.ModelOffer{{ID: "m1", Price: payments.Price{Prompt: 100, Cached: 10, Completion: 200}}, {ID: "m2", Price: payments.Price{Prompt: 1}}}},
		{Peer: f.x.String(), Role: offers.RoleProxy, Expiry: expiry, FeePPM: 1000},
	}
	rt := fakeRouter{
		workers: []router.WorkerStats{
			{Peer: f.w1, Up: true, Models: []string{"m1"}, MaxConcurrent: 8, Active: 2, Served: 5, Failures: 1, TTFT: 1500 * time.Microsecond, Success: 0.9},
			{Peer: f.w2, MaxConcurrent: 4, Success: 1},
		},
		cat: &inference.Catalog{Models: []inference.Model{{ID: "m1", Workers: 1}}},
	}
	f.channels = &fakeChannels{
		list: []channels.ChannelStatus{
			{Peer: f.c, Address: "0:c1", Deposit: 1000, Seqno: 3, Received: 300, Unsigned: 5, State: "open"},
			{Peer: f.w1, Address: "0:w1", Payer: true, Deposit: 2000, Seqno: 4, Sent: 200, State: "open"},
			{Peer: f.w2, Address: "0:w2", Payer: true, Deposit: 500, Seqno: 1, Sent: 50, State: "closed"},
		},
		payable: map[peer.ID]bool{f.w1: true},
	}
	role := admin.Proxy{Router: rt, Workers: fakeKeeper{peers: []peer.ID{f.w1, f.w2}, up: []peer.ID{f.w1}}, Offers: book}
	f.srv = newServer(t, cfg, node, hs, pub, role,
		admin.WithRegistry("0:abc", fakeRegistry{reg}), admin.WithDHT(fakeDHT(4)),
		admin.WithPayments(admin.Payments{Channels: f.channels, Wallet: fakeWallet{addr: testAddress, balance: big.NewInt(4200)}, Deposit: 1_000_000,
			Payees: fakePayees{f.w1, f.w2}}))
	return f
}

// proxyStatus is the fixture's status as the admin API writes it.
const proxyStatus = `{
  "role": "proxy",
  "network": "testnet",
  "peer": "$P",
  "addrs": [
    "/ip4/127.0.0.1/tcp/4001/p2p/$P"
  ],
  "ready": true,
  "tier": "tee",
  "registry": {
    "address": "0:abc",
    "seqno": 7,
    "bootstrap": 2,
    "measurements": 1,
    "models": 2,
    "dev_attestation": false,
    "proxy_fee_ppm": 20000
  },
  "dht_routing_table": 4,
  "connected": 3,
  "kept": [
    {
      "peer": "$W1",
      "up": true,
      "attested": "tee-gpu"
    },
    {
      "peer": "$W2",
      "up": false
    }
  ],
  "offers": [
    {
      "peer": "$W1",
      "role": "worker",
      "models": [
        "m1",
        "m2"
      ],
      "price": 300,
      "load": 2,
      "capacity": 8,
      "tier": "tee-gpu",
      "expires": "2030-01-02T03:04:05Z"
    },
    {
      "peer": "$X",
      "role": "proxy",
      "load": 0,
      "fee_ppm": 1000,
      "expires": "2030-01-02T03:04:05Z"
    }
  ],
  "workers": [
    {
      "peer": "$W1",
      "up": true,
      "models": [
        "m1"
      ],
      "active": 2,
      "capacity": 8,
      "served": 5,
      "failures": 1,
      "ttft_ms": 1.5,
      "success": 0.9
    },
    {
      "peer": "$W2",
      "up": false,
      "models": null,
      "active": 0,
      "capacity": 4,
      "served": 0,
      "failures": 0,
      "ttft_ms": 0,
      "success": 1
    }
  ],
  "payments": {
    "earned_nanoton": 300,
    "spent_nanoton": 250,
    "in_flight_nanoton": 5,
    "reserved_nanoton": 0,
    "settled_nanoton": 0,
    "withdrawable_nanoton": 4200,
    "channels": [
      {
        "peer": "$C",
        "address": "0:c1",
        "role": "payee",
        "deposit_nanoton": 1000,
        "sent_nanoton": 0,
        "received_nanoton": 300,
        "unsigned_nanoton": 5,
        "reserved_nanoton": 0,
        "seqno": 3,
        "state": "open"
      },
      {
        "peer": "$W1",
        "address": "0:w1",
        "role": "payer",
        "deposit_nanoton": 2000,
        "sent_nanoton": 200,
        "received_nanoton": 0,
        "unsigned_nanoton": 0,
        "reserved_nanoton": 0,
        "seqno": 4,
        "state": "open"
      },
      {
        "peer": "$W2",
        "address": "0:w2",
        "role": "payer",
        "deposit_nanoton": 500,
        "sent_nanoton": 50,
        "received_nanoton": 0,
        "unsigned_nanoton": 0,
        "reserved_nanoton": 0,
        "seqno": 1,
        "state": "closed"
      }
    ]
  }
}`

// TestStatusJSON: a proxy's status, with every part a status has, is
// this JSON, key for key: `cocoon status`, the dashboard and scripts read it.
func TestStatusJSON(t *testing.T) {
	f := newProxyFixture(t, admin.Config{Network: "testnet"})
	b, err := json.MarshalIndent(f.srv.Status(t.Context()), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if want := f.replace.Replace(proxyStatus); string(b) != want {
		t.Errorf("status:\n%s\nwant:\n%s", b, want)
	}
}

func TestStatusRoles(t *testing.T) {
	w, pub := testID(t, 2)
	p1, _ := testID(t, 1)
	p2, _ := testID(t, 5)
	hs := &fakeHandshaker{verdicts: map[peer.ID]attest.Verdict{p1: {Tier: attest.TierDev}}}
	kept := fakeKeeper{peers: []peer.ID{p1, p2}, up: []peer.ID{p1}}
	wantKept := []admin.KeptPeer{{Peer: p1.String(), Up: true, Attested: "dev"}, {Peer: p2.String()}}
	for _, c := range []struct {
		name  string
		node  *fakeNode
		role  admin.Role
		check func(t *testing.T, s admin.Status)
	}{
		{"worker", &fakeNode{id: w, tier: attest.TierTEEGPU, ready: true}, admin.Worker{
			Engine:  fakeEngine{active: 3, cap: 8, stats: worker.Stats{TTFT: 41500 * time.Microsecond, TokensPerSec: 33.3, Served: 12}},
			Proxies: kept,
			Offers: fakeBook{{Peer: w.String(), Role: offers.RoleWorker, Expiry: expiry,
				Models: []offers.ModelOffer{{ID: "m", Price: payments.Price{Prompt: 5, Completion: 6}}}}},
		}, func(t *testing.T, s admin.Status) {
			want := admin.ServingStatus{Active: 3, Capacity: 8, Served: 12, TTFTms: 41.5, TokensPerSec: 33.3}
			if s.Serving == nil || *s.Serving != want {
				t.Errorf("serving = %+v, want %+v", s.Serving, want)
			}
			if len(s.Offers) != 1 || s.Offers[0].Price != 11 || s.Offers[0].Expires != expiryText || s.Offers[0].Models[0] != "m" {
				t.Errorf("offers = %+v", s.Offers)
			}
			if s.Tier != "tee-gpu" || !s.Ready || s.Workers != nil || s.APIAddr != "" {
				t.Errorf("status = %+v", s)
			}
		}},
		{"client", &fakeNode{id: w, tierErr: errors.New("own evidence of kind \"x\" has no trust tier")}, admin.Client{
			Proxies: kept, Upstream: fakeUpstream{}, APIAddr: "127.0.0.1:10000",
		}, func(t *testing.T, s admin.Status) {
			if s.APIAddr != "127.0.0.1:10000" || s.Offers != nil || s.Serving != nil || s.Workers != nil || s.Tier != "" {
				t.Errorf("status = %+v", s)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(t, admin.Config{Network: "local"}, c.node, hs, pub, c.role).Status(t.Context())
			if s.Role != c.name || s.Network != "local" || s.Peer != w.String() {
				t.Errorf("role %q, network %q, peer %q", s.Role, s.Network, s.Peer)
			}
			if s.DHT != -1 || s.Registry != nil || s.Payments != nil {
				t.Errorf("without DHT, root contract or payments: dht %d, registry %+v, payments %+v", s.DHT, s.Registry, s.Payments)
			}
			if len(s.Kept) != 2 || s.Kept[0] != wantKept[0] || s.Kept[1] != wantKept[1] {
				t.Errorf("kept = %+v, want %+v", s.Kept, wantKept)
			}
			c.check(t, s)
		})
	}
}

// TestStatusBeforeStart: a node whose host is not up shows only its role
// and network.
func TestStatusBeforeStart(t *testing.T) {
	_, pub := testID(t, 1)
	srv := newServer(t, admin.Config{Network: "local"}, &fakeNode{}, &fakeHandshaker{}, pub,
		admin.Client{Proxies: fakeKeeper{}, Upstream: fakeUpstream{}}, admin.WithDHT(fakeDHT(3)))
	got := srv.Status(t.Context())
	if want := (admin.Status{Role: "client", Network: "local", DHT: -1}); got.Role != want.Role || got.Network != want.Network ||
		got.DHT != want.DHT || got.Peer != "" || got.Addrs != nil || got.Kept != nil || got.APIAddr != "" {
		t.Errorf("status = %+v, want %+v", got, want)
	}
}
