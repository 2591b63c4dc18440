package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/cocoon-mesh/cocoon/inference/backend/sim"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// The answer's shape, and the pace of row 4.
const (
	chunks     = 50
	chunkBytes = 128
	pacedGap   = 10 * time.Millisecond
	pacedConc  = 4
	workers    = 1
)

// requestBody is what the load generator posts to every target.
const requestBody = `{"model":"` + mockModel + `","stream":true,"messages":[{"role":"user","content":"hi"}]}`

// Target names.
const (
	direct     = "direct"
	mesh       = "mesh"
	meshEngine = "mesh+engine"
	// meshPay is mesh with payments on: the sandbox chain, funded
	// wallets, channels, and every answer paid client -> proxy -> worker.
	meshPay = "mesh+pay"
	// meshChain is mesh+pay's network with payments off: the same
	// discovery through the root contract, so that the two differ only
	// in payments.
	meshChain = "mesh+chain"
	// meshClear is mesh with its client sending requests in the clear, as
	// before requests were sealed end to end (the proxy reads them): mesh
	// against it is what sealing costs.
	meshClear = "mesh+clear"
)

var rowNames = []string{
	"c=1, keep-alive on",
	"c=30, keep-alive on",
	"c=30, keep-alive off",
	fmt.Sprintf("paced: a chunk every %s, c=%d, keep-alive on", pacedGap, pacedConc),
	"c=%d streams through one proxy, keep-alive on", // -big-c
}

// bench runs the rows.
type bench struct {
	cfg      flags
	log      *slog.Logger // the nodes' log
	progress io.Writer
}

// target is somewhere the load generator sends requests.
type target struct {
	name string
	url  string
	rec  *gapRecorder // the gaps its engine made, when paced
	// done, if set, sums up the payments after a load (mesh+pay).
	done func() string
}

// env is the engines and networks a group of rows loads.
type env struct {
	targets []target
	closers []func()
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: "+format+"\n", args...)
}

