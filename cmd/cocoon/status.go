package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cocoon-mesh/cocoon/admin"
)

// runStatus asks a running node what it sees, through its admin API.
func runStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addAdminFlags(fs, getenv, "print the raw JSON status")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	ep, err := target.endpoint()
	if err != nil {
		return err
	}
	url := ep.URL
	asJSON := target.json
	body, err := askAdmin(ctx, ep, http.MethodGet, "/status", 10*time.Second)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var s admin.Status
	if err := json.Unmarshal(body, &s); err != nil {
		return fmt.Errorf("the node at %s sent a status this cocoon cannot read: %w", url, err)
	}
	printStatus(stdout, &s)
	return nil
}

// adminTarget is the flags that find a running node's admin API.
type adminTarget struct {
	dataDir, admin, tokenFile *string
	json                      *bool
	home                      string
	envToken                  string // COCOON_ADMIN_TOKEN
}

// addAdminFlags adds --data-dir, --admin, --token-file and --json
// (described by jsonHelp) to fs.
func addAdminFlags(fs *flag.FlagSet, getenv func(string) string, jsonHelp string) *adminTarget {
	return &adminTarget{
		dataDir:   fs.String("data-dir", getenv("COCOON_DATA_DIR"), "the node's data directory (default: the first of ~/.cocoon/worker, proxy and client with a running node)"),
		admin:     fs.String("admin", "", "the node's admin API URL, instead of finding it in the data dir (its token: --token-file, COCOON_ADMIN_TOKEN or "+admin.TokenFile+" in --data-dir)"),
		tokenFile: fs.String("token-file", "", "the admin API's token file (default: "+admin.TokenFile+" beside "+admin.AddrFile+" in the data dir)"),
		json:      fs.Bool("json", false, jsonHelp),
		home:      getenv("HOME"),
		envToken:  getenv("COCOON_ADMIN_TOKEN"),
	}
}

// endpoint is the node's admin URL and token: the URL from --admin, or
// the one the node wrote into its data dir; the token from --token-file,
// else COCOON_ADMIN_TOKEN, else the node's data dir.
func (a *adminTarget) endpoint() (admin.Endpoint, error) {
	var ep admin.Endpoint
	switch {
	case *a.admin != "" && *a.tokenFile == "" && a.envToken == "" && *a.dataDir != "":
		tok, err := admin.ReadToken(filepath.Join(*a.dataDir, admin.TokenFile))
		if err != nil {
			return ep, err
		}
		ep = admin.Endpoint{URL: *a.admin, Token: tok}
	case *a.admin != "":
		ep.URL = *a.admin
	default:
		var err error
		if ep, err = findAdmin(*a.dataDir, a.home); err != nil {
			return ep, err
		}
	}
	switch {
	case *a.tokenFile != "":
		tok, err := admin.ReadToken(*a.tokenFile)
		if err != nil {
			return ep, err
		}
		ep.Token = tok
	case a.envToken != "":
		ep.Token = strings.TrimSpace(a.envToken)
	}
	return ep, nil
}

