package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/cocoon-mesh/cocoon/cmd/bench/internal/scale"
	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/internal/procstat"
)

// Targets discovery must meet at scale.
const (
	smallScale         = 200                    // nodes: up to this many, every offer must arrive...
	maxGossipP99Small  = 200 * time.Millisecond // ...with this p99
	minDeliveryLarge   = 0.999                  // more nodes: at least this share
	maxJoinToFirstCall = 2 * time.Second        // a new worker, from start to the first routed request
)

// scaleFlags are the flags of the scale group (bench -scale N,...).
type scaleFlags struct {
	nodes      *string
	publishers *int
	spread     *time.Duration
	deadline   *time.Duration
	joins      *int
	tune       *string
}

func addScaleFlags(fs *flag.FlagSet) *scaleFlags {
	return &scaleFlags{
		nodes:      fs.String("scale", "", "instead of the rows, simulate discovery on mocknet with this many nodes per run, comma-separated (make bench-scale: 200,1000); see go doc ./cmd/bench/internal/scale"),
		publishers: fs.Int("scale-publishers", 20, "scale: workers that publish an offer at once"),
		spread:     fs.Duration("scale-spread", time.Second, "scale: the publications are spread evenly over this window"),
		deadline:   fs.Duration("scale-deadline", 5*time.Second, "scale: an offer counts as delivered if it enters a book within this of its Publish"),
		joins:      fs.Int("scale-joins", 5, "scale: new workers joining the running network, one after the other"),
		tune:       fs.String("scale-tune", "", "scale: gossipsub options added to the production ones, comma-separated: heartbeat=DURATION, d=N (D, Dlo=N-1, Dhi=2N), validate-workers=N, flood-publish=BOOL"),
	}
}

// scaleReport is the scale group's report.
type scaleReport struct {
	Date       time.Time     `json:"date"`
	GoVersion  string        `json:"go_version"`
	GOMAXPROCS int           `json:"gomaxprocs"`
	CPUs       int           `json:"cpus"`
	CPUModel   string        `json:"cpu_model"`
	LoadAvg    string        `json:"load_average_at_start"`
	Tuning     string        `json:"tuning,omitempty"`
	Runs       []*scaleRun   `json:"runs"`
	Passed     int           `json:"checks_passed"`
	Checks     int           `json:"checks"`
	Took       time.Duration `json:"took_ns"`
}

// scaleRun is one simulation and its checks.
type scaleRun struct {
	Config scaleConfig   `json:"config"`
	Result *scale.Result `json:"result"`
	Checks []check       `json:"checks"`
	// CPU every process on the machine spent during the run, from
	// /proc/stat: what is not ours was taken by other processes.
	MachineCPU time.Duration `json:"machine_cpu_ns,omitempty"`
}

// scaleConfig is the part of scale.Config a reader needs.
type scaleConfig struct {
	Nodes      int           `json:"nodes"`
	Degree     int           `json:"degree"`
	Latency    time.Duration `json:"latency_ns"`
	Publishers int           `json:"publishers"`
	Spread     time.Duration `json:"spread_ns"`
	Deadline   time.Duration `json:"deadline_ns"`
}