// run runs the configured rows and returns the report.
func (b *bench) run(ctx context.Context) (*report, error) {
	start := time.Now()
	rep := newReport(b.cfg)
	want := func(n int) bool { return slices.Contains(b.cfg.rows, n) }

	if want(1) || want(2) || want(3) {
		e, err := b.setUp(ctx, 0, 0, b.cfg.targets...)
		if err != nil {
			return nil, err
		}
		for _, r := range []struct {
			n    int
			spec loadSpec
		}{
			{1, loadSpec{Concurrency: 1, KeepAlive: true}},
			{2, loadSpec{Concurrency: 30, KeepAlive: true}},
			{3, loadSpec{Concurrency: 30, KeepAlive: false}},
		} {
			if !want(r.n) {
				continue
			}
			row, err := b.measure(ctx, r.n, e.targets, r.spec)
			if err != nil {
				e.close()
				return nil, err
			}
			rep.add(row)
		}
		e.close()
	}

	if want(4) {
		// The paced row checks gaps; payments and sealing do not touch them.
		paced := slices.DeleteFunc(slices.Clone(b.cfg.targets), func(t string) bool { return t == meshPay || t == meshChain || t == meshClear })
		e, err := b.setUp(ctx, pacedGap, 0, paced...)
		if err != nil {
			return nil, err
		}
		row, err := b.measure(ctx, 4, e.targets, loadSpec{Concurrency: pacedConc, KeepAlive: true, Gaps: true})
		e.close()
		if err != nil {
			return nil, err
		}
		rep.add(row)
	}

	rep.PeakRSS = peakRSS()
	if want(5) {
		// Start row 5's memory count from what is in use now.
		reset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
		e, err := b.setUp(ctx, 0, 2*b.cfg.bigConc, mesh)
		if err != nil {
			return nil, err
		}
		row, err := b.measure(ctx, 5, e.targets, loadSpec{Concurrency: b.cfg.bigConc, Requests: b.cfg.bigN, KeepAlive: true})
		if err == nil {
			row.PeakRSS = peakRSS()
			row.PeakRSSReset = reset
			rep.PeakRSS = max(rep.PeakRSS, row.PeakRSS)
		}
		e.close()
		if err != nil {
			return nil, err
		}
		rep.add(row)
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// setUp starts the named targets: direct is a mock engine pacing its
// chunks gap apart; mesh is a network whose worker runs the sim backend at
// the same pace; mesh+engine is a network whose worker runs the openai
// backend against the engine. maxConcurrent, if not 0, raises the workers'
// limit on requests at once.
func (b *bench) setUp(ctx context.Context, gap time.Duration, maxConcurrent int, names ...string) (*env, error) {
	e := &env{}
	eng := newMockEngine(chunks, chunkBytes, gap)
	if err := eng.Start(); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { eng.Close() })

	var tokensPerSec float64
	if gap > 0 {
		tokensPerSec = float64(time.Second) / float64(gap)
	}
	limit := func(c *config.Config) {
		if maxConcurrent > 0 {
			c.Worker.MaxConcurrent = maxConcurrent
		}
	}
	simShape := func(c *config.Config) {
		c.Worker.Sim.Models = []string{mockModel}
		c.Worker.Sim.Chunks = chunks
		c.Worker.Sim.ChunkBytes = chunkBytes
		c.Worker.Sim.TokensPerSec = tokensPerSec
	}
	engine := func(c *config.Config) {
		c.Worker.Backend = "openai"
		c.Worker.OpenAI.URL = eng.URL() + "/v1"
		c.Worker.OpenAI.Models = []string{mockModel}
	}
	for _, name := range names {
		t := target{name: name}
		var (
			mods       []testnet.Modify
			opts       []node.Option // the worker's
			clientOpts []node.Option
			pay        bool
			on         bool // with pay: payments on
		)
		switch name {
		case direct:
			t.url = eng.URL() + "/v1/chat/completions"
			if gap > 0 {
				t.rec = eng.rec
			}
			e.targets = append(e.targets, t)
			continue
		case mesh:
			mods = []testnet.Modify{simShape, limit}
			if gap > 0 {
				// The same backend the config names, timed.
				var c config.Config
				simShape(&c)
				sb, err := sim.New(c.Worker.Sim.Sim())
				if err != nil {
					e.close()
					return nil, err
				}
				t.rec = &gapRecorder{}
				opts = append(opts, node.WithBackend(timedBackend{sb, t.rec}))
			}
		case meshClear:
			mods, clientOpts = []testnet.Modify{simShape, limit}, []node.Option{node.WithoutSealing()}
		case meshPay:
			mods, pay, on = []testnet.Modify{simShape, limit}, true, true
		case meshChain:
			mods, pay = []testnet.Modify{simShape, limit}, true
		case meshEngine:
			mods = []testnet.Modify{engine, limit}
			if gap > 0 {
				t.rec = eng.rec
			}
		}
		t0 := time.Now()
		m, err := startMesh(ctx, b.log, b.cfg.transport, pay, on, mods, opts, clientOpts)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("%s network: %w", name, err)
		}
		e.closers = append(e.closers, m.Close)
		t.url = m.URL()
		e.targets = append(e.targets, t)
		b.logf("%s network up in %s: client, proxy, %d worker", name, time.Since(t0).Round(time.Millisecond), workers)
		if on {
			t.done = m.net.Payments
		}
	}
	return e, nil
}

// measure loads each target in turn with spec, after a warm-up, and
// returns the row.
func (b *bench) measure(ctx context.Context, n int, targets []target, spec loadSpec) (*row, error) {
	r := &row{N: n, Name: rowNames[n-1], Concurrency: spec.Concurrency, KeepAlive: spec.KeepAlive}
	if n == 5 {
		r.Name = fmt.Sprintf(r.Name, spec.Concurrency)
	}
	if spec.Gaps {
		r.Gap = pacedGap
	}
	spec.Body = requestBody
	spec.Events = chunks
	spec.Tool = b.cfg.loadgen
	if spec.Requests == 0 {
		spec.Duration = b.cfg.duration
	}
	rounds := 1
	if n <= 4 {
		rounds = max(1, b.cfg.rounds)
	}
	runs := make(map[string][]*targetResult, len(targets))
	for round := range rounds {
		order := targets
		if round%2 == 1 {
			// A B, then B A: a machine whose speed drifts over the run
			// slows every target alike.
			order = slices.Clone(targets)
			slices.Reverse(order)
		}
		for _, t := range order {
			tr, err := b.load(ctx, n, r.Name, t, spec, round == 0)
			if err != nil {
				return nil, err
			}
			runs[t.name] = append(runs[t.name], tr)
			if rounds > 1 {
				b.logf("row %d round %d of %d: %s", n, round+1, rounds, t.name)
			}
		}
	}
	for _, t := range targets {
		r.Runs = append(r.Runs, medianRun(runs[t.name]))
	}
	if rounds > 1 {
		r.SealRatios = pairedRatios(runs[mesh], runs[meshClear])
	}
	r.compare()
	return r, nil
}

