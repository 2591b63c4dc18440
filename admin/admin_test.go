package admin_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/payments/channels"
	"github.com/libp2p/go-libp2p/core/peer"
)

// get asks srv for path as the CLI does, from loopback with its token.
func get(t *testing.T, srv *admin.Server, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Host = "127.0.0.1:9100"
	req.Header.Set("Authorization", "Bearer "+srv.Token())
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	return rec
}

// TestServe starts the admin API on loopback: its token and URL go into
// the data dir for `cocoon status`, readable by the owner only, it
// answers there with the token until Close, and Close removes both files.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	f := newProxyFixture(t, admin.Config{Addr: "127.0.0.1:0", DataDir: dir, Network: "testnet"})
	if err := f.srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	url := f.srv.URL()
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("URL %q", url)
	}
	b, err := os.ReadFile(filepath.Join(dir, admin.AddrFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != url+"\n" {
		t.Errorf("%s holds %q, want %q", admin.AddrFile, b, url+"\n")
	}
	for _, name := range []string{admin.AddrFile, admin.TokenFile} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, want mode 0600", name, err)
		}
	}
	ep, err := admin.ReadEndpoint(dir)
	if err != nil || ep != f.srv.Endpoint() || len(ep.Token) != 64 {
		t.Fatalf("ReadEndpoint: %+v (%v), want %+v with a 64-digit token", ep, err, f.srv.Endpoint())
	}

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	do := func(path string) (*http.Response, error) {
		req, err := ep.NewRequest(t.Context(), "GET", path)
		if err != nil {
			t.Fatal(err)
		}
		return client.Do(req)
	}
	for _, c := range []struct {
		path   string
		status int
		typ    string
		body   string // the whole body, with $P and the like
	}{
		{"/status", 200, "application/json", proxyStatus + "\n"},
		{"/models", 200, "application/json", `{"models":[{"id":"m1","workers":1}]}` + "\n"},
		{"/ui/app.js", 200, "javascript", ""},
		{"/nothing", 404, "", ""},
	} {
		resp, err := do(c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(resp.Header.Get("Content-Type"), c.typ) {
			t.Errorf("GET %s: %d %q, want %d %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.status, c.typ)
		}
		if want := f.replace.Replace(c.body); c.body != "" && string(body) != want {
			t.Errorf("GET %s:\n%s\nwant:\n%s", c.path, body, want)
		}
	}
	resp, err := do("/doctor")
	if err != nil {
		t.Fatal(err)
	}
	var checks []admin.Check
	err = json.NewDecoder(resp.Body).Decode(&checks)
	resp.Body.Close()
	if err != nil || len(checks) != 5 || checks[0].Name != "attestation" || checks[4].Name != "payments" {
		t.Errorf("GET /doctor: %+v (%v)", checks, err)
	}

	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
	if _, err := do("/status"); err == nil {
		t.Error("the admin API answers after Close")
	}
	for _, name := range []string{admin.AddrFile, admin.TokenFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Close: %v, want none", name, err)
		}
	}
}

// TestServeOff: without an address the admin API serves nothing and
// writes no URL, but still reports the node's status.
func TestServeOff(t *testing.T) {
	dir := t.TempDir()
	f := newProxyFixture(t, admin.Config{DataDir: dir, Network: "testnet"})
	if err := f.srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer f.srv.Close()
	if f.srv.URL() != "" {
		t.Errorf("URL %q, want none", f.srv.URL())
	}
	if _, err := os.Stat(filepath.Join(dir, admin.AddrFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %v, want none", admin.AddrFile, err)
	}
	if s := f.srv.Status(t.Context()); s.Peer != f.p.String() {
		t.Errorf("status of peer %q, want %s", s.Peer, f.p)
	}
}

func TestServeAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	f := newProxyFixture(t, admin.Config{Addr: ln.Addr().String(), DataDir: dir, Network: "testnet"})
	err = f.srv.Start(t.Context())
	if err == nil || !strings.HasPrefix(err.Error(), "admin.addr: ") {
		t.Fatalf("Start on a busy address: %v, want an admin.addr error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, admin.AddrFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s written for an API that does not serve: %v", admin.AddrFile, err)
	}
	if err := f.srv.Close(); err != nil {
		t.Error(err)
	}
}

