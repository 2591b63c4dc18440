package testnet

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// TB is the part of testing.TB the harness needs.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Context() context.Context
}

// Harness is a local network whose nodes live as long as a test.
type Harness struct {
	tb  TB
	Net *Net
}

// Option changes how New builds a network.
type Option func(*options)

type options struct {
	chain    bool
	models   []string
	payments bool
}

// WithPayments turns payments on (it implies WithChain): every node gets a
// funded wallet, clients and proxies open channels, and answers are paid.
func WithPayments(models ...string) Option {
	return func(o *options) { o.chain, o.payments = true, true; o.models = append(o.models, models...) }
}

// WithChain starts the sandbox chain and deploys a root contract allowing
// models; nodes then find each other only through it (see Net.UseChain).
func WithChain(models ...string) Option {
	return func(o *options) { o.chain, o.models = true, models }
}

// New makes an empty network for tb; every node is closed by tb.Cleanup.
// Node logs go to tb.Logf, shown when a test fails or with -v.
func New(tb TB, opts ...Option) *Harness {
	tb.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	w := &tbWriter{tb: tb}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := NewNet(tb.TempDir(), log)
	tb.Cleanup(func() {
		n.Close()
		w.stop()
	})
	if o.chain {
		c, err := StartChain(tb.Context(), n.network, o.models, log)
		if err != nil {
			tb.Fatalf("%v", err)
		}
		n.UseChain(c)
		if o.payments {
			if err := n.EnablePayments(); err != nil {
				tb.Fatalf("%v", err)
			}
		}
	}
	return &Harness{tb: tb, Net: n}
}

// AddWorker starts a sim worker; mods change its configuration.
func (h *Harness) AddWorker(mods ...Modify) *node.Node {
	h.tb.Helper()
	nd, err := h.Net.AddWorker(h.tb.Context(), mods)
	if err != nil {
		h.tb.Fatalf("starting worker: %v", err)
	}
	return nd
}

// AddWorkerWith starts a worker serving b.
func (h *Harness) AddWorkerWith(b inference.Backend, mods ...Modify) *node.Node {
	h.tb.Helper()
	nd, err := h.Net.AddWorker(h.tb.Context(), mods, node.WithBackend(b))
	if err != nil {
		h.tb.Fatalf("starting worker: %v", err)
	}
	return nd
}

// AddProxy starts a proxy that knows every worker added so far and waits
// until it has every one of them up. On a network with a chain it only
// starts the proxy and lists it in the root contract: workers find it.
func (h *Harness) AddProxy(mods ...Modify) *node.Node {
	h.tb.Helper()
	if h.Net.chain != nil {
		return h.AddProxyAlone(mods...)
	}
	h.Net.mu.Lock()
	workers := len(h.Net.workers)
	h.Net.mu.Unlock()
	nd, err := h.Net.AddProxy(h.tb.Context(), mods...)
	if err != nil {
		h.tb.Fatalf("starting proxy: %v", err)
	}
	h.waitReady(nd)
	ctx, cancel := context.WithTimeout(h.tb.Context(), 30*time.Second)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for len(nd.PeersUp()) < workers {
		nd.Poke()
		select {
		case <-ctx.Done():
			h.tb.Fatalf("proxy has %d of %d workers up", len(nd.PeersUp()), workers)
		case <-t.C:
		}
	}
	return nd
}

// AddProxyAlone starts a proxy that is told of no worker: workers join it
// (see Joining) and it finds them from their offers.
func (h *Harness) AddProxyAlone(mods ...Modify) *node.Node {
	h.tb.Helper()
	nd, err := h.Net.AddProxy(h.tb.Context(), append([]Modify{func(c *config.Config) { c.Proxy.Workers = nil }}, mods...)...)
	if err != nil {
		h.tb.Fatalf("starting proxy: %v", err)
	}
	return nd
}

// AddProxyUnlisted starts a proxy the root contract does not list (see
// Net.AddProxyUnlisted).
func (h *Harness) AddProxyUnlisted(mods ...Modify) *node.Node {
	h.tb.Helper()
	nd, err := h.Net.AddProxyUnlisted(h.tb.Context(), mods...)
	if err != nil {
		h.tb.Fatalf("starting proxy: %v", err)
	}
	return nd
}

// Joining makes a worker join proxies, as a worker that starts after them
// does.
func Joining(proxies ...*node.Node) Modify {
	return func(c *config.Config) {
		for _, p := range proxies {
			c.Worker.Proxies = append(c.Worker.Proxies, p.Addrs()...)
		}
	}
}

func (h *Harness) waitReady(nd *node.Node) {
	h.tb.Helper()
	ctx, cancel := context.WithTimeout(h.tb.Context(), 30*time.Second)
	defer cancel()
	if err := WaitReady(ctx, nd); err != nil {
		h.tb.Fatalf("%v", err)
	}
}

// AddClient starts a client that knows every proxy added so far and waits
// until it is ready to serve.
func (h *Harness) AddClient(mods ...Modify) *node.Node {
	h.tb.Helper()
	nd, err := h.Net.AddClient(h.tb.Context(), mods...)
	if err != nil {
		h.tb.Fatalf("starting client: %v", err)
	}
	h.waitReady(nd)
	return nd
}

// AddNode starts a node of role with node options; a client is waited for
// until it is ready. On a network with a chain, a proxy is listed in the
// root contract.
func (h *Harness) AddNode(role config.Role, opts []node.Option, mods ...Modify) *node.Node {
	h.tb.Helper()
	nd, err := h.Net.AddNode(h.tb.Context(), role, mods, opts...)
	if err != nil {
		h.tb.Fatalf("starting %v: %v", role, err)
	}
	if role == config.RoleClient {
		h.waitReady(nd)
	}
	return nd
}

// BaseURL is a client's OpenAI base URL, http://127.0.0.1:port/v1.
func BaseURL(client *node.Node) string { return "http://" + client.APIAddr() + "/v1" }

// tbWriter sends log lines to tb.Logf until the test's cleanup stops it.
type tbWriter struct {
	mu      sync.Mutex // guards stopped and tb use
	tb      TB
	stopped bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.tb.Logf("%s", strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
