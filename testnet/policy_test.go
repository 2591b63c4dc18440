package testnet_test

import (
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestDevEvidenceOnlyOnLocal: with no root contract, dev evidence is
// accepted only on the network "local". A testnet proxy refuses a peer
// presenting dev evidence (a dev worker's handshake), saying why, and
// holds no verdict on the dev worker flagged to it; a local proxy accepts
// the same evidence.
func TestDevEvidenceOnlyOnLocal(t *testing.T) {
	for _, tt := range []struct {
		network string
		refused bool
	}{
		{"local", false},
		{"testnet", true},
	} {
		t.Run(tt.network, func(t *testing.T) {
			if tdx.TestRootBuild && tt.network != "local" {
				t.Skip("a binary built with -tags cocoon_testroot runs only on a local network")
			}
			h := testnet.New(t)
			onNetwork := func(c *config.Config) { c.Network = tt.network }
			worker := h.AddWorker(onNetwork)
			proxy, err := h.Net.AddProxy(t.Context(), onNetwork) // its worker flagged; not waited for
			if err != nil {
				t.Fatal(err)
			}

			// A dev worker's handshake, from a host of its own.
			dw := p2ptest.NewHost(t)
			hs := attest.NewHandshaker(dw, dev.Issuer{}, nil, dev.Validator{}, attest.Config{Network: tt.network}, logtest.Discard)
			ai := peer.AddrInfo{ID: proxy.ID()}
			for _, a := range proxy.Addrs() {
				ai.Addrs = append(ai.Addrs, ma.StringCast(a).Decapsulate(ma.StringCast("/p2p/"+proxy.ID().String())))
			}
			if err := dw.Connect(t.Context(), ai); err != nil {
				t.Fatal(err)
			}
			_, err = hs.Attest(t.Context(), proxy.ID())
			switch {
			case tt.refused && (err == nil || !strings.Contains(err.Error(), "rejected our evidence") || !strings.Contains(err.Error(), dev.Kind)):
				t.Fatalf("a %s proxy with no root contract answered dev evidence with %v, want a rejection naming dev", tt.network, err)
			case !tt.refused && err != nil:
				t.Fatalf("a local proxy refused dev evidence: %v", err)
			}
			if _, ok := proxy.Verified(dw.ID()); ok == tt.refused {
				t.Fatalf("the %s proxy's verdict on a dev peer: %v, want %v", tt.network, ok, !tt.refused)
			}
			if tt.refused {
				proxy.Poke() // checks its flagged dev worker now
				if _, ok := proxy.Verified(worker.ID()); ok {
					t.Fatalf("the %s proxy holds a verdict on a dev worker", tt.network)
				}
			}
		})
	}
}
