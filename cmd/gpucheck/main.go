// Command gpucheck exercises NVIDIA confidential-computing attestation on
// this machine: it times NVML's start, prints the CC capability, state
// and ready state, whether the certificate and attestation report calls
// work, and what the verifier (with NVIDIA's pinned root) makes of the
// evidence, bound to a throwaway peer key. It changes nothing on the GPU.
//
// Exit status: 0 when it could ask NVML (whatever the verdict), 1 when it
// could not (no driver, built without cgo). -strict also exits 1 when the
// evidence is rejected.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/nvidia"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gpucheck:", err)
		}
		os.Exit(1)
	}
}

// errRejected is returned under -strict when the evidence is rejected.
var errRejected = errors.New("gpu evidence rejected")

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("gpucheck", flag.ContinueOnError)
	strict := fs.Bool("strict", false, "exit 1 when the evidence is rejected")
	if err := fs.Parse(args); err != nil {
		return err
	}

	if err := probe(stdout); err != nil {
		return err
	}

	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	binding, err := attest.Binding(pub, now.Add(time.Hour), nil)
	if err != nil {
		return err
	}
	nonce := nvidia.Nonce(binding)

	start := time.Now()
	ev, err := nvidia.NewCollector().Collect(ctx, nonce)
	if err != nil {
		return fmt.Errorf("collecting: %w", err)
	}
	fmt.Fprintf(stdout, "collect: %s for %d GPUs\n", time.Since(start).Round(time.Microsecond), len(ev.GPUs))
	fmt.Fprintf(stdout, "system: %s\n", ev.System)
	for i, g := range ev.GPUs {
		fmt.Fprintf(stdout, "gpu %d: %s %s\n", i, g.Name, g.UUID)
		if g.CertErr != "" {
			fmt.Fprintf(stdout, "  certificate call: fails: %s\n", g.CertErr)
		} else {
			fmt.Fprintf(stdout, "  certificate call: works: %d certificates\n", len(g.Chain))
		}
		if g.ReportErr != "" {
			fmt.Fprintf(stdout, "  report call: fails: %s\n", g.ReportErr)
		} else {
			fmt.Fprintf(stdout, "  report call: works: %d bytes\n", len(g.Report))
		}
	}
	blob, err := nvidia.Encode(ev)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "evidence: %d bytes encoded\n", len(blob))

	v, err := nvidia.NewVerifier()
	if err != nil {
		return err
	}
	start = time.Now()
	res, verr := v.Verify(blob, nonce, now)
	fmt.Fprintf(stdout, "verify: %s\n", time.Since(start).Round(time.Microsecond))
	fmt.Fprintf(stdout, "checks: capable=%t cc-on=%t devtools-off=%t production=%t ready=%t\n",
		res.Capable, res.CCOn, res.NoDevTools, res.Production, res.Ready)
	for i, g := range res.GPUs {
		fmt.Fprintf(stdout, "  gpu %d: report=%t nonce=%t chain=%t signature=%t\n", i, g.Report, g.Nonce, g.Chain, g.Signature)
	}
	if verr == nil {
		fmt.Fprintln(stdout, "verdict: GPU evidence accepted: tier tee-gpu if the TDX quote also verifies (measurements are not checked against NVIDIA's RIMs)")
		return nil
	}
	fmt.Fprintf(stdout, "verdict: GPU evidence rejected: tier tee at most\n%v\n", verr)
	if *strict {
		return errRejected
	}
	return nil
}
