package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/cocoon-mesh/cocoon/admin"
)

// runChannel handles `cocoon channel list|open|close`: a running node's
// payment channels, through its admin API.
func runChannel(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const use = "usage: cocoon channel list|open|close|finish [--peer ID] [--data-dir DIR | --admin URL] [--json]"
	if len(args) == 0 || (args[0] != "list" && args[0] != "open" && args[0] != "close" && args[0] != "finish") {
		return usageError{use}
	}
	sub := args[0]
	fs := flag.NewFlagSet("channel "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addAdminFlags(fs, getenv, "print the raw JSON")
	peerID := fs.String("peer", "", "open, close, finish: the other side of the channel (close: cooperative when this node pays it, an uncooperative close with its newest state when it pays this node)")
	uncoop := fs.Bool("uncooperative", false, "close: start an uncooperative close even when this node pays the peer (it is gone); finish it after the quarantine with `channel finish`")
	if err := parseNoArgs(fs, args[1:]); err != nil {
		return err
	}
	if sub != "list" && *peerID == "" {
		return usageError{"channel " + sub + ": --peer is required"}
	}
	ep, err := target.endpoint()
	if err != nil {
		return err
	}
	asJSON := target.json
	method, path, wait := http.MethodGet, "/channels", 10*time.Second
	if sub != "list" {
		method, path, wait = http.MethodPost, "/channels/"+sub+"?peer="+url.QueryEscape(*peerID), 3*time.Minute
		if *uncoop {
			path += "&uncooperative=1"
		}
		verb := map[string]string{"open": "opening a channel to", "close": "closing the channel with",
			"finish": "finishing the close of the channel with"}[sub]
		fmt.Fprintf(stderr, "%s %s: waiting for the chain (up to 2 minutes)...\n", verb, *peerID)
	}
	body, err := askAdmin(ctx, ep, method, path, wait)
	if err != nil {
		return fmt.Errorf("channel %s: %w", sub, err)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var ps admin.PaymentsStatus
	if err := json.Unmarshal(body, &ps); err != nil {
		return fmt.Errorf("the node at %s sent channels this cocoon cannot read: %w", ep.URL, err)
	}
	printChannels(stdout, &ps)
	return nil
}

// printChannels prints a node's channels as a table, amounts in nanoTON.
func printChannels(w io.Writer, ps *admin.PaymentsStatus) {
	fmt.Fprintf(w, "spent %d nanoTON, earned %d nanoTON (%d settled on chain), %d in flight, %d reserved for answers in flight",
		ps.Spent, ps.Earned, ps.Settled, ps.InFlight, ps.Reserved)
	if ps.Withdrawable != nil {
		fmt.Fprintf(w, "; wallet %d nanoTON", *ps.Withdrawable)
	}
	fmt.Fprintln(w)
	if len(ps.Channels) == 0 {
		fmt.Fprintln(w, "no payment channels")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "side\tpeer\tchannel\tstate\tdeposit\tsent\treceived\tunsigned\treserved\tseqno")
	for _, c := range ps.Channels {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", c.Role, c.Peer, c.Address, c.State, c.Deposit, c.Sent,
			c.Received, c.Unsigned, c.Reserved, c.Seqno)
	}
}
