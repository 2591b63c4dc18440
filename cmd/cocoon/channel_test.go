package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestChannelCommand: on a network with payments, `cocoon channel list`
// shows the client's channel to the proxy with what it paid, `cocoon
// status` shows the proxy's channels, and `cocoon channel close` closes
// the client's channel on chain.
func TestChannelCommand(t *testing.T) {
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	h.AddWorker()
	client := h.AddClient()
	chatOnce(t, client)
	// Settled: the proxy holds a signed state for everything.
	p2ptest.Eventually(t, "the client's payment to settle", func() bool {
		for _, c := range client.Channels().List() {
			if c.Payer && c.Sent > 0 && c.Unsigned == 0 {
				return true
			}
		}
		return false
	})

	var out bytes.Buffer
	if err := run(t.Context(), []string{"channel", "list", "--data-dir", client.DataDir()}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"payer", p.ID().String(), "open", "spent "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("channel list lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"status", "--admin", p.AdminURL()}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "payments: spent") || !strings.Contains(out.String(), "payee") {
		t.Errorf("proxy status lacks its channels:\n%s", out.String())
	}

	if err := run(t.Context(), []string{"channel", "close", "--data-dir", client.DataDir()}, env(nil), io.Discard, io.Discard); err == nil {
		t.Error("channel close without --peer succeeded")
	}
	out.Reset()
	if err := run(t.Context(), []string{"channel", "close", "--peer", p.ID().String(), "--data-dir", client.DataDir()}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "closed") {
		t.Errorf("after the close:\n%s", out.String())
	}
}
