// Command bench measures what the Cocoon mesh costs a streaming inference
// request, and prints a table (or JSON with -json). `make bench` runs it.
//
// Every answer has the shape of Telegram Cocoon's own harness: 50 chunks of
// 128 bytes, streamed as OpenAI chat.completion.chunk server-sent events
// ending in "data: [DONE]". Each row of the table sends the same streaming
// chat request to up to three targets, one after the other:
//
//   - direct: straight to mockEngine, an OpenAI-compatible engine in this
//     process; the baseline, what an app gets without the mesh;
//   - mesh: to a client node, which forwards over libp2p to a proxy, which
//     forwards to one worker running the built-in sim backend in the same
//     shape: the cost of the mesh alone;
//   - mesh+clear: mesh with the client sending requests in the clear, as
//     before they were sealed end to end: mesh against it is what sealing
//     costs (row 1: added p50 <= 0.5 ms; rows 2 and 3: req/s >= 0.9x);
//   - mesh+engine: the same path, but the worker runs the openai backend
//     against mockEngine over HTTP: what an app pays for the mesh in front
//     of a real engine.
//
// All nodes and the engine run in this process (real nodes with real
// libp2p hosts on 127.0.0.1, assembled by the testnet harness); the load
// generator runs in a child process (this binary, re-executed as
// "bench loadgen"), so that it never shares a Go scheduler with what it
// measures, as an external tool like hey would. Both share the machine's
// cores, so CPU the mesh spends is throughput the load generator and the
// engine lose, as on a real shared host.
//
// The rows, and the targets the mesh must meet:
//
//  1. one request at a time: latency, and the latency the mesh adds
//     (p50 mesh - p50 direct <= 0.5 ms);
//  2. 30 at once over kept-alive connections: throughput (mesh >= 0.6x
//     direct) and added latency (<= 5 ms);
//  3. the same with a new connection per request;
//  4. a paced engine (a chunk every 10 ms, 4 at once): the gaps between
//     chunks must reach the app as the engine made them (within 5%), which
//     fails if any hop holds chunks back and sends them together;
//  5. 1,000 streams at once through one proxy: no errors, and the memory
//     it takes (peak RSS of this process).
//
// Usage:
//
//	go run ./cmd/bench [-duration 3s] [-rows 1,2,3,4,5] [-targets direct,mesh,mesh+engine]
//	    [-rounds 1] [-transport default|tcp|quic] [-json] [-cpuprofile FILE] [-memprofile FILE]
//
// A shared machine's speed drifts over a run by more than sealing costs:
// with -rounds N, rows 1-4 load every target N times, in turn, reversing
// the order every other round (A B, B A, A B ...), and report each
// target's median round; sealing's throughput ratio is then the median of
// the N ratios of mesh and mesh+clear loaded one after the other.
//
// With -scale 200,1000 (make bench-scale) it measures discovery instead:
// gossiped offers, refused bad offers, DHT lookups and a new worker's first
// routed request, on simulated networks of that many nodes in this process
// (see cmd/bench/internal/scale and scale.go; -scale-* flags):
//
//	go run ./cmd/bench -scale 200,1000 [-scale-publishers 20] [-scale-spread 1s]
//	    [-scale-deadline 5s] [-scale-joins 5] [-scale-tune heartbeat=700ms,d=8] [-json] [-cpuprofile FILE]
//
// With -join N it starts N workers, one after another, in a running
// network of real nodes that find each other through the root contract on
// the sandbox chain, and times each from its start to its first routed
// request (target: 2 s; see join.go):
//
//	go run ./cmd/bench -join 5 [-json]
//
// The machine's other processes take CPU from the bench; each run reports
// how much (cpu others), so that a noisy number can be told from a slow
// mesh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// flags are the command line.
type flags struct {
	duration   time.Duration // per target, per row
	warmup     int           // warm-up requests per target
	rounds     int           // rows 1-4: loads per target, in turn
	rows       []int         // which rows to run
	targets    []string      // which targets to load
	transport  string        // what the nodes listen on: default, tcp or quic
	json       bool
	cpuprofile string
	memprofile string
	bigConc    int    // row 5: streams at once...
	bigN       int    // ...and requests in all
	loadgen    string // "go" (the built-in load generator) or "hey"
}

