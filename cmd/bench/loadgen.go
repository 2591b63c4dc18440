package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocoon-mesh/cocoon/internal/procstat"
)

// The load generator runs in a process of its own (the bench binary
// re-executed as "bench loadgen ..."), so that its goroutines never share
// a Go scheduler with the nodes it measures, as with an external tool like
// hey. It posts streaming chat requests, reads each server-sent event
// answer to its end, and prints a loadResult as JSON on stdout.

// loadSpec is one run of the load generator.
type loadSpec struct {
	URL         string
	Body        string
	Concurrency int
	Duration    time.Duration // run this long...
	Requests    int           // ...or this many requests in all, when > 0
	KeepAlive   bool
	Gaps        bool   // record the gaps between content events
	Events      int    // content events a good answer has; 0 skips the check
	Tool        string // "hey" runs Debian's hey instead of the built-in generator
}

func (s loadSpec) args() []string {
	return []string{
		"-url", s.URL,
		"-body", s.Body,
		"-c", strconv.Itoa(s.Concurrency),
		"-duration", s.Duration.String(),
		"-n", strconv.Itoa(s.Requests),
		"-keepalive=" + strconv.FormatBool(s.KeepAlive),
		"-gaps=" + strconv.FormatBool(s.Gaps),
		"-events", strconv.Itoa(s.Events),
	}
}

// loadResult is what one run measured. Durations are in nanoseconds in
// JSON.
type loadResult struct {
	OK        int           `json:"ok"`     // answers read whole and well-formed
	Errors    int           `json:"errors"` // everything else
	ErrorKind []string      `json:"error_samples,omitempty"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	ReqPerSec float64       `json:"req_per_sec"` // OK / Elapsed
	Latency   dist          `json:"latency"`     // request sent to answer read whole
	TTFB      dist          `json:"ttfb"`        // request sent to the first content event
	Gap       *dist         `json:"gap,omitempty"`
	// Reads is the mean number of reads that returned answer bytes: 1 when
	// an answer arrives in one piece, up to one per event when every hop
	// sends each event by itself.
	Reads float64 `json:"reads_per_answer"`

	// Filled in by the parent, not the load generator.
	BenchCPU time.Duration `json:"bench_cpu_ns,omitempty"`   // CPU the bench process (nodes, engine) spent during the run
	LoadCPU  time.Duration `json:"loadgen_cpu_ns,omitempty"` // CPU the load generator spent
	AllCPU   time.Duration `json:"machine_cpu_ns,omitempty"` // CPU every process on the machine spent, from /proc/stat
	Wall     time.Duration `json:"wall_ns,omitempty"`        // the load generator's life, over which the CPU times are taken
}

// dist summarizes durations.
type dist struct {
	N    int           `json:"n"`
	Mean time.Duration `json:"mean_ns"`
	Std  time.Duration `json:"std_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
}

func summarize(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	slices.Sort(ds)
	var sum float64
	for _, d := range ds {
		sum += float64(d)
	}
	mean := sum / float64(len(ds))
	var sq float64
	for _, d := range ds {
		sq += (float64(d) - mean) * (float64(d) - mean)
	}
	pct := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return dist{
		N: len(ds), Mean: time.Duration(mean), Std: time.Duration(math.Sqrt(sq / float64(len(ds)))),
		P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: ds[len(ds)-1],
	}
}

