package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
)

func runTestnet(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("testnet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workers := fs.Int("workers", 2, "number of workers")
	backend := fs.String("backend", "", "OpenAI-compatible engine base URL for the workers (default: the built-in sim engine)")
	apiAddr := fs.String("api-addr", "127.0.0.1:10000", "the client's OpenAI API address")
	logLevel := fs.String("log-level", "warn", "log level of the nodes: debug, info, warn or error")
	simChunks := fs.Int("sim-chunks", 0, "sim workers answer with exactly this many chunks (benchmark shape)")
	simChunkBytes := fs.Int("sim-chunk-bytes", 0, "bytes per sim chunk (benchmark shape)")
	static := fs.Bool("static", false, "skip the sandbox chain and root contract: tell nodes each other's addresses (for machines without Node.js); no payments")
	noPayments := fs.Bool("no-payments", false, "leave payments off: no wallets, no channels")
	var models, embeddingModels stringList
	fs.Var(&models, "model", "model to serve (repeatable; default sim-small, or the engine's own list)")
	fs.Var(&embeddingModels, "embedding-model", "engine model to serve /v1/embeddings for (repeatable; with --backend)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	opts := testnet.Options{
		Workers: *workers, BackendURL: *backend, Models: models, APIAddr: *apiAddr,
		Progress: func(s string) { fmt.Fprintln(stdout, "testnet:", s) },
		Static:   *static, NoPayments: *noPayments,
	}
	if len(embeddingModels) > 0 {
		opts.Worker = append(opts.Worker, func(c *config.Config) { c.Worker.OpenAI.EmbeddingModels = embeddingModels })
	}
	if *simChunks > 0 {
		opts.Worker = append(opts.Worker, func(c *config.Config) {
			c.Worker.Sim.Chunks, c.Worker.Sim.ChunkBytes = *simChunks, *simChunkBytes
		})
	}
	fmt.Fprintf(stdout, "testnet: starting a proxy, %d worker(s) and a client on 127.0.0.1\n", *workers)
	s, err := testnet.Start(ctx, opts, log)
	if err != nil {
		return err
	}
	defer s.Close()
	base := "http://" + s.Client.APIAddr() + "/v1"
	fmt.Fprintf(stdout, "testnet: ready: OpenAI API on %s\n", base)
	fmt.Fprintf(stdout, "testnet: try: curl -N %s/chat/completions -H 'Content-Type: application/json' -d '{\"model\":\"%s\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'\n",
		base, firstModel(models))
	if c := s.Chain(); c != nil {
		fmt.Fprintf(stdout, "testnet: root contract %s on the sandbox chain; every node found the others through it\n", c.Root.StringRaw())
	}
	for _, d := range s.Dashboards() {
		fmt.Fprintf(stdout, "testnet: dashboard of %s: %s\n", d.Node, d.URL)
	}
	fmt.Fprintln(stdout, "testnet: press Ctrl-C to stop")
	// Spend and earnings, whenever they change.
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	last := s.Payments()
	for {
		select {
		case <-ctx.Done():
			if p := s.Payments(); p != "" {
				fmt.Fprintln(stdout, "testnet: payments:", p)
			}
			fmt.Fprintln(stdout, "testnet: shutting down")
			return nil
		case <-t.C:
			if p := s.Payments(); p != last {
				fmt.Fprintln(stdout, "testnet: payments:", p)
				last = p
			}
		}
	}
}

func firstModel(models []string) string {
	if len(models) > 0 {
		return models[0]
	}
	return "sim-small"
}
