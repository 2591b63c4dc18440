package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestChannelCommand: on a network with payments, `cocoon channel list`
// shows the client's channel to the proxy with what it paid, `cocoon
// status` shows the proxy's channels, `cocoon channel open` to a peer
// that is not one of the client's attested proxies (the worker) is
// refused before anything reaches the chain, and `cocoon channel close`
// closes the client's channel on chain.
func TestChannelCommand(t *testing.T) {
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	w := h.AddWorker()
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
	if err := run(t.Context(), []string{"status", "--admin", p.AdminURL()}, env(map[string]string{"COCOON_ADMIN_TOKEN": p.AdminToken()}), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "payments: spent") || !strings.Contains(out.String(), "payee") {
		t.Errorf("proxy status lacks its channels:\n%s", out.String())
	}

	channelsBefore := len(client.Channels().List())
	asked := time.Now()
	err := run(t.Context(), []string{"channel", "open", "--peer", w.ID().String(), "--data-dir", client.DataDir()}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "it is not a peer this client pays") {
		t.Errorf("channel open to the worker: %v, want a refusal", err)
	}
	t.Logf("channel open to a non-proxy refused in %v: %v", time.Since(asked).Round(time.Millisecond), err)
	if n := len(client.Channels().List()); n != channelsBefore {
		t.Errorf("the refused open left %d channels, had %d", n, channelsBefore)
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
