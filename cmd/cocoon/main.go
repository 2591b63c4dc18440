// Command cocoon runs a Cocoon mesh node: a worker, a proxy or a client, or
// a whole local network (testnet).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "cocoon:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	var u usageError
	if errors.Is(err, flag.ErrHelp) || errors.As(err, &u) {
		return 2
	}
	return 1
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

const usage = `cocoon: a decentralized, confidential AI-inference network

Usage:
  cocoon worker  [flags]   serve models and earn (sim or an OpenAI-compatible engine)
  cocoon worker drain [flags]
                           a running worker takes no new requests, finishes those in flight and settles
  cocoon reload  [flags]   a running node applies its changed configuration (as on SIGHUP): prices, capacity, models
  cocoon proxy   [flags]   route requests to workers
  cocoon client  [flags]   expose the OpenAI-compatible API on 127.0.0.1:10000
  cocoon testnet [flags]   run a proxy, workers and a client on 127.0.0.1
  cocoon status  [flags]   what a running node sees: peers, offers, routing, serving, payments
  cocoon doctor  [flags]   a running node checks itself: each check passes or fails, with its fix
  cocoon wallet  address|balance [flags]
                           the node's TON wallet, from the seed in its data dir
  cocoon channel list|open|close|finish [--peer ID] [flags]
                           a running node's payment channels: list, open, close (or dispute), finish
  cocoon registry set-min-tcb|set-measurements [flags]
                           the root contract owner's message setting the minimum TDX TCB or the TD images
  cocoon config init --role R [--out FILE]
                           a configuration file with every setting, its default and meaning
  cocoon version           print the version

Run 'cocoon <command> -h' for the flags of each.
`

// run is the whole program; main only adds the process around it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "worker", "proxy", "client":
		if cmd == "worker" && len(rest) > 0 && rest[0] == "drain" {
			return runDrain(ctx, rest[1:], getenv, stdout, stderr)
		}
		return runNode(ctx, cmd, rest, getenv, stdout, stderr)
	case "reload":
		return runReload(ctx, rest, getenv, stdout, stderr)
	case "testnet":
		return runTestnet(ctx, rest, getenv, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, getenv, stdout, stderr)
	case "config":
		return runConfig(ctx, rest, stdout, stderr)
	case "wallet":
		return runWallet(ctx, rest, getenv, stdout, stderr)
	case "channel":
		return runChannel(ctx, rest, getenv, stdout, stderr)
	case "doctor":
		return runDoctor(ctx, rest, getenv, stdout, stderr)
	case "registry":
		return runRegistry(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "cocoon", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
