package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets the mesh must meet.
const (
	maxAddedP50C1  = 500 * time.Microsecond // row 1
	maxAddedP50C30 = 5 * time.Millisecond   // rows 2 and 3
	minRatioC30    = 0.6                    // rows 2 and 3: mesh req/s over direct req/s
	maxGapDev      = 5.0                    // row 4: percent off the engine's gap
	maxPayAdded    = 200 * time.Microsecond // row 1: mesh+pay p50 over mesh+chain p50
	maxSealAdded   = 500 * time.Microsecond // row 1: mesh p50 over mesh+clear p50
	minSealRatio   = 0.9                    // rows 2 and 3: mesh req/s over mesh+clear req/s
)

// report is everything one run of the bench measured.
type report struct {
	Date       time.Time     `json:"date"`
	GoVersion  string        `json:"go_version"`
	GOMAXPROCS int           `json:"gomaxprocs"`
	CPUs       int           `json:"cpus"`
	CPUModel   string        `json:"cpu_model"`
	LoadAvg    string        `json:"load_average_at_start"` // from /proc/loadavg: 1, 5 and 15 minutes
	Transport  string        `json:"transport"`
	Duration   time.Duration `json:"duration_per_target_ns"`
	Rounds     int           `json:"rounds"` // rows 1-4: each target loaded this many times; its median round is reported
	Warmup     int           `json:"warmup_requests"`
	Chunks     int           `json:"chunks"`
	ChunkBytes int           `json:"chunk_bytes"`
	Workers    int           `json:"workers"`
	Rows       []*row        `json:"rows"`
	Passed     int           `json:"checks_passed"`
	Checks     int           `json:"checks"`
	PeakRSS    int64         `json:"peak_rss_bytes"` // of this process over the whole run
	Took       time.Duration `json:"took_ns"`
	Money      []moneyOp     `json:"money,omitempty"` // each step of paying for an answer, measured alone
}

// row is one line of the plan: a load shape against each target.
type row struct {
	N           int             `json:"row"`
	Name        string          `json:"name"`
	Concurrency int             `json:"concurrency"`
	KeepAlive   bool            `json:"keep_alive"`
	Gap         time.Duration   `json:"engine_gap_ns,omitempty"` // row 4
	Runs        []*targetResult `json:"runs"`
	// Row 5: the peak resident memory of this process while it ran,
	// counted from its start if PeakRSSReset, else from the bench's.
	PeakRSS      int64 `json:"peak_rss_bytes,omitempty"`
	PeakRSSReset bool  `json:"peak_rss_reset,omitempty"`
	// SealRatios is, with -rounds above 1, mesh's req/s over mesh+clear's
	// in each round, the two loaded one after the other; mesh's SealRatio
	// is then their median.
	SealRatios []float64 `json:"sealing_throughput_ratios,omitempty"`
}

// targetResult is one target's result in a row, compared with direct.
type targetResult struct {
	Target   string        `json:"target"`
	Result   *loadResult   `json:"result"`
	AddedP50 time.Duration `json:"added_p50_ns,omitempty"` // p50 latency over direct's
	// PayAdded is mesh+pay's p50 latency over mesh+chain's in the same
	// row: what payments add to a request.
	PayAdded time.Duration `json:"payment_added_p50_ns,omitempty"`
	// SealAdded and SealRatio are mesh's p50 latency over mesh+clear's and
	// its req/s over mesh+clear's in the same row: what sealing requests
	// end to end costs.
	SealAdded time.Duration `json:"sealing_added_p50_ns,omitempty"`
	SealRatio float64       `json:"sealing_throughput_ratio,omitempty"`
	Ratio     float64       `json:"throughput_ratio,omitempty"` // req/s over direct's
	// Row 4: the gaps between chunks as the engine made them (timed where
	// it emits them), and how far the gaps the app saw are off them, in %.
	EngineGap *dist   `json:"engine_gap,omitempty"`
	GapDev    float64 `json:"gap_mean_dev_pct,omitempty"`
	GapP50    float64 `json:"gap_p50_dev_pct,omitempty"`
	Checks    []check `json:"checks,omitempty"`
}

// check is one target checked.
type check struct {
	Name string `json:"name"`
	Pass bool   `json:"pass"`
}

func (c check) String() string {
	if c.Pass {
		return c.Name + ": PASS"
	}
	return c.Name + ": FAIL"
}

