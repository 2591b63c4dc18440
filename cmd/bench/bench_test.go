package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain lets the test binary serve as the load generator, which the
// bench runs by re-executing its own binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "loadgen" {
		if err := runLoadgen(context.Background(), os.Args[2:], os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Every row, very short, through real networks: the bench runs end to end
// and every answer arrives whole. No timing is checked.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five networks")
	}
	b := &bench{
		cfg: flags{duration: 50 * time.Millisecond, warmup: 2, rows: []int{1, 2, 3, 4, 5},
			targets: []string{direct, mesh, meshEngine}, transport: "default", bigConc: 20, bigN: 40},
		log:      slog.New(slog.DiscardHandler),
		progress: io.Discard,
	}
	rep, err := b.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 5 {
		t.Fatalf("%d rows, want 5", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		for _, x := range r.Runs {
			if x.Result.OK == 0 || x.Result.Errors != 0 {
				t.Errorf("row %d %s: ok %d, errors %d %q", r.N, x.Target, x.Result.OK, x.Result.Errors, x.Result.ErrorKind)
			}
		}
	}
	if err := rep.writeTable(io.Discard); err != nil {
		t.Error(err)
	}
	if err := rep.writeJSON(io.Discard); err != nil {
		t.Error(err)
	}
}

// The load generator against the mock engine, in this process: every
// answer must count as whole, and paced answers must show their gaps.
func TestLoadgenAgainstMockEngine(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tc := range []struct {
		name      string
		gap       time.Duration
		keepAlive bool
	}{
		{"unpaced", 0, true},
		{"unpaced without keep-alive", 0, false},
		{"paced", time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n, events = 6, 5
			eng := newMockEngine(events, 16, tc.gap)
			if err := eng.Start(); err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			res := generate(context.Background(), loadSpec{
				URL: eng.URL() + "/v1/chat/completions", Body: requestBody,
				Concurrency: 2, Requests: n, KeepAlive: tc.keepAlive, Gaps: tc.gap > 0, Events: events,
			})
			if res.OK != n || res.Errors != 0 {
				t.Fatalf("ok %d, errors %d %q; want %d ok", res.OK, res.Errors, res.ErrorKind, n)
			}
			if res.TTFB.P50 <= 0 || res.TTFB.P50 > res.Latency.P50 {
				t.Errorf("ttfb p50 %s, latency p50 %s", res.TTFB.P50, res.Latency.P50)
			}
			if tc.gap == 0 {
				if res.Gap != nil {
					t.Errorf("gaps recorded without -gaps")
				}
				return
			}
			if res.Gap == nil || res.Gap.N != n*(events-1) {
				t.Fatalf("gaps %+v, want %d of them", res.Gap, n*(events-1))
			}
			if res.Gap.Mean < tc.gap {
				t.Errorf("mean gap %s, shorter than the engine's %s", res.Gap.Mean, tc.gap)
			}
			if g := eng.rec.take(); len(g) != n*(events-1) {
				t.Errorf("engine recorded %d gaps, want %d", len(g), n*(events-1))
			}
		})
	}
}

// A short answer, or none, is an error, not a result.
func TestLoadgenCountsBadAnswers(t *testing.T) {
	defer goleak.VerifyNone(t)
	eng := newMockEngine(3, 8, 0)
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	for _, spec := range []loadSpec{
		{URL: eng.URL() + "/v1/chat/completions", Body: requestBody, Events: 4},
		{URL: eng.URL() + "/v1/chat/completions", Body: `{"stream":false}`},
		{URL: eng.URL() + "/v1/nowhere", Body: requestBody},
	} {
		spec.Concurrency, spec.Requests = 1, 2
		res := generate(context.Background(), spec)
		if res.OK != 0 || res.Errors != 2 || len(res.ErrorKind) != 1 {
			t.Errorf("%s %s: ok %d, errors %d %q; want 2 errors of one kind", spec.URL, spec.Body, res.OK, res.Errors, res.ErrorKind)
		}
	}
}

// The engine answers as an OpenAI-compatible engine would: its model list,
// and a usage event before [DONE] when asked for one.
func TestMockEngineSpeaksOpenAI(t *testing.T) {
	defer goleak.VerifyNone(t)
	eng := newMockEngine(2, 8, 0)
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	resp, err := client.Get(eng.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"id":"bench"`) {
		t.Errorf("models: %s", b)
	}

	body := `{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[]}`
	resp, err = client.Post(eng.URL()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var data []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	if len(data) != 4 || !strings.Contains(data[2], `"usage":{`) || data[3] != "[DONE]" {
		t.Errorf("events %q: want 2 chunks, usage, [DONE]", data)
	}
	if !strings.Contains(data[1], `"finish_reason":"length"`) {
		t.Errorf("last chunk %q has no finish reason", data[1])
	}
}

// TestMeasureMoney: every step of paying for an answer is timed, and
// printed.
func TestMeasureMoney(t *testing.T) {
	if testing.Short() {
		t.Skip("times each step for about a second")
	}
	ops, err := measureMoney()
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 6 {
		t.Fatalf("%d steps, want 6", len(ops))
	}
	for _, o := range ops {
		if o.Usec <= 0 {
			t.Errorf("%s, %s: %v µs", o.Hop, o.Op, o.Usec)
		}
	}
	var out strings.Builder
	if err := writeMoney(&out, ops); err != nil || !strings.Contains(out.String(), "sign the receipt") {
		t.Errorf("table %q, %v", out.String(), err)
	}
	t.Log(out.String())
}