// run is the whole program; main only adds the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "loadgen" {
		return runLoadgen(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg flags
	rows := fs.String("rows", "1,2,3,4,5", "rows to run, comma-separated")
	targets := fs.String("targets", direct+","+meshClear+","+mesh+","+meshChain+","+meshPay+","+meshEngine, "targets to load, comma-separated (row 5 loads mesh only; row 4 skips mesh+clear, mesh+chain and mesh+pay)")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "how long each target is loaded in rows 1-4")
	fs.IntVar(&cfg.warmup, "warmup", 20, "warm-up requests per target before it is measured")
	fs.IntVar(&cfg.rounds, "rounds", 1, "rows 1-4: load every target this many times, in turn, the order reversed every other round; each target's median round is reported, and sealing's throughput ratio is the median of the rounds' (a machine whose speed drifts then slows every target alike)")
	fs.StringVar(&cfg.transport, "transport", "default", "libp2p transport between nodes: default (the nodes' own: TCP and QUIC, libp2p picks), tcp or quic")
	fs.BoolVar(&cfg.json, "json", false, "print JSON instead of a table")
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the bench process (nodes and engine, not the load generator) to this file")
	fs.StringVar(&cfg.memprofile, "memprofile", "", "write an allocation profile of the bench process to this file at the end")
	fs.IntVar(&cfg.bigConc, "big-c", 1000, "row 5: streams at once")
	fs.IntVar(&cfg.bigN, "big-n", 2000, "row 5: requests in all")
	sf := addScaleFlags(fs)
	joins := fs.Int("join", 0, "instead of the rows: start this many workers, one after another, in a running network of real nodes found through the root contract, and time each from its start to its first routed request (needs Node.js)")
	fs.StringVar(&cfg.loadgen, "loadgen", "go", "load generator for rows 1-3 and 5: go (built in, measures time to first byte) or hey (Debian's hey, as Telegram Cocoon's harness uses; ttfb is its mean response wait)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bench [flags]\n\nMeasures the Cocoon mesh against a direct engine; see go doc ./cmd/bench.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range strings.Split(*rows, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > len(rowNames) {
			return fmt.Errorf("-rows: %q is not a row (1 to %d)", f, len(rowNames))
		}
		if !slices.Contains(cfg.rows, n) {
			cfg.rows = append(cfg.rows, n)
		}
	}
	slices.Sort(cfg.rows)
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		if t != direct && t != mesh && t != meshClear && t != meshEngine && t != meshPay && t != meshChain {
			return fmt.Errorf("-targets: %q is not %s, %s, %s, %s, %s or %s", t, direct, meshClear, mesh, meshChain, meshPay, meshEngine)
		}
		cfg.targets = append(cfg.targets, t)
	}
	if _, ok := listenAddrs[cfg.transport]; !ok {
		return fmt.Errorf("-transport: %q: want default, tcp or quic", cfg.transport)
	}
	if cfg.duration <= 0 || cfg.warmup < 0 || cfg.rounds < 1 || cfg.bigConc < 1 || cfg.bigN < cfg.bigConc {
		return errors.New("-duration must be positive, -warmup not negative, -rounds at least 1, -big-n at least -big-c")
	}

	if err := raiseFileLimit(); err != nil {
		fmt.Fprintln(stderr, "bench: raising the open file limit:", err)
	}
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	if *sf.nodes != "" {
		return runScale(ctx, sf, cfg.json, stdout, stderr)
	}
	if *joins > 0 {
		return runJoin(ctx, *joins, cfg.json, stdout, stderr)
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := &bench{cfg: cfg, log: log, progress: stderr}
	rep, err := b.run(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(cfg.targets, meshPay) {
		// Beside mesh+pay's rows: what each step of its payments costs.
		if rep.Money, err = measureMoney(); err != nil {
			return fmt.Errorf("measuring payments: %w", err)
		}
	}
	if cfg.memprofile != "" {
		if err := writeAllocs(cfg.memprofile); err != nil {
			return err
		}
	}
	if cfg.json {
		return rep.writeJSON(stdout)
	}
	return rep.writeTable(stdout)
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// raiseFileLimit lifts the soft limit on open files to the hard one: 1,000
// streams at once hold a few thousand sockets in this process.
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur >= l.Max {
		return nil
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}
