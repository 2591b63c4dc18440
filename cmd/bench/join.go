package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// joinTarget is how soon a new worker must be routed to after it starts.
const joinTarget = 2 * time.Second

// joinResult is one new worker's way into a running network.
type joinResult struct {
	Started time.Duration `json:"started_ns"` // node.Start returned
	Routed  time.Duration `json:"routed_ns"`  // its first request answered
}

// runJoin measures, with real nodes, how soon a worker that starts in a
// running network is routed to: a sandbox chain with the root contract, a
// proxy listed in it, a client, all on production intervals (offers every
// 10 s, DHT lookups every 30 s). Each new worker is given only the
// contract's address and serves a model no other worker has, so the first
// answer for it proves it was found, attested and routed to. The time runs
// from the call that starts the worker's node to that first answer.
func runJoin(ctx context.Context, runs int, asJSON bool, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "cocoon-bench-join-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	nw := testnet.NewNet(dir, log)
	defer nw.Close()
	fmt.Fprintln(stderr, "join: starting the sandbox chain and deploying the root contract")
	c, err := testnet.StartChain(ctx, "local", nil, log)
	if err != nil {
		return err
	}
	nw.UseChain(c)
	production := func(cfg *config.Config) {
		def := config.Default(cfg.Role)
		cfg.Gossip, cfg.Discovery.LookupInterval = def.Gossip, def.Discovery.LookupInterval
	}
	if _, err := nw.AddProxy(ctx, production); err != nil {
		return err
	}
	first := func(cfg *config.Config) { cfg.Worker.Sim.Models = []string{"join-0"} }
	if _, err := nw.AddWorker(ctx, []testnet.Modify{production, first}); err != nil {
		return err
	}
	client, err := nw.AddClient(ctx, production)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = testnet.WaitReady(wctx, client)
	cancel()
	if err != nil {
		return err
	}
	url := "http://" + client.APIAddr() + "/v1/chat/completions"

	var results []joinResult
	for i := 1; i <= runs; i++ {
		model := fmt.Sprintf("join-%d", i)
		only := func(cfg *config.Config) { cfg.Worker.Sim.Models = []string{model} }
		start := time.Now()
		if _, err := nw.AddWorker(ctx, []testnet.Modify{production, only}); err != nil {
			return err
		}
		r := joinResult{Started: time.Since(start)}
		if err := untilAnswered(ctx, url, model, 10*joinTarget); err != nil {
			return fmt.Errorf("worker %d: %w", i, err)
		}
		r.Routed = time.Since(start)
		results = append(results, r)
		fmt.Fprintf(stderr, "join: worker %d routed to %s after its start\n", i, r.Routed.Round(time.Millisecond))
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"join": results})
	}
	routed := make([]time.Duration, len(results))
	started := make([]time.Duration, len(results))
	for i, r := range results {
		routed[i], started[i] = r.Routed, r.Started
	}
	slices.Sort(routed)
	slices.Sort(started)
	verdict := "PASS"
	if routed[len(routed)-1] > joinTarget {
		verdict = "FAIL"
	}
	fmt.Fprintf(stdout, "\nA new worker in a running network of real nodes (sandbox chain, root contract, 1 proxy, 1 client; production intervals)\n")
	fmt.Fprintf(stdout, "  runs  node started p50  routed p50   routed max   check\n")
	fmt.Fprintf(stdout, "  %4d  %15s  %10s  %11s   routed within %s: %s\n", len(results),
		started[len(started)/2].Round(time.Millisecond), routed[len(routed)/2].Round(time.Millisecond),
		routed[len(routed)-1].Round(time.Millisecond), joinTarget, verdict)
	return nil
}

// untilAnswered sends a one-token chat request for model every 10 ms until
// one is answered with 200, or within gives up.
func untilAnswered(ctx context.Context, url, model string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	body := fmt.Appendf(nil, `{"model":%q,"max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`, model)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	last := ""
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not routed to within %s (last answer: %s)", within, last)
		case <-t.C:
		}
	}
}
