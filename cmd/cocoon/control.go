package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cocoon-mesh/cocoon/admin"
)

// runReload handles `cocoon reload`: a running node reads its
// configuration again and applies what it can without a restart, as on
// SIGHUP.
func runReload(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addAdminFlags(fs, getenv, "print the raw JSON answer")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	ep, err := target.endpoint()
	if err != nil {
		return err
	}
	body, err := askAdmin(ctx, ep, http.MethodPost, "/reload", 40*time.Second)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if *target.json {
		_, err := stdout.Write(body)
		return err
	}
	var res admin.Reloaded
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("reload: the node sent an answer this cocoon cannot read: %w", err)
	}
	printReloaded(stdout, res)
	return nil
}

func printReloaded(w io.Writer, res admin.Reloaded) {
	if len(res.Applied) == 0 {
		fmt.Fprintln(w, "nothing to apply: the live settings are unchanged")
	} else {
		fmt.Fprintf(w, "applied: %s\n", strings.Join(res.Applied, ", "))
	}
	if len(res.NeedRestart) > 0 {
		fmt.Fprintf(w, "changed, applied only at the next start: %s\n", strings.Join(res.NeedRestart, ", "))
	}
}

// runDrain handles `cocoon worker drain`: the running worker takes no new
// request, finishes those in flight, withdraws its offer and settles its
// channels, printing each step.
func runDrain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addAdminFlags(fs, getenv, "unused")
	wait := fs.Duration("timeout", 35*time.Minute, "how long to wait for the requests in flight and the channels' closes")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	ep, err := target.endpoint()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	resp, err := openAdmin(ctx, ep, http.MethodPost, "/drain")
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	last := ""
	for sc.Scan() {
		last = sc.Text()
		if msg, ok := strings.CutPrefix(last, "error: "); ok {
			return fmt.Errorf("drain: %s", msg)
		}
		fmt.Fprintln(stdout, last)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if last != "drained" {
		return fmt.Errorf("drain: the node stopped answering before it was drained")
	}
	return nil
}
