package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestDoctorCommand: on a network with payments, a serving worker's and a
// client's checks pass (dev evidence is a warning), and a worker whose
// engine is gone fails the engine check, with its fix, and makes the
// command exit non-zero.
func TestDoctorCommand(t *testing.T) {
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	h.AddProxy()
	w := h.AddWorker()
	client := h.AddClient()
	chatOnce(t, client)

	results := func(nd *node.Node) map[string]admin.Check {
		var out bytes.Buffer
		err := run(t.Context(), []string{"doctor", "--admin", nd.AdminURL(), "--data-dir", nd.DataDir(), "--json"}, env(nil), &out, io.Discard)
		if err != nil && !errors.Is(err, errDoctorFailed) {
			t.Fatal(err)
		}
		var checks []admin.Check
		if err := json.Unmarshal(out.Bytes(), &checks); err != nil {
			t.Fatal(err)
		}
		m := map[string]admin.Check{}
		for _, c := range checks {
			m[c.Name] = c
		}
		return m
	}
	p2ptest.Eventually(t, "the worker's doctor to pass", func() bool {
		c := results(w)
		for _, name := range []string{"engine", "root contract", "dht", "proxies", "selected", "payments", "price"} {
			if c[name].Result != admin.Pass {
				return false
			}
		}
		return c["attestation"].Result == admin.Warn && strings.Contains(c["attestation"].Fix, "TDX")
	})
	c := results(client)
	for _, name := range []string{"proxies", "models", "payments"} {
		if c[name].Result != admin.Pass {
			t.Errorf("client check %s: %+v", name, c[name])
		}
	}

	// A worker whose engine does not answer.
	broken := h.AddWorker(func(c *config.Config) {
		c.Worker.Backend = "openai"
		c.Worker.OpenAI.URL = "http://127.0.0.1:9/v1" // discard port: nothing listens
	})
	var out bytes.Buffer
	err := run(t.Context(), []string{"doctor", "--data-dir", broken.DataDir()}, env(nil), &out, io.Discard)
	if !errors.Is(err, errDoctorFailed) {
		t.Fatalf("doctor of a worker without an engine: %v, want errDoctorFailed\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "FAIL  engine") || !strings.Contains(out.String(), "fix: start the engine") {
		t.Errorf("doctor output:\n%s", out.String())
	}
}