// TestMetrics: /metrics turns the status into gauges and counters, and
// leaves out channels that are closed.
func TestMetrics(t *testing.T) {
	f := newProxyFixture(t, admin.Config{Network: "testnet"})
	rec := get(t, f.srv, "GET", "/metrics")
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	lines := strings.Split(rec.Body.String(), "\n")
	for _, want := range []string{
		`cocoon_ready 1`,
		`cocoon_connected_peers 3`,
		`cocoon_dht_routing_table 4`,
		`cocoon_kept_peers{up="true"} 1`,
		`cocoon_kept_peers{up="false"} 1`,
		`cocoon_offers{role="worker"} 1`,
		`cocoon_offers{role="proxy"} 1`,
		`cocoon_registry_seqno 7`,
		`cocoon_proxy_worker_up{worker="$W1"} 1`,
		`cocoon_proxy_worker_up{worker="$W2"} 0`,
		`cocoon_proxy_worker_active{worker="$W1"} 2`,
		`cocoon_proxy_worker_requests_total{worker="$W1"} 5`,
		`cocoon_proxy_worker_failures_total{worker="$W1"} 1`,
		`cocoon_proxy_worker_ttft_seconds{worker="$W1"} 0.0015`,
		`cocoon_proxy_worker_success_ratio{worker="$W1"} 0.9`,
		`cocoon_payments_earned_nanoton 300`,
		`cocoon_payments_spent_nanoton 250`,
		`cocoon_channel_deposit_nanoton{channel="0:c1",peer="$C",side="payee"} 1000`,
		`cocoon_channel_signed_nanoton{channel="0:c1",peer="$C",side="payee"} 300`,
		`cocoon_channel_unsigned_nanoton{channel="0:c1",peer="$C",side="payee"} 5`,
		`cocoon_channel_signed_nanoton{channel="0:w1",peer="$W1",side="payer"} 200`,
	} {
		if want = f.replace.Replace(want); !slices.Contains(lines, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, not := range []string{`channel="0:w2"`, "cocoon_worker_active"} {
		if strings.Contains(rec.Body.String(), not) {
			t.Errorf("/metrics has %s", not)
		}
	}
}

func TestChannelRoutes(t *testing.T) {
	f := newProxyFixture(t, admin.Config{Network: "testnet"})
	ps := func(rec *httptest.ResponseRecorder) admin.PaymentsStatus {
		t.Helper()
		var ps admin.PaymentsStatus
		if err := json.Unmarshal(rec.Body.Bytes(), &ps); err != nil {
			t.Fatalf("%s: %v", rec.Body, err)
		}
		return ps
	}
	if rec := get(t, f.srv, "GET", "/channels"); rec.Code != 200 || ps(rec).Earned != 300 || len(ps(rec).Channels) != 3 {
		t.Errorf("GET /channels: %d %s", rec.Code, rec.Body)
	}
	x, w1 := f.x.String(), f.w1.String()
	for _, c := range []struct {
		path   string
		opErr  map[string]error
		status int
		ops    []string
		errMsg string
	}{
		{"/channels/open?peer=" + w1, nil, 200, []string{"open " + w1}, ""},
		// x is a proxy the node knows, not a worker it pays: a deposit sent to it would be lost.
		{"/channels/open?peer=" + x, nil, 403, nil, "it is not a peer this proxy pays"},
		// w2 is a worker the proxy would pay, but no handshake attested it.
		{"/channels/open?peer=" + f.w2.String(), nil, 403, nil, "it has not passed the attestation handshake"},
		{"/channels/close?peer=" + x, nil, 200, []string{"close " + x}, ""},
		// The node does not pay x: x pays it, and it closes with x's newest state.
		{"/channels/close?peer=" + x, map[string]error{"close": channels.ErrNoChannel}, 200, []string{"close " + x, "dispute " + x}, ""},
		{"/channels/close?peer=" + x + "&uncooperative=1", nil, 200, []string{"dispute " + x}, ""},
		{"/channels/finish?peer=" + x, nil, 200, []string{"finish " + x}, ""},
		{"/channels/finish?peer=" + x, map[string]error{"finish": errors.New("quarantine not over")}, 409, []string{"finish " + x}, "quarantine not over"},
		{"/channels/close?peer=" + x, map[string]error{"close": errors.New("peer unreachable")}, 409, []string{"close " + x}, "peer unreachable"},
		{"/channels/open?peer=nobody", nil, 400, nil, "peer: "},
		{"/channels/open", nil, 400, nil, "peer: "},
	} {
		f.channels.reset(c.opErr)
		rec := get(t, f.srv, "POST", c.path)
		if rec.Code != c.status || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("POST %s: %d %q, want %d", c.path, rec.Code, rec.Header().Get("Content-Type"), c.status)
		}
		if got := f.channels.done(); !slices.Equal(got, c.ops) {
			t.Errorf("POST %s: did %q, want %q", c.path, got, c.ops)
		}
		if c.status == 200 {
			if got := ps(rec); got.Spent != 250 {
				t.Errorf("POST %s: answered %+v, want the channels", c.path, got)
			}
			continue
		}
		var e map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e["error"], c.errMsg) {
			t.Errorf("POST %s: %s, want an error saying %q", c.path, rec.Body, c.errMsg)
		}
	}
}

