package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"math"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// ownerMessageValue is the TON attached to an owner's update: enough for
// the contract's gas, the rest stays on its balance.
const ownerMessageValue = 50_000_000 // nanoTON, 0.05 TON

const registryUsage = `usage: cocoon registry set-min-tcb|set-measurements [flags]
  builds the root contract owner's message setting the minimum TDX TCB or the allowed TD
  images (docs/registry.md); send it from the owner's wallet to the root contract`

// runRegistry handles `cocoon registry set-min-tcb|set-measurements`: the
// root contract owner's update messages, built offline. It prints the
// message body; the owner sends it from the wallet that owns the contract.
func runRegistry(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{registryUsage}
	}
	switch args[0] {
	case "set-min-tcb":
		return runSetMinTCB(args[1:], stdout, stderr)
	case "set-measurements":
		return runSetMeasurements(args[1:], stdout, stderr)
	}
	return usageError{registryUsage}
}

func runSetMinTCB(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("registry set-min-tcb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: cocoon registry set-min-tcb [--tee-tcb-svn HEX] [--cpu-svn HEX] [--pce-svn N] [--any] [--root ADDR] [--query-id N]

Builds the root contract owner's set_min_tcb message: from the next registry refresh,
every node refuses TDX evidence whose TCB is below this minimum in any component,
and drops the peers it had verified that are below it. Components left out are zero
(no minimum). The command only prints the message; send it from the wallet that owns
the root contract, to the contract, with about 0.05 TON.

`)
		fs.PrintDefaults()
	}
	tee := fs.String("tee-tcb-svn", "", "minimum TEE_TCB_SVN of the TD report (TDX module, SEAM loader): 32 hex digits")
	cpu := fs.String("cpu-svn", "", "minimum CPUSVN of the PCK certificate (16 SGX TCB components): 32 hex digits")
	pce := fs.Uint64("pce-svn", 0, "minimum PCESVN of the PCK certificate: 0..65535")
	anyTCB := fs.Bool("any", false, "set the minimum to all zero: accept any TCB")
	root, queryID := messageFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	given := set["tee-tcb-svn"] || set["cpu-svn"] || set["pce-svn"]
	switch {
	case *anyTCB && given:
		return usageError{"--any sets every component to zero: give it alone"}
	case !*anyTCB && !given:
		return usageError{"give --tee-tcb-svn, --cpu-svn or --pce-svn (or --any to accept any TCB)"}
	case *pce > math.MaxUint16:
		return usageError{fmt.Sprintf("--pce-svn: %d is over 65535", *pce)}
	}
	tcb := registry.TCB{PCESVN: uint16(*pce)}
	var err error
	if tcb.TEETCBSVN, err = registry.ParseSVN(*tee); err != nil {
		return usageError{"--tee-tcb-svn: " + err.Error()}
	}
	if tcb.CPUSVN, err = registry.ParseSVN(*cpu); err != nil {
		return usageError{"--cpu-svn: " + err.Error()}
	}
	to, err := parseRootFlag(*root)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "set_min_tcb: %s\n", tcb)
	printOwnerMessage(stdout, registry.SetMinTCB(*queryID, tcb), to)
	return nil
}

func runSetMeasurements(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("registry set-measurements", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: cocoon registry set-measurements --measurement MRTD:RTMR0:RTMR1:RTMR2:RTMR3 ... [--none] [--root ADDR] [--query-id N]

Builds the root contract owner's set_measurements message, which replaces the list of
TD images (at most %d) every node accepts TDX evidence from. From the next registry
refresh, peers running an image no longer listed are dropped. The command only prints
the message; send it from the wallet that owns the root contract, to the contract,
with about 0.05 TON.

`, registry.MaxMeasurements)
		fs.PrintDefaults()
	}
	var list stringList
	fs.Var(&list, "measurement", "an allowed TD image: MRTD and RTMR0-3, 96 hex digits each, joined by colons (repeatable)")
	none := fs.Bool("none", false, "allow no TD image: every node refuses all TDX evidence")
	root, queryID := messageFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case *none && len(list) > 0:
		return usageError{"--none allows no image: give it without --measurement"}
	case !*none && len(list) == 0:
		return usageError{"give --measurement (or --none to allow no image)"}
	case len(list) > registry.MaxMeasurements:
		return usageError{fmt.Sprintf("--measurement: %d given, at most %d", len(list), registry.MaxMeasurements)}
	}
	var ms []registry.Measurement
	for i, s := range list {
		m, err := registry.ParseMeasurement(s)
		if err != nil {
			return usageError{fmt.Sprintf("--measurement %d: %v", i+1, err)}
		}
		ms = append(ms, m)
	}
	to, err := parseRootFlag(*root)
	if err != nil {
		return err
	}
	body, err := registry.SetMeasurements(*queryID, ms)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "set_measurements: %d image(s)\n", len(ms))
	printOwnerMessage(stdout, body, to)
	return nil
}

// messageFlags adds the flags every owner's message takes.
func messageFlags(fs *flag.FlagSet) (root *string, queryID *uint64) {
	root = fs.String("root", "", "the root contract's address; with it the command also prints a ton://transfer link")
	queryID = fs.Uint64("query-id", 0, "the message's query_id (any number; it comes back in a bounce)")
	return root, queryID
}

// parseRootFlag parses --root; empty is nil.
func parseRootFlag(s string) (*address.Address, error) {
	if s == "" {
		return nil, nil
	}
	a, err := config.ParseRoot(s)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--root: %q is not a TON address: %v", s, err)}
	}
	return a, nil
}

// printOwnerMessage prints an owner's message body as a base64 BoC and,
// with the contract's address, as a ton://transfer link carrying it.
func printOwnerMessage(w io.Writer, body *cell.Cell, root *address.Address) {
	boc := body.ToBOC()
	fmt.Fprintf(w, "body (BoC, base64): %s\n", base64.StdEncoding.EncodeToString(boc))
	if root == nil {
		fmt.Fprintln(w, "send it from the root contract's owner wallet to the root contract with 0.05 TON")
		return
	}
	fmt.Fprintf(w, "send it from the owner wallet to %s with 0.05 TON, or open:\n", root.String())
	fmt.Fprintf(w, "ton://transfer/%s?amount=%d&bin=%s\n", root.String(), ownerMessageValue, base64.RawURLEncoding.EncodeToString(boc))
}