func newReport(cfg flags) *report {
	return &report{
		Date:       time.Now().UTC().Truncate(time.Second),
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUs:       runtime.NumCPU(),
		CPUModel:   cpuModel(),
		LoadAvg:    loadAvg(),
		Transport:  cfg.transport,
		Duration:   cfg.duration,
		Rounds:     cfg.rounds,
		Warmup:     cfg.warmup,
		Chunks:     chunks,
		ChunkBytes: chunkBytes,
		Workers:    workers,
	}
}

func (rep *report) add(r *row) {
	rep.Rows = append(rep.Rows, r)
	for _, x := range r.Runs {
		for _, c := range x.Checks {
			rep.Checks++
			if c.Pass {
				rep.Passed++
			}
		}
	}
}

// compare fills in each run's comparison with direct and its checks.
func (r *row) compare() {
	var base, plain, clear *loadResult
	for _, x := range r.Runs {
		switch x.Target {
		case direct:
			base = x.Result
		case meshChain:
			plain = x.Result
		case meshClear:
			clear = x.Result
		}
	}
	for _, x := range r.Runs {
		res := x.Result
		if r.Gap > 0 && res.Gap != nil {
			ref := dist{Mean: r.Gap, P50: r.Gap} // what the engine was told
			if x.EngineGap != nil && x.EngineGap.N > 0 {
				ref = *x.EngineGap // what it did
			}
			x.GapDev = pctOff(res.Gap.Mean, ref.Mean)
			x.GapP50 = pctOff(res.Gap.P50, ref.P50)
		}
		if x.Target == direct {
			continue
		}
		if base != nil {
			x.AddedP50 = res.Latency.P50 - base.Latency.P50
			if base.ReqPerSec > 0 {
				x.Ratio = res.ReqPerSec / base.ReqPerSec
			}
		}
		if x.Target == mesh && clear != nil && r.N <= 3 {
			x.SealAdded = res.Latency.P50 - clear.Latency.P50
			if clear.ReqPerSec > 0 {
				x.SealRatio = res.ReqPerSec / clear.ReqPerSec
			}
			if len(r.SealRatios) > 1 {
				x.SealRatio = median(r.SealRatios)
			}
		}
		clean := res.Errors == 0 && res.OK > 0
		switch {
		case r.N == 5:
			x.Checks = []check{{"zero errors", clean}}
		case r.N == 4:
			ok := res.Gap != nil && res.Gap.N > 0 && abs(x.GapDev) <= maxGapDev && abs(x.GapP50) <= maxGapDev
			x.Checks = []check{{fmt.Sprintf("gaps within %g%%", maxGapDev), clean && ok}}
		case base == nil:
			// Nothing to compare with: run without -targets direct.
		case r.N == 1:
			x.Checks = []check{{"added p50 <= " + msShort(maxAddedP50C1), clean && x.AddedP50 <= maxAddedP50C1}}
			if x.Target == meshPay && plain != nil {
				x.PayAdded = res.Latency.P50 - plain.Latency.P50
				x.Checks = append(x.Checks, check{fmt.Sprintf("payment adds p50 %s <= %s", signedMs(x.PayAdded), msShort(maxPayAdded)),
					clean && x.PayAdded <= maxPayAdded})
			}
			if x.Target == mesh && clear != nil {
				x.Checks = append(x.Checks, check{fmt.Sprintf("sealing adds p50 %s <= %s", signedMs(x.SealAdded), msShort(maxSealAdded)),
					clean && x.SealAdded <= maxSealAdded})
			}
		case r.N == 2, r.N == 3:
			x.Checks = []check{
				{fmt.Sprintf("req/s >= %gx direct", minRatioC30), clean && x.Ratio >= minRatioC30},
				{"added p50 <= " + msShort(maxAddedP50C30), clean && x.AddedP50 <= maxAddedP50C30},
			}
			if x.Target == mesh && clear != nil && clear.ReqPerSec > 0 {
				x.Checks = append(x.Checks, check{fmt.Sprintf("sealed req/s %.2fx >= %gx mesh+clear (p50 %s)", x.SealRatio, minSealRatio, signedMs(x.SealAdded)),
					clean && x.SealRatio >= minSealRatio})
			}
		}
	}
}

