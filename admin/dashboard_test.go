package admin

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/internal/headless"
)

// dashboardServer serves the dashboard in front of a /status that
// answers what status returns, as the admin API does. Its node knows no
// model.
func dashboardServer(t *testing.T, status func() Status) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	(&Server{role: Proxy{Router: noModels{}}}).dashboardRoutes(mux)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(status())
	})
	srv := httptest.NewServer(guardAdmin(mux))
	t.Cleanup(srv.Close)
	return srv
}

// noModels is a proxy's router that knows no worker.
type noModels struct{}

func (noModels) Workers() []router.WorkerStats { return nil }
func (noModels) Catalog() *inference.Catalog   { return nil }

func TestDashboardFiles(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the server's cleanup closes it
	srv := dashboardServer(t, func() Status { return Status{Role: "client"} })
	for _, c := range []struct {
		method, path, host string
		header             http.Header
		status             int
		typ, body          string
	}{
		{"GET", "/", "", nil, 200, "text/html", `<script src="ui/app.js">`},
		{"GET", "/ui/app.js", "", nil, 200, "javascript", "function poll()"},
		{"GET", "/ui/style.css", "", nil, 200, "text/css", ".card"},
		{"GET", "/models", "", nil, 200, "application/json", `{"models":[]}`},
		{"GET", "/ui/missing.js", "", nil, 404, "", ""},
		{"GET", "/", "localhost:80", nil, 200, "text/html", ""},
		{"GET", "/", "[::1]:80", nil, 200, "text/html", ""},
		{"GET", "/", "evil.example:80", nil, 403, "", ""}, // a page that rebound its name to 127.0.0.1
		{"GET", "/status", "evil.example", nil, 403, "", ""},
		// A page on another site may not change anything; the CLI, which sends neither header, may.
		{"POST", "/status", "", http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403, "", ""},
		{"POST", "/status", "", http.Header{"Origin": {"http://evil.example"}}, 403, "", ""},
		{"POST", "/status", "", nil, 405, "", ""},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		if c.host != "" {
			req.Host = c.host
		}
		maps.Copy(req.Header, c.header)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s (Host %q, %v): %d, want %d", c.method, c.path, c.host, c.header, resp.StatusCode, c.status)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, c.typ) {
			t.Errorf("GET %s: Content-Type %q, want %s", c.path, ct, c.typ)
		}
		if !strings.Contains(string(body), c.body) {
			t.Errorf("GET %s: body lacks %q", c.path, c.body)
		}
		if c.status == 200 && c.path != "/models" && resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no Content-Security-Policy", c.path)
		}
	}
}

// TestDashboardRenders runs the dashboard in headless Chromium against
// made-up statuses: a proxy with payment channels and an offer whose model
// name is markup, and a client without payments.
func TestDashboardRenders(t *testing.T) {
	bin := headless.Find()
	if bin == "" {
		t.Skip("no chromium binary on PATH (apt-get install chromium): the dashboard's rendering is not checked")
	}
	t.Cleanup(func() { goleak.VerifyNone(t) })
	const (
		workerID = "12D3KooWWorkerPeerIdForTheDashboardTest111111111"
		payee    = "12D3KooWPayeePeerIdForTheDashboardTest1111111111"
		address  = "0:5f0a4e8cbd1f7c36a1d0a4b1c2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f"
	)
	var polls atomic.Int64
	proxy := func() Status {
		n := polls.Add(1)
		return Status{
			Role: "proxy", Network: "local", Peer: "12D3KooWProxyPeerIdForTheDashboardTest11111111", Ready: true, Tier: "dev", DHT: 1,
			Offers: []OfferStatus{{Peer: workerID, Role: "worker", Models: []string{"sim-small", "<b>bold</b>"}, Price: 1500000,
				Load: 1, Capacity: 64, Tier: "dev", Expires: time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}},
			Workers: []WorkerStatus{{Peer: workerID, Up: true, Models: []string{"sim-small"}, Active: 3, Capacity: 64, Served: 12, Success: 1}},
			Payments: &PaymentsStatus{Earned: 1000 * n, Spent: 0, Channels: []ChannelStatus{{
				Peer: payee, Address: address, Role: "payee", Deposit: 5_000_000_000, Received: 1234567, Seqno: 42, State: "open"}}},
		}
	}
	client := func() Status {
		return Status{Role: "client", Network: "local", Peer: "12D3KooWClientPeerIdForTheDashboardTest1111111", DHT: -1,
			Kept: []KeptPeer{{Peer: "12D3KooWProxyPeerIdForTheDashboardTest11111111", Up: true, Attested: "dev"}}}
	}
	worker := func() Status {
		return Status{Role: "worker", Network: "local", Peer: workerID, Ready: true, Tier: "tee-gpu", DHT: 2,
			Kept:    []KeptPeer{{Peer: "12D3KooWProxyPeerIdForTheDashboardTest11111111", Up: false}},
			Serving: &ServingStatus{Active: 2, Capacity: 8, Served: 5, TTFTms: 41.5, TokensPerSec: 33.3}}
	}
	b := headless.Browser{Bin: bin}
	for _, c := range []struct {
		name      string
		status    func() Status
		want, not []string
	}{
		{"proxy", proxy,
			[]string{workerID, "sim-small", "1,500,000", "1 / 64", "3 / 64", "1,234,567", address, "payee", "open #42",
				"&lt;b&gt;bold&lt;/b&gt;", `class="edge up"`, `class="series s0"`},
			[]string{"<b>bold</b>", "no payment channels", "not answering"}},
		{"client", client,
			[]string{"12D3KooWClientPeerIdForTheDashboardTest1111111", "no payment channels", "A client keeps no offer book", `class="edge up"`},
			[]string{"nanoTON (", "not answering"}},
		{"worker", worker,
			[]string{workerID, "tee-gpu", "2 / 8", "42 ms", "33.3 tokens/s", "in flight 2", `class="edge down"`, "no payment channels"},
			[]string{`class="edge up"`, "not answering"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := dashboardServer(t, c.status)
			dom, err := b.DOM(t.Context(), srv.URL+"/")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.want {
				if !strings.Contains(dom, s) {
					t.Errorf("the rendered page lacks %q", s)
				}
			}
			for _, s := range c.not {
				if strings.Contains(dom, s) {
					t.Errorf("the rendered page has %q", s)
				}
			}
			if t.Failed() {
				t.Logf("rendered page:\n%s", dom)
			}
			if dir := os.Getenv("COCOON_ARTIFACTS"); dir != "" {
				shot := filepath.Join(dir, "dashboard-sample-"+c.name+".png")
				if err := b.Screenshot(t.Context(), srv.URL+"/", shot, 1280, 900); err != nil {
					t.Fatal(err)
				}
				t.Logf("screenshot: %s", shot)
			}
		})
	}
	if n := polls.Load(); n < 2 {
		t.Errorf("the proxy's page asked for /status %d times in 5 s of virtual time, want it to poll every 2 s", n)
	}
}