// TestChannelRoutesOff: without payments, the channel routes say so.
func TestChannelRoutesOff(t *testing.T) {
	id, pub := testID(t, 1)
	srv := newServer(t, admin.Config{}, &fakeNode{id: id}, &fakeHandshaker{}, pub, admin.Client{Proxies: fakeKeeper{}, Upstream: fakeUpstream{}})
	other, _ := testID(t, 2)
	for _, r := range []struct{ method, path string }{
		{"GET", "/channels"},
		{"POST", "/channels/open?peer=" + other.String()},
		{"POST", "/channels/close?peer=" + other.String()},
		{"POST", "/channels/finish?peer=" + other.String()},
	} {
		rec := get(t, srv, r.method, r.path)
		want := `{"error":"payments are off on this node (payments.enabled)"}` + "\n"
		if rec.Code != 404 || rec.Body.String() != want {
			t.Errorf("%s %s: %d %s, want 404 %s", r.method, r.path, rec.Code, rec.Body, want)
		}
	}
}

// TestWorkerOpensNoChannel: a worker is paid and pays no one, so it opens
// no channel, even to an attested proxy it keeps.
func TestWorkerOpensNoChannel(t *testing.T) {
	id, pub := testID(t, 1)
	proxy, _ := testID(t, 2)
	hs := &fakeHandshaker{verdicts: map[peer.ID]attest.Verdict{proxy: {Tier: attest.TierDev}}}
	ch := &fakeChannels{}
	srv := newServer(t, admin.Config{}, &fakeNode{id: id}, hs, pub,
		admin.Worker{Engine: fakeEngine{}, Proxies: fakeKeeper{peers: []peer.ID{proxy}, up: []peer.ID{proxy}}, Offers: fakeBook{}},
		admin.WithPayments(admin.Payments{Channels: ch, Wallet: fakeWallet{addr: testAddress}}))
	rec := get(t, srv, "POST", "/channels/open?peer="+proxy.String())
	var e map[string]string
	if rec.Code != http.StatusForbidden || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e["error"], "this worker pays no one") {
		t.Errorf("a worker's channel open: %d %s, want 403 saying it pays no one", rec.Code, rec.Body)
	}
	if ops := ch.done(); len(ops) != 0 {
		t.Errorf("the refused open did %q", ops)
	}
}