// median is the median of fs (the mean of the middle two for an even
// count).
func median(fs []float64) float64 {
	s := slices.Sorted(slices.Values(fs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// signedMs is d in milliseconds with its sign.
func signedMs(d time.Duration) string {
	if d < 0 {
		return "-" + ms(-d)
	}
	return "+" + ms(d)
}

func pctOff(got, want time.Duration) float64 {
	return 100 * (float64(got) - float64(want)) / float64(want)
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// writeJSON prints the report as JSON.
func (rep *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeTable prints the report for people.
func (rep *report) writeTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Cocoon mesh benchmark, %s\n", rep.Date.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(bw, "%s %s/%s, GOMAXPROCS %d, %d CPUs: %s\n", rep.GoVersion, runtime.GOOS, runtime.GOARCH, rep.GOMAXPROCS, rep.CPUs, rep.CPUModel)
	fmt.Fprintf(bw, "load average at start: %s\n", rep.LoadAvg)
	fmt.Fprintf(bw, "answer: %d chunks x %d B as OpenAI SSE chat.completion.chunk events, then [DONE]\n", rep.Chunks, rep.ChunkBytes)
	fmt.Fprintf(bw, "direct:      load generator -> mock engine (HTTP)\n")
	fmt.Fprintf(bw, "mesh:        load generator -> client -> proxy -> %d worker (sim backend), sealed end to end\n", rep.Workers)
	fmt.Fprintf(bw, "mesh+clear:  the same, the request and answer in the clear (as before sealing): mesh against it is sealing's cost\n")
	fmt.Fprintf(bw, "mesh+engine: load generator -> client -> proxy -> %d worker (openai backend) -> mock engine (HTTP)\n", rep.Workers)
	fmt.Fprintf(bw, "engine and nodes share this process; the load generator runs in a child process on the same CPUs\n")
	fmt.Fprintf(bw, "libp2p between nodes: %s\n", transportNote(rep.Transport))
	fmt.Fprintf(bw, "rows 1-4: %s per target after %d warm-up requests; added = p50 - direct p50; x direct = req/s / direct req/s\n", rep.Duration, rep.Warmup)
	if rep.Rounds > 1 {
		fmt.Fprintf(bw, "rows 1-4: %d rounds, the targets in turn (reversed every other round); each target's median round shown; sealed/clear = the median of the rounds' ratios\n", rep.Rounds)
	}
	fmt.Fprintf(bw, "cpu/req: CPU time per answered request, of this process (engine, nodes) + of the load generator\n")
	fmt.Fprintf(bw, "cpu ours/others: share of all CPUs used by this process and the load generator / by other processes on the machine\n")

	for _, r := range rep.Rows {
		fmt.Fprintf(bw, "\n%d. %s\n", r.N, r.Name)
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
		switch {
		case r.Gap > 0:
			fmt.Fprintln(tw, "target\tengine mean\tseen mean\toff\tengine p50\tseen p50\toff\tseen p99\tttfb p50\terrors\tcpu ours/others\t   check")
			for _, x := range r.Runs {
				g, eg := x.Result.Gap, x.EngineGap
				if g == nil {
					g = &dist{}
				}
				if eg == nil {
					eg = &dist{}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%+.1f%%\t%s\t%s\t%+.1f%%\t%s\t%s\t%d\t%s\t   %s\n",
					x.Target, ms(eg.Mean), ms(g.Mean), x.GapDev, ms(eg.P50), ms(g.P50), x.GapP50, ms(g.P99),
					ms(x.Result.TTFB.P50), x.Result.Errors, cpuShares(x.Result), checks(x.Checks))
			}
		case r.N == 5:
			fmt.Fprintln(tw, "target\tok\terrors\treq/s\tp50\tp99\tttfb p50\tpeak RSS\tcpu/req\tcpu ours/others\t   check")
			for _, x := range r.Runs {
				res := x.Result
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t   %s\n",
					x.Target, res.OK, res.Errors, res.ReqPerSec, ms(res.Latency.P50), ms(res.Latency.P99),
					ms(res.TTFB.P50), mib(r.PeakRSS), cpuPerReq(res), cpuShares(res), checks(x.Checks))
			}
		default:
			fmt.Fprintln(tw, "target\treq/s\tx direct\tp50\tp99\tttfb p50\tadded p50\terrors\tcpu/req\tcpu ours/others\t   check")
			for _, x := range r.Runs {
				res := x.Result
				ratio, added := "", ""
				if x.Target != direct {
					ratio, added = fmt.Sprintf("%.2fx", x.Ratio), "+"+ms(x.AddedP50)
					if x.AddedP50 < 0 {
						added = "-" + ms(-x.AddedP50)
					}
				}
				fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t   %s\n",
					x.Target, res.ReqPerSec, ratio, ms(res.Latency.P50), ms(res.Latency.P99), ms(res.TTFB.P50),
					added, res.Errors, cpuPerReq(res), cpuShares(res), checks(x.Checks))
			}
		}
		tw.Flush()
		for _, x := range r.Runs {
			if x.SealRatio == 0 {
				continue
			}
			fmt.Fprintf(bw, "   sealed over clear: req/s %.2fx, p50 %s", x.SealRatio, signedMs(x.SealAdded))
			if len(r.SealRatios) > 1 {
				fmt.Fprintf(bw, " (req/s the median of %d rounds:", len(r.SealRatios))
				for _, f := range r.SealRatios {
					fmt.Fprintf(bw, " %.2fx", f)
				}
				fmt.Fprint(bw, ")")
			}
			fmt.Fprintln(bw)
		}
		for _, x := range r.Runs {
			for _, e := range x.Result.ErrorKind {
				fmt.Fprintf(bw, "   %s error: %s\n", x.Target, e)
			}
		}
		if r.Gap > 0 {
			fmt.Fprintf(bw, "   gaps between chunks, the engine told to wait %s: engine = as it made them (mock engine: after each flush; sim: at each emit),\n", r.Gap)
			fmt.Fprintf(bw, "   seen = as the load generator read them; the check wants the seen mean and p50 within %g%% of the engine's\n", maxGapDev)
		}
		if r.N == 5 {
			fmt.Fprintf(bw, "   %d streams at once, %d requests in all, worker max_concurrent raised to %d; peak RSS %s\n",
				r.Concurrency, r.Runs[0].Result.OK+r.Runs[0].Result.Errors, 2*r.Concurrency, rssNote(r.PeakRSSReset))
		}
	}
	fmt.Fprintf(bw, "\ntargets: %d of %d checks pass\n", rep.Passed, rep.Checks)
	fmt.Fprintf(bw, "peak RSS of this process over the run: %s\n", mib(rep.PeakRSS))
	fmt.Fprintf(bw, "took %s\n", rep.Took.Round(100*time.Millisecond))
	if len(rep.Money) > 0 {
		if err := writeMoney(bw, rep.Money); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func rssNote(reset bool) string {
	if reset {
		return "counted from the start of this row (its network and streams)"
	}
	return "counted from the start of the bench (the kernel did not let it be reset)"
}

func checks(cs []check) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.String())
	}
	return strings.Join(s, ", ")
}

// msShort writes a round d in milliseconds: "0.5 ms".
func msShort(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'g', -1, 64) + " ms"
}

