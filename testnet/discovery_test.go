package testnet_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// A worker behind NAT (no listener at all) holds a relay slot on the proxy
// it joins; another proxy, which hears of it only through gossip, reaches
// it through that relay and routes a client's request to it.
func TestPrivateWorkerReachedThroughRelay(t *testing.T) {
	h := testnet.New(t)
	a := h.AddProxyAlone()
	b := h.AddProxyAlone(func(c *config.Config) { c.Discovery.Bootstrap = a.Addrs() })
	w := h.AddWorker(testnet.Joining(a), func(c *config.Config) { c.P2P.Private, c.P2P.Listen = true, nil })
	p2ptest.Eventually(t, "the worker's relay slot", func() bool { return len(w.Addrs()) > 0 })
	for _, addr := range w.Addrs() {
		if !strings.Contains(addr, "/p2p-circuit") {
			t.Fatalf("the private worker has a direct address %s", addr)
		}
	}
	client := h.AddClient(func(c *config.Config) { c.Client.Proxies = b.Addrs() }) // ready once b serves the model

	c := sdk(client)
	resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "through the relay", 2))
	if err != nil {
		t.Fatal(err)
	}
	if served := servedBy(t, resp.RawJSON()); served != w.ID().String() {
		t.Fatalf("served by %q, want the private worker %s", served, w.ID())
	}
}

// Every node finds the others only through the root contract on the
// sandbox chain: no node is given another's address. A worker that starts
// after the proxy and client gets traffic; one that leaves stops getting
// it.
func TestDiscoveryThroughRootContract(t *testing.T) {
	h := testnet.New(t, testnet.WithChain("sim-small"))
	p := h.AddProxy()
	w := h.AddWorker()
	client := h.AddClient() // ready once the proxy serves a model: w's, found through the contract

	c := sdk(client)
	resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "found", 2))
	if err != nil {
		t.Fatal(err)
	}
	if served := servedBy(t, resp.RawJSON()); served != w.ID().String() {
		t.Fatalf("served by %q, want %s", served, w.ID())
	}

	// A second worker, started while the network runs, gets traffic too.
	late := h.AddWorker()
	p2ptest.Eventually(t, "the late worker to serve", func() bool {
		resp, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "late", 2))
		return err == nil && servedBy(t, resp.RawJSON()) == late.ID().String()
	})

	// Workers that leave stop getting traffic; with none left, 503.
	w.Close()
	late.Close()
	p2ptest.Eventually(t, "the gone workers' model to leave the proxy", func() bool { return !p.Ready(t.Context()) })
	_, err = c.Chat.Completions.New(t.Context(), chatParams("sim-small", "anyone?", 2))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
		t.Fatalf("after the workers left: %v, want 503", err)
	}
}

// A proxy the root contract does not list, which joined the DHT through
// one that it does, is found by a client through the DHT alone.
func TestProxyFoundInDHT(t *testing.T) {
	h := testnet.New(t, testnet.WithChain("sim-small"))
	listed := h.AddProxy()
	unlisted := h.AddProxyUnlisted(func(c *config.Config) { c.Discovery.Bootstrap = listed.Addrs() })
	h.AddWorker()
	client := h.AddClient()
	p2ptest.Eventually(t, "the client to find the unlisted proxy", func() bool {
		return slices.Contains(client.PeersUp(), unlisted.ID())
	})
}

// A worker whose load changes announces it within about a second, long
// before its next periodic announcement.
func TestLoadChangeAnnounced(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	b := &inferencetest.Backend{Served: inferencetest.Models("m"), Started: started, Gate: release,
		Chunks: []string{"done"}, Result: inference.Result{FinishReason: "stop"}}
	slow := func(c *config.Config) { c.Gossip.AnnounceInterval = config.Duration(30 * time.Second) }
	h := testnet.New(t)
	w := h.AddWorkerWith(b, slow, func(c *config.Config) { c.Worker.MaxConcurrent = 4 })
	p := h.AddProxy(slow)
	client := h.AddClient()
	load := func() int {
		for _, o := range p.Offers() {
			if o.Peer == w.ID().String() {
				return o.Load
			}
		}
		return -1
	}
	p2ptest.Eventually(t, "the worker's idle offer at the proxy", func() bool { return load() == 0 })

	c := sdk(client)
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := c.Chat.Completions.New(t.Context(), chatParams("m", "hold", 2))
			done <- err
		}()
	}
	<-started
	<-started
	p2ptest.Eventually(t, "the busy worker's load at the proxy", func() bool { return load() == 2 })
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// When the root contract stops accepting dev attestation, nodes drop the
// peers they verified on dev evidence and send them no more prompts: the
// client verifies no worker, and seals to none.
func TestDevAttestationTurnedOff(t *testing.T) {
	h := testnet.New(t, testnet.WithChain("sim-small"))
	h.AddProxy()
	h.AddWorker()
	client := h.AddClient()
	c := sdk(client)
	if _, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "allowed", 2)); err != nil {
		t.Fatal(err)
	}
	if err := h.Net.Chain().SetDevAttestation(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if err := h.Net.RefreshRegistry(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := c.Chat.Completions.New(t.Context(), chatParams("sim-small", "refused", 2))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || !strings.Contains(apiErr.Message, "verified") {
		t.Fatalf("after dev attestation was turned off: %v, want 503 for want of a worker the client verified", err)
	}
}