// runScale runs the scale group: one simulation per node count.
func runScale(ctx context.Context, sf *scaleFlags, asJSON bool, stdout, stderr io.Writer) error {
	var counts []int
	for _, f := range strings.Split(*sf.nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 4 {
			return fmt.Errorf("-scale: %q is not a node count (at least 4)", f)
		}
		counts = append(counts, n)
	}
	tuning, meshMin, err := parseTuning(*sf.tune)
	if err != nil {
		return fmt.Errorf("-scale-tune: %w", err)
	}
	start := time.Now()
	rep := &scaleReport{
		Date: start.UTC().Truncate(time.Second), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUs: runtime.NumCPU(), CPUModel: cpuModel(), LoadAvg: loadAvg(), Tuning: *sf.tune,
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "scale")
	for _, n := range counts {
		cfg := scale.DefaultConfig(n)
		cfg.Publishers, cfg.Spread, cfg.Deadline, cfg.Joins = min(*sf.publishers, n), *sf.spread, *sf.deadline, *sf.joins
		cfg.Tuning, cfg.MeshMin, cfg.Log = tuning, meshMin, log
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("-scale %d: %w", n, err)
		}
		fmt.Fprintf(stderr, "bench: scale: %d nodes...\n", n)
		all := procstat.MachineCPU()
		res, err := scale.Run(ctx, cfg)
		if err != nil {
			return fmt.Errorf("scale, %d nodes: %w", n, err)
		}
		run := &scaleRun{Config: scaleConfig{n, cfg.Degree, cfg.Latency, cfg.Publishers, cfg.Spread, cfg.Deadline}, Result: res,
			MachineCPU: procstat.MachineCPU() - all}
		run.check()
		for _, c := range run.Checks {
			rep.Checks++
			if c.Pass {
				rep.Passed++
			}
		}
		rep.Runs = append(rep.Runs, run)
		g := res.Gossip
		fmt.Fprintf(stderr, "bench: scale: %d nodes in %s: delivered %.2f%%, p50 %s, p99 %s; dht found %d/%d; join p50 %s\n",
			n, res.Took.Round(100*time.Millisecond), 100*g.Ratio, ms(g.Latency.P50), ms(g.Latency.P99),
			res.DHT.Found, res.DHT.Lookups, ms(res.Join.Routed.P50))
	}
	rep.Took = time.Since(start)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.writeTable(stdout)
}

// check fills in the run's checks against the targets.
func (r *scaleRun) check() {
	res := r.Result
	g := res.Gossip
	if r.Config.Nodes <= smallScale {
		r.Checks = append(r.Checks,
			check{"100% delivered", g.Delivered == g.Pairs},
			check{"p99 <= " + msShort(maxGossipP99Small), g.Delivered == g.Pairs && g.Latency.P99 <= maxGossipP99Small})
	} else {
		r.Checks = append(r.Checks, check{fmt.Sprintf(">= %g%% delivered", 100*minDeliveryLarge), g.Ratio >= minDeliveryLarge})
	}
	a := res.Attack
	r.Checks = append(r.Checks, check{"no bad offer in any book", a.Forged == 0 && a.Replayed == 0 && a.Oversized == 0})
	j := res.Join
	r.Checks = append(r.Checks, check{"new worker routed within " + msShort(maxJoinToFirstCall),
		j.Failed == 0 && j.Routed.N > 0 && j.Routed.Max <= maxJoinToFirstCall})
}