// runLoad runs the load generator in a child process and returns what it
// measured, with the CPU time both processes spent.
func runLoad(ctx context.Context, spec loadSpec) (*loadResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the bench binary: %w", err)
	}
	args := append([]string{"loadgen"}, spec.args()...)
	if spec.Tool == "hey" && !spec.Gaps {
		exe, args = "hey", spec.heyArgs()
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start, before, allBefore := time.Now(), procstat.SelfCPU(), procstat.MachineCPU()
	err = cmd.Run()
	wall, benchCPU, allCPU := time.Since(start), procstat.SelfCPU()-before, procstat.MachineCPU()-allBefore
	if err != nil {
		return nil, fmt.Errorf("load generator: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var res loadResult
	if spec.Tool == "hey" && !spec.Gaps {
		r, err := parseHey(stdout.String())
		if err != nil {
			return nil, err
		}
		res = *r
	} else if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("load generator output: %w", err)
	}
	res.BenchCPU = benchCPU
	res.AllCPU = allCPU
	res.Wall = wall
	res.LoadCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return &res, nil
}

// runLoadgen is the "loadgen" subcommand: the child side of runLoad.
func runLoadgen(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench loadgen", flag.ContinueOnError)
	var spec loadSpec
	fs.StringVar(&spec.URL, "url", "", "URL to POST to")
	fs.StringVar(&spec.Body, "body", "", "request body")
	fs.IntVar(&spec.Concurrency, "c", 1, "requests in flight at once")
	fs.DurationVar(&spec.Duration, "duration", 3*time.Second, "how long to send requests")
	fs.IntVar(&spec.Requests, "n", 0, "requests in all (overrides -duration when > 0)")
	fs.BoolVar(&spec.KeepAlive, "keepalive", true, "reuse connections")
	fs.BoolVar(&spec.Gaps, "gaps", false, "record gaps between content events")
	fs.IntVar(&spec.Events, "events", 0, "content events a good answer has (0: any)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if spec.URL == "" || spec.Concurrency < 1 {
		return errors.New("loadgen: -url and -c >= 1 are required")
	}
	res := generate(ctx, spec)
	return json.NewEncoder(stdout).Encode(res)
}

// sample is what one request measured.
type sample struct {
	latency, ttfb time.Duration
	gaps          []time.Duration
	reads         int
	err           error
}

// generate runs spec in this process.
func generate(ctx context.Context, spec loadSpec) *loadResult {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		DisableKeepAlives:   !spec.KeepAlive,
		MaxIdleConns:        spec.Concurrency,
		MaxIdleConnsPerHost: spec.Concurrency,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}

	var (
		next     atomic.Int64 // requests started, in -n mode
		deadline = time.Now().Add(spec.Duration)
		mu       sync.Mutex // guards samples
		samples  []sample
		wg       sync.WaitGroup
	)
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if spec.Requests > 0 {
			return next.Add(1) <= int64(spec.Requests)
		}
		return time.Now().Before(deadline)
	}
	start := time.Now()
	for range spec.Concurrency {
		wg.Go(func() {
			var mine []sample
			br := bufio.NewReaderSize(nil, 64<<10)
			for more() {
				mine = append(mine, request(ctx, client, spec, br))
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &loadResult{Elapsed: elapsed}
	var lat, ttfb, gaps []time.Duration
	reads := 0
	seen := make(map[string]bool)
	for _, s := range samples {
		if s.err != nil {
			res.Errors++
			if msg := s.err.Error(); !seen[msg] && len(seen) < 5 {
				seen[msg] = true
				res.ErrorKind = append(res.ErrorKind, msg)
			}
			continue
		}
		res.OK++
		lat = append(lat, s.latency)
		ttfb = append(ttfb, s.ttfb)
		gaps = append(gaps, s.gaps...)
		reads += s.reads
	}
	if res.OK > 0 {
		res.Reads = float64(reads) / float64(res.OK)
	}
	res.ReqPerSec = float64(res.OK) / elapsed.Seconds()
	res.Latency = summarize(lat)
	res.TTFB = summarize(ttfb)
	if spec.Gaps {
		g := summarize(gaps)
		res.Gap = &g
	}
	return res
}

// timedReader notes when each read from the network returned data, so
// that a line parsed out of a buffer can be dated by the read that
// completed it.
type timedReader struct {
	r     io.Reader
	last  time.Time
	reads int
}

func (t *timedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.last = time.Now()
		t.reads++
	}
	return n, err
}

var (
	dataPrefix  = []byte("data:")
	doneLine    = []byte("data: [DONE]")
	errorPrefix = []byte(`data: {"error"`)
)

// request sends one request and reads its answer to the end. br is the
// caller's buffer, reset onto the answer.
func request(ctx context.Context, client *http.Client, spec loadSpec, br *bufio.Reader) sample {
	var s sample
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, spec.URL, bytes.NewReader([]byte(spec.Body)))
	if err != nil {
		s.err = err
		return s
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		s.err = errors.Unwrap(err) // drop the URL, which every sample shares
		if s.err == nil {
			s.err = err
		}
		return s
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		s.err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		return s
	}
	tr := &timedReader{r: resp.Body}
	br.Reset(tr)
	var (
		events   int
		finished bool
		last     time.Time
	)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			s.err = fmt.Errorf("reading answer: %w", err)
			return s
		}
		switch {
		case bytes.HasPrefix(line, doneLine):
			finished = true
		case bytes.HasPrefix(line, errorPrefix):
			s.err = fmt.Errorf("error event: %s", bytes.TrimSpace(line))
			return s
		case bytes.HasPrefix(line, dataPrefix):
			at := tr.last
			if events == 0 {
				s.ttfb = at.Sub(start)
			} else if spec.Gaps {
				s.gaps = append(s.gaps, at.Sub(last))
			}
			last = at
			events++
		}
	}
	s.latency = time.Since(start)
	s.reads = tr.reads
	switch {
	case !finished:
		s.err = fmt.Errorf("answer ended without [DONE] after %d events", events)
	case spec.Events > 0 && events != spec.Events:
		s.err = fmt.Errorf("answer had %d content events, want %d", events, spec.Events)
	}
	return s
}
