package p2ptest_test

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestHelpers(t *testing.T) {
	var a, b host.Host
	t.Run("connected loopback hosts", func(t *testing.T) {
		a, b = p2ptest.NewHost(t), p2ptest.NewHost(t)
		for _, h := range []host.Host{a, b} {
			if len(h.Addrs()) == 0 {
				t.Fatal("the host listens nowhere")
			}
			for _, addr := range h.Addrs() {
				if !manet.IsIPLoopback(addr) {
					t.Errorf("listening on non-loopback %s", addr)
				}
			}
		}
		p2ptest.Connect(t, a, b)
		if c := a.Network().Connectedness(b.ID()); c != network.Connected {
			t.Fatalf("connectedness %v after Connect", c)
		}

		ch := make(chan string, 1)
		ch <- "sent"
		if got := p2ptest.WaitFor(t, ch, "a value"); got != "sent" {
			t.Fatalf("WaitFor = %q, want the sent value", got)
		}
		close(ch)
		if got := p2ptest.WaitFor(t, ch, "the close"); got != "" {
			t.Fatalf("WaitFor on a closed channel = %q, want the zero value", got)
		}
	})
	// The subtest's cleanup closed both hosts.
	for _, h := range []host.Host{a, b} {
		if addrs := h.Network().ListenAddresses(); len(addrs) != 0 {
			t.Errorf("still listening on %v after cleanup", addrs)
		}
	}
}