func (rep *scaleReport) writeTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Cocoon discovery at scale, %s\n", rep.Date.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(bw, "%s %s/%s, GOMAXPROCS %d, %d CPUs: %s\n", rep.GoVersion, runtime.GOOS, runtime.GOARCH, rep.GOMAXPROCS, rep.CPUs, rep.CPUModel)
	fmt.Fprintf(bw, "load average at start: %s\n", rep.LoadAvg)
	if len(rep.Runs) == 0 {
		return bw.Flush()
	}
	c := rep.Runs[0].Config
	fmt.Fprintf(bw, "every node in one process on go-libp2p's mocknet, %s one-way latency per link, Ed25519 identities\n", msShort(c.Latency))
	fmt.Fprintf(bw, "gossip graph: random, connected, every node linked to >= %d others; real offers.Gossip (signed offers, validator, peer scoring)\n", c.Degree)
	if rep.Tuning != "" {
		fmt.Fprintf(bw, "gossipsub tuning on top of the production options: %s\n", rep.Tuning)
	} else {
		fmt.Fprintf(bw, "gossipsub: the production options (offers.StartGossip), nothing tuned\n")
	}
	fmt.Fprintf(bw, "a run starts publishing once every node has >= 4 peers in its gossip mesh (after setup; mesh wait in the last lines)\n")

	tw := func() *tabwriter.Writer { return tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight) }
	fmt.Fprintf(bw, "\n1. gossip: %d workers each publish a signed offer (%d B), spread over %s; delivered = in the book within %s\n",
		c.Publishers, rep.Runs[0].Result.Gossip.OfferBytes, c.Spread, c.Deadline)
	t := tw()
	fmt.Fprintln(t, "nodes\tedges\tpairs\tdelivered\tratio\tp50\tp99\tmax\tcpu ours/others\tcpu/pair\t   check")
	for _, r := range rep.Runs {
		g := r.Result.Gossip
		total := float64(g.Wall) * float64(rep.CPUs)
		ours, others := 100*float64(g.CPU)/total, max(0, 100*float64(g.MachineCPU-g.CPU)/total)
		fmt.Fprintf(t, "%d\t%d\t%d\t%d\t%.2f%%\t%s\t%s\t%s\t%.0f/%.0f%%\t%s\t   %s\n", r.Config.Nodes, r.Result.Edges, g.Pairs, g.Delivered, 100*g.Ratio,
			ms(g.Latency.P50), ms(g.Latency.P99), ms(g.Latency.Max), ours, others,
			cpuPer(g.CPU, g.Delivered), checks(r.Checks[:len(r.Checks)-2]))
	}
	t.Flush()
	fmt.Fprintf(bw, "   latency: from Publish to the offer entering each other node's book (offers.EvtOfferAccepted.At)\n")
	fmt.Fprintf(bw, "   cpu ours/others: share of the %d CPUs this process / other processes used during the phase;\n", rep.CPUs)
	fmt.Fprintf(bw, "   cpu/pair: this process's CPU time per delivered pair (all nodes and mocknet together)\n")

	fmt.Fprintf(bw, "\n2. bad offers from one node with its own gossipsub and no validator: a replay of its older offer, a forged signature, %d+ KiB\n", offers.MaxOfferBytes>>10)
	t = tw()
	fmt.Fprintln(t, "nodes\tneighbours\trefused stale/sig/size\treplayed in\tforged in\toversized in\tvalid ones in\tits best score\t   check")
	for _, r := range rep.Runs {
		a := r.Result.Attack
		fmt.Fprintf(t, "%d\t%d\t%d/%d/%d\t%d\t%d\t%d\t%d\t%.0f\t   %s\n", r.Config.Nodes, a.Neighbours,
			a.Rejected[offers.ErrStale.Error()], a.Rejected[offers.ErrSignature.Error()], a.Rejected[offers.ErrTooLarge.Error()],
			a.Replayed, a.Forged, a.Oversized, a.Baseline, a.Score, r.Checks[len(r.Checks)-2])
	}
	t.Flush()
	fmt.Fprintf(bw, "   in = books the offer entered (target 0); valid ones in = books its valid barrier offer, sent after the bad ones, entered\n")
	fmt.Fprintf(bw, "   refused at its direct neighbours, which forward nothing invalid; score = the best its neighbours give it after (graylisted below %d)\n", offers.GraylistThreshold)

	fmt.Fprintf(bw, "\n3. DHT: proxies in server mode, everyone else a client, each joining through 3 proxies; workers provide 2 models each\n")
	t = tw()
	fmt.Fprintln(t, "nodes\tservers\tclients\tjoined in\tproviders\tprovide p50\tprovide p99\tlookups\tfound\tfind p50\tfind p99\tfind max\t")
	for _, r := range rep.Runs {
		d := r.Result.DHT
		fmt.Fprintf(t, "%d\t%d\t%d\t%s\t%d\t%s\t%s\t%d\t%.1f%%\t%s\t%s\t%s\t\n", r.Config.Nodes, d.Servers, d.Clients, d.Join.Round(time.Millisecond),
			d.Providers, ms(d.Provide.P50), ms(d.Provide.P99), d.Lookups, 100*d.Ratio, ms(d.Latency.P50), ms(d.Latency.P99), ms(d.Latency.Max))
	}
	t.Flush()
	fmt.Fprintf(bw, "   find: FindModel from a random client for the first worker serving a random model, 8 at once; found = a worker that does\n")
	fmt.Fprintf(bw, "   gossip is stopped for this phase (every DHT connection would be a gossip peer too; see go doc ./cmd/bench/internal/scale)\n")

	fmt.Fprintf(bw, "\n4. a new worker joins: connects to %d nodes, publishes its offer; a proxy dials it from the offer and routes a request to it\n", 4)
	t = tw()
	fmt.Fprintln(t, "nodes\truns\toffer at proxy p50\trouted p50\trouted max\trepublished\tfailed\t   check")
	for _, r := range rep.Runs {
		j := r.Result.Join
		fmt.Fprintf(t, "%d\t%d\t%s\t%s\t%s\t%d\t%d\t   %s\n", r.Config.Nodes, j.Runs, ms(j.Offer.P50), ms(j.Routed.P50), ms(j.Routed.Max),
			j.Republished, j.Failed, r.Checks[len(r.Checks)-1])
	}
	t.Flush()
	fmt.Fprintf(bw, "   from the worker's host starting; routed = the proxy has its answer on a stream (32 B request/response)\n")

	fmt.Fprintf(bw, "\n")
	for _, r := range rep.Runs {
		total := float64(r.Result.Took) * float64(rep.CPUs)
		ours := 100 * float64(r.Result.CPU) / total
		others := max(0, 100*float64(r.MachineCPU)/total-ours)
		fmt.Fprintf(bw, "%d nodes: set up in %s, mesh %s later, whole run %s; CPU %s; cpu ours/others %.0f/%.0f%% of %d CPUs\n", r.Config.Nodes,
			r.Result.Setup.Round(100*time.Millisecond), r.Result.Mesh.Round(time.Millisecond), r.Result.Took.Round(100*time.Millisecond),
			r.Result.CPU.Round(100*time.Millisecond), ours, others, rep.CPUs)
	}
	fmt.Fprintf(bw, "targets: %d of %d checks pass\n", rep.Passed, rep.Checks)
	fmt.Fprintf(bw, "took %s\n", rep.Took.Round(100*time.Millisecond))
	return bw.Flush()
}

