package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// meshNet is a local network of one worker, one proxy and one client, all
// in this process.
//
// It is testnet.Start's sequence, with one addition Start lacks: options
// for the worker node, so that row 4 can put a recorder between the worker
// and its sim backend and learn the gaps the backend really made.
type meshNet struct {
	net    *testnet.Net
	dir    string
	client *node.Node
	proxy  *node.Node // with payments only
}

// Transports the nodes may listen on: the default is the nodes' own
// (TCP and QUIC, libp2p chooses).
var listenAddrs = map[string][]string{
	"default": nil,
	"tcp":     {"/ip4/127.0.0.1/tcp/0"},
	"quic":    {"/ip4/127.0.0.1/udp/0/quic-v1"},
}

// startMesh starts a network whose worker is configured by mods and opts,
// whose proxy and worker listen on transport, and waits until its client
// serves.
// With chain, the nodes find each other through a root contract on the
// sandbox chain, and with payments they also pay.
func startMesh(ctx context.Context, log *slog.Logger, transport string, chain, payments bool, mods []testnet.Modify, opts, clientOpts []node.Option) (*meshNet, error) {
	dir, err := os.MkdirTemp("", "cocoon-bench-")
	if err != nil {
		return nil, err
	}
	m := &meshNet{net: testnet.NewNet(dir, log), dir: dir}
	fail := func(what string, err error) (*meshNet, error) {
		m.Close()
		return nil, fmt.Errorf("starting %s: %w", what, err)
	}
	listen := func(c *config.Config) {
		if addrs := listenAddrs[transport]; addrs != nil {
			c.P2P.Listen = addrs
		}
	}
	if chain {
		// Nodes find each other through the root contract, the proxy
		// first.
		c, err := testnet.StartChain(ctx, "local", []string{mockModel}, log)
		if err != nil {
			return fail("the sandbox chain", err)
		}
		m.net.UseChain(c)
		if payments {
			if err := m.net.EnablePayments(); err != nil {
				return fail("payments", err)
			}
		}
		if m.proxy, err = m.net.AddProxy(ctx, listen); err != nil {
			return fail("proxy", err)
		}
	}
	if _, err := m.net.AddWorker(ctx, append([]testnet.Modify{listen}, mods...), opts...); err != nil {
		return fail("worker", err)
	}
	if !chain {
		if _, err := m.net.AddProxy(ctx, listen); err != nil {
			return fail("proxy", err)
		}
	}
	if m.client, err = m.net.AddNode(ctx, config.RoleClient, nil, clientOpts...); err != nil {
		return fail("client", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := testnet.WaitReady(wctx, m.client); err != nil {
		return fail("network", err)
	}
	if m.proxy != nil { // with payments: its channel to the worker is open too
		if err := testnet.WaitReady(wctx, m.proxy); err != nil {
			return fail("network", err)
		}
	}
	return m, nil
}

// URL is where the client takes chat requests.
func (m *meshNet) URL() string { return "http://" + m.client.APIAddr() + "/v1/chat/completions" }

// Close stops every node and removes the data dirs.
func (m *meshNet) Close() {
	m.net.Close()
	os.RemoveAll(m.dir)
}

// gapRecorder collects the gaps between the chunks an engine emits, so that
// what the app sees can be compared with what the engine really did, not
// with what it was told to do (timers fire late).
type gapRecorder struct {
	mu   sync.Mutex // guards gaps
	gaps []time.Duration
}

// add records one answer's gaps.
func (g *gapRecorder) add(gaps []time.Duration) {
	g.mu.Lock()
	g.gaps = append(g.gaps, gaps...)
	g.mu.Unlock()
}

// take returns the gaps recorded since the last take.
func (g *gapRecorder) take() []time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	gaps := g.gaps
	g.gaps = nil
	return gaps
}

// timedBackend records when its backend emits each chunk.
type timedBackend struct {
	inference.Backend
	rec *gapRecorder
}

func (b timedBackend) Generate(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
	var (
		last time.Time
		gaps []time.Duration
	)
	res, err := b.Backend.Generate(ctx, req, func(c inference.Chunk) error {
		now := time.Now()
		if !last.IsZero() {
			gaps = append(gaps, now.Sub(last))
		}
		last = now
		return emit(c)
	})
	b.rec.add(gaps)
	return res, err
}