// ms writes d in milliseconds with microsecond precision.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64) + " ms"
}

func mib(b int64) string {
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// busy is the share of the machine's CPU time the bench and its load
// generator used during a run, and the share other processes used, in %.
func busy(res *loadResult) (ours, others float64) {
	total := float64(res.Wall) * float64(runtime.NumCPU())
	if total <= 0 {
		return 0, 0
	}
	ours = 100 * float64(res.BenchCPU+res.LoadCPU) / total
	if res.AllCPU > 0 {
		others = max(0, 100*float64(res.AllCPU)/total-ours)
	}
	return ours, others
}

func cpuShares(res *loadResult) string {
	ours, others := busy(res)
	return fmt.Sprintf("%.0f/%.0f%%", ours, others)
}

func transportNote(t string) string {
	if t == "default" {
		return "the nodes' defaults (proxy and worker listen on TCP and QUIC; nodes dial TCP first, QUIC after 250 ms)"
	}
	return "proxy and worker listen on " + t + " only (-transport)"
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuPerReq(res *loadResult) string {
	if res.OK == 0 {
		return "-"
	}
	per := func(d time.Duration) int64 { return int64(d/time.Microsecond) / int64(res.OK) }
	return fmt.Sprintf("%d+%d µs", per(res.BenchCPU), per(res.LoadCPU))
}

// peakRSS is this process's peak resident memory (VmHWM), 0 if unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// cpuModel is the first model name in /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