// parseNoArgs parses args into fs and refuses positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// askAdmin sends method path to a node's admin API at ep, with its token,
// waiting at most wait, and returns the body of a 200 answer. Another
// answer is an error with the node's own {"error": ...} message when it
// sent one.
func askAdmin(ctx context.Context, ep admin.Endpoint, method, path string, wait time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	resp, err := openAdmin(ctx, ep, method, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

// openAdmin sends method path to a node's admin API and returns a 200
// answer, its body unread; another answer is an error with the node's own
// {"error": ...} message when it sent one.
func openAdmin(ctx context.Context, ep admin.Endpoint, method, path string) (*http.Response, error) {
	req, err := ep.NewRequest(ctx, method, path)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the node at %s (is it running?): %w", ep.URL, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && ep.Token == "" {
		return nil, fmt.Errorf("the node at %s wants its admin token: pass --data-dir (it holds %s) or --token-file, or set COCOON_ADMIN_TOKEN", ep.URL, admin.TokenFile)
	}
	var e struct {
		Error string `json:"error"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return nil, errors.New(e.Error)
	}
	return nil, fmt.Errorf("the node at %s answered %s", ep.URL, resp.Status)
}

// findAdmin reads the admin URL and token a running node wrote into its
// data dir.
func findAdmin(dataDir, home string) (admin.Endpoint, error) {
	dirs := []string{dataDir}
	if dataDir == "" {
		if home == "" {
			return admin.Endpoint{}, errors.New("no --data-dir given and HOME is empty")
		}
		for _, role := range []string{"worker", "proxy", "client"} {
			dirs = append(dirs, filepath.Join(home, ".cocoon", role))
		}
		dirs = dirs[1:]
	}
	for _, d := range dirs {
		ep, err := admin.ReadEndpoint(d)
		if err == nil {
			return ep, nil
		}
		if !errors.Is(err, os.ErrNotExist) || fileExists(filepath.Join(d, admin.AddrFile)) {
			return ep, fmt.Errorf("the node in %s: %w", d, err)
		}
	}
	return admin.Endpoint{}, fmt.Errorf("no running node found: no %s in %s (start one, or pass --data-dir or --admin)", admin.AddrFile, strings.Join(dirs, ", "))
}

func printStatus(w io.Writer, s *admin.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "%s %s on network %q\tready: %t\ttier: %s\n", s.Role, s.Peer, s.Network, s.Ready, orDash(s.Tier))
	for _, a := range s.Addrs {
		fmt.Fprintf(tw, "  listening on %s\n", a)
	}
	if s.APIAddr != "" {
		fmt.Fprintf(tw, "  OpenAI API on http://%s/v1\n", s.APIAddr)
	}
	if e := s.Evidence; e != nil {
		valid := "valid until"
		if !e.Valid {
			valid = "expired at"
		}
		fmt.Fprintf(tw, "evidence %s %s\trenewal: %s", valid, e.Expiry.UTC().Format(time.RFC3339), e.Renewal)
		if e.Failures > 0 {
			fmt.Fprintf(tw, " (%d attempts, next at %s): %s", e.Failures, e.RetryAt.UTC().Format(time.RFC3339), e.LastError)
		}
		fmt.Fprintln(tw)
	}
	if r := s.Registry; r != nil {
		fmt.Fprintf(tw, "root contract %s\tseqno %d\t%d bootstrap proxies, %d measurements, %d models, dev attestation %t, max proxy fee %d ppm\n",
			r.Address, r.Seqno, r.Bootstrap, r.Measurements, r.Models, r.DevAttestation, r.ProxyFeePPM)
	}
	dht := "off"
	if s.DHT >= 0 {
		dht = fmt.Sprintf("%d servers in the routing table", s.DHT)
	}
	fmt.Fprintf(tw, "connected to %d peers\tDHT: %s\n", s.Connected, dht)
	if len(s.Kept) > 0 {
		fmt.Fprintln(tw, "\nkept peers\tup\tattested")
		for _, p := range s.Kept {
			fmt.Fprintf(tw, "  %s\t%t\t%s\n", p.Peer, p.Up, orDash(p.Attested))
		}
	}
	if len(s.Offers) > 0 {
		fmt.Fprintln(tw, "\noffers\trole\tmodels\tprice/M tokens\tload\ttier\tfee ppm\texpires")
		for _, o := range s.Offers {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d/%d\t%s\t%d\t%s\n", o.Peer, o.Role, strings.Join(o.Models, ","), o.Price,
				o.Load, o.Capacity, orDash(o.Tier), o.FeePPM, o.Expires)
		}
	}
	if len(s.Workers) > 0 {
		fmt.Fprintln(tw, "\nworkers routed to\tup\tmodels\tactive\tserved\tfailures\tttft ms\tsuccess")
		for _, x := range s.Workers {
			fmt.Fprintf(tw, "  %s\t%t\t%s\t%d/%d\t%d\t%d\t%.1f\t%.2f\n", x.Peer, x.Up, strings.Join(x.Models, ","), x.Active,
				x.Capacity, x.Served, x.Failures, x.TTFTms, x.Success)
		}
	}
	if sv := s.Serving; sv != nil {
		fmt.Fprintf(tw, "\nserving: %d/%d active, %d answered, ttft %.1f ms, %.1f tokens/s\n", sv.Active, sv.Capacity, sv.Served,
			sv.TTFTms, sv.TokensPerSec)
	}
	if ps := s.Payments; ps != nil {
		tw.Flush()
		fmt.Fprint(w, "\npayments: ")
		printChannels(w, ps)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fileExists reports whether path names a file.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