// cpuPer is d per n, in microseconds.
func cpuPer(d time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%d µs", int64(d/time.Microsecond)/int64(n))
}

// parseTuning turns -scale-tune into gossipsub options, and the mesh to
// wait for when it changes D (0 otherwise).
func parseTuning(s string) (opts []pubsub.Option, meshMin int, err error) {
	if s == "" {
		return nil, 0, nil
	}
	params := pubsub.DefaultGossipSubParams()
	paramsSet := false
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, 0, fmt.Errorf("%q: want key=value", kv)
		}
		switch k {
		case "heartbeat":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, 0, fmt.Errorf("heartbeat %q: want a positive duration", v)
			}
			params.HeartbeatInterval, paramsSet = d, true
		case "d":
			n, err := strconv.Atoi(v)
			if err != nil || n < 3 {
				return nil, 0, fmt.Errorf("d %q: want at least 3", v)
			}
			// gossipsub wants Dout below Dlo and below D/2.
			params.D, params.Dlo, params.Dhi, params.Dscore, params.Dout = n, n-1, 2*n, min(params.Dscore, n-1), min(params.Dout, (n-1)/2)
			meshMin = n - 2
			paramsSet = true
		case "validate-workers":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, 0, fmt.Errorf("validate-workers %q: want at least 1", v)
			}
			opts = append(opts, pubsub.WithValidateWorkers(n))
		case "flood-publish":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, 0, fmt.Errorf("flood-publish %q: %w", v, err)
			}
			opts = append(opts, pubsub.WithFloodPublish(b))
		default:
			return nil, 0, fmt.Errorf("unknown key %q", k)
		}
	}
	if paramsSet {
		opts = append(opts, pubsub.WithGossipSubParams(params))
	}
	return opts, meshMin, nil
}
