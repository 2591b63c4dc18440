//go:build cocoon_testroot

package testnet_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestTDXIdentityInMemory: the key a TDX quote binds lives only in the
// TD. A TDX-issuer worker (synthetic quotes under a test root) refuses to
// start beside an identity.key on its data dir, planted by the host; it
// makes its key in memory at each start, so two starts on one data dir
// give two peer IDs, and both are routed to and paid: its wallet and
// ledger stay on disk, nothing else pins the old peer ID.
//
// Run with -tags cocoon_testroot (make test does).
func TestTDXIdentityInMemory(t *testing.T) {
	h, intel, m := tdxNet(t, testnet.WithPayments("sim-small"))
	ctx := t.Context()
	proxy := h.AddNode(config.RoleProxy, []node.Option{node.WithIntelPCS(intel.PCS())}, noDev,
		func(c *config.Config) { c.Attest.Issuer = "none" })

	dir := t.TempDir()
	startWorker := func() (*node.Node, error) {
		return h.Net.AddNode(ctx, config.RoleWorker, []testnet.Modify{noDev, func(c *config.Config) {
			c.Attest.Issuer, c.DataDir = "tdx", dir
		}}, node.WithIssuer(intel.Issuer(tdxtest.Spec{Measurement: m})), node.WithIntelPCS(intel.PCS()))
	}

	// The host plants a key it holds.
	if _, err := p2p.LoadOrCreateIdentity(dir); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(dir, p2p.IdentityFile)
	if _, err := startWorker(); !errors.Is(err, p2p.ErrIdentityOnDisk) {
		t.Fatalf("a TDX worker with a planted %s started (err %v), want ErrIdentityOnDisk", planted, err)
	}
	if err := os.Remove(planted); err != nil {
		t.Fatal(err)
	}

	first, err := startWorker()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(planted); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the TDX worker wrote %s (stat: %v)", planted, err)
	}
	client := h.AddNode(config.RoleClient, []node.Option{node.WithIntelPCS(intel.PCS())}, noDev)
	answeredBy(t, client, first.ID().String())
	waitPaid(t, first, proxy)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	restart := time.Now()
	second, err := startWorker()
	if err != nil {
		t.Fatal(err)
	}
	if second.ID() == first.ID() {
		t.Fatalf("two starts gave one peer ID %s", first.ID())
	}
	answeredBy(t, client, second.ID().String())
	answered := time.Since(restart)
	waitPaid(t, second, proxy)
	t.Logf("after the restart with a new peer ID: answered by it %v, paid %v after its start", answered.Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))
}

// answeredBy asks client until the worker want answers at tier tee; the
// client learns of it from its proxy's directory, as of any new worker.
func answeredBy(t *testing.T, client *node.Node, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		c := sdk(client)
		resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "which worker", 4))
		if err != nil {
			last = err.Error()
			continue
		}
		var ext struct {
			Cocoon struct {
				Tier   string `json:"tier"`
				Worker string `json:"worker"`
			} `json:"cocoon"`
		}
		if err := json.Unmarshal([]byte(resp.RawJSON()), &ext); err != nil {
			t.Fatal(err)
		}
		if ext.Cocoon.Worker == want && ext.Cocoon.Tier == "tee" {
			return
		}
		last = "served by " + ext.Cocoon.Worker + " at " + ext.Cocoon.Tier
	}
	t.Fatalf("no answer from the TDX worker %s within 60 s; last: %s", want, last)
}

// waitPaid waits until worker's ledger holds a payment from proxy.
func waitPaid(t *testing.T, worker, proxy *node.Node) {
	t.Helper()
	if err := waitFor(t.Context(), 60*time.Second, func() bool {
		_, received := channelOf(worker, proxy)
		return received > 0
	}); err != nil {
		t.Fatalf("worker %s was not paid by its proxy within 60 s: %v", worker.ID(), err)
	}
}
