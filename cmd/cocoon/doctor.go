package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cocoon-mesh/cocoon/admin"
)

// errDoctorFailed is returned when a check fails, so that scripts can tell.
var errDoctorFailed = errors.New("doctor: some checks failed")

// runDoctor asks a running node to check itself (attestation, root
// contract, DHT, engine, proxies or workers, selection, price, payments)
// and prints each check with its fix.
func runDoctor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addAdminFlags(fs, getenv, "print the raw JSON checks")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	ep, err := target.endpoint()
	if err != nil {
		return fmt.Errorf("%w (doctor checks a running node: start it first)", err)
	}
	asJSON := target.json
	body, err := askAdmin(ctx, ep, http.MethodGet, "/doctor", time.Minute)
	if err != nil {
		return err
	}
	var checks []admin.Check
	if err := json.Unmarshal(body, &checks); err != nil {
		return fmt.Errorf("the node at %s sent checks this cocoon cannot read: %w", ep.URL, err)
	}
	if *asJSON {
		stdout.Write(body)
	} else {
		printChecks(stdout, checks)
	}
	for _, c := range checks {
		if c.Result == admin.Fail {
			return errDoctorFailed
		}
	}
	return nil
}

func printChecks(w io.Writer, checks []admin.Check) {
	counts := map[string]int{}
	for _, c := range checks {
		counts[c.Result]++
		fmt.Fprintf(w, "%-4s  %-26s %s\n", strings.ToUpper(c.Result), c.Name, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(w, "      %-26s fix: %s\n", "", c.Fix)
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d warnings, %d failed\n", counts[admin.Pass], counts[admin.Warn], counts[admin.Fail])
}