// load warms t up (when warm) and loads it once with spec.
func (b *bench) load(ctx context.Context, n int, name string, t target, spec loadSpec, warm bool) (*targetResult, error) {
	spec.URL = t.url
	if w := b.warmupSpec(spec); warm && w.Requests > 0 {
		wres, err := runLoad(ctx, w)
		if err != nil {
			return nil, fmt.Errorf("row %d, %s, warming up: %w", n, t.name, err)
		}
		if wres.Errors > 0 {
			b.logf("row %d %s: %d of %d warm-up requests failed: %v", n, t.name, wres.Errors, w.Requests, wres.ErrorKind)
		}
	}
	runtime.GC() // no debt from the warm-up or the last target
	if t.rec != nil {
		t.rec.take() // the warm-up's
	}
	res, err := runLoad(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("row %d, %s: %w", n, t.name, err)
	}
	tr := &targetResult{Target: t.name, Result: res}
	if t.rec != nil {
		g := summarize(t.rec.take())
		tr.EngineGap = &g
	}
	b.logf("row %d (%s) %-11s %s", n, name, t.name, brief(tr))
	if t.done != nil {
		b.logf("row %d %s payments so far: %s", n, t.name, t.done())
	}
	return tr, nil
}

// medianRun is the run of a target with the median throughput among its
// rounds (the lower of the middle two for an even count), whole: its
// latencies and CPU are that round's, not mixed across rounds.
func medianRun(runs []*targetResult) *targetResult {
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b *targetResult) int { return cmp.Compare(a.Result.ReqPerSec, b.Result.ReqPerSec) })
	return sorted[(len(sorted)-1)/2]
}

// pairedRatios is a's req/s over b's in each round, the two loaded one
// after the other; nil unless both ran every round.
func pairedRatios(a, b []*targetResult) []float64 {
	if len(a) == 0 || len(a) != len(b) {
		return nil
	}
	out := make([]float64, len(a))
	for i := range a {
		if b[i].Result.ReqPerSec > 0 {
			out[i] = a[i].Result.ReqPerSec / b[i].Result.ReqPerSec
		}
	}
	return out
}

// warmupSpec is a few requests at the row's concurrency, to start
// goroutines, fill pools and connect the worker to its engine before the
// measurement: at least -warmup, and one per connection the row keeps. A
// paced answer takes chunks*gap, so paced rows warm up one round only; row
// 5, a burst of new streams, warms up with -warmup.
func (b *bench) warmupSpec(spec loadSpec) loadSpec {
	w := spec
	w.Duration = 0
	w.Gaps = false
	switch {
	case spec.Gaps:
		w.Requests = spec.Concurrency
	case spec.Requests > 0:
		w.Requests = b.cfg.warmup
	default:
		w.Requests = max(b.cfg.warmup, spec.Concurrency)
	}
	w.Concurrency = max(1, min(spec.Concurrency, w.Requests))
	return w
}

func brief(tr *targetResult) string {
	res := tr.Result
	ours, others := busy(res)
	s := fmt.Sprintf("%6d ok %3d err  %8.0f req/s  p50 %s  p99 %s  ttfb p50 %s  %.1f reads/answer  cpu/req %s  cpu ours %.0f%% others %.0f%%",
		res.OK, res.Errors, res.ReqPerSec, ms(res.Latency.P50), ms(res.Latency.P99), ms(res.TTFB.P50), res.Reads, cpuPerReq(res), ours, others)
	if res.Gap != nil {
		s += fmt.Sprintf("  gap mean %s p50 %s", ms(res.Gap.Mean), ms(res.Gap.P50))
		if g := tr.EngineGap; g != nil {
			s += fmt.Sprintf(" (engine %s, %s)", ms(g.Mean), ms(g.P50))
		}
	}
	if len(res.ErrorKind) > 0 {
		s += fmt.Sprintf("  errors: %q", res.ErrorKind)
	}
	return s
}
