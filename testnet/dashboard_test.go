package testnet_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/internal/headless"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestDashboard opens the client's and the proxy's web dashboards in
// headless Chromium after a request went through, and checks that they
// show what the nodes see: the worker, its model and its price. The
// screenshots go to $COCOON_ARTIFACTS when it is set.
func TestDashboard(t *testing.T) {
	b, dir := browser(t)
	h := testnet.New(t)
	w := h.AddWorker(func(c *config.Config) {
		c.Worker.Price = payments.Price{Prompt: 123_000_000, Completion: 456_000_000}
	})
	price := group(123_000_000 + 456_000_000) // prompt plus completion
	p := h.AddProxy()
	c := h.AddClient()

	api := sdk(c)
	if _, err := api.Chat.Completions.New(t.Context(), chatParams("sim-small", "show me the dashboard", 5)); err != nil {
		t.Fatal(err)
	}
	// The proxy has the worker's offer from gossip, and counts the request.
	waitStatus(t, p, func(s admin.Status) bool {
		offered := slices.ContainsFunc(s.Offers, func(o admin.OfferStatus) bool { return o.Peer == w.ID().String() && o.Price == 579_000_000 })
		served := slices.ContainsFunc(s.Workers, func(ws admin.WorkerStatus) bool { return ws.Peer == w.ID().String() && ws.Served == 1 })
		return offered && served
	})

	// A client keeps no offer book: it knows its proxy, and the models from
	// the proxy's catalog.
	// The client lists the request it sent: the worker that answered, its
	// outcome.
	checkDashboard(t, b, dir, "client", c, c.ID().String(), p.ID().String(), "sim-small", `class="edge up"`,
		`class="nowrap request ok"`, `title="`+w.ID().String()+`"`)
	checkDashboard(t, b, dir, "proxy", p, p.ID().String(), w.ID().String(), "sim-small", price, `class="edge up"`)
}

// TestDashboardPayments: with payments on, the client's dashboard shows
// what it spent and its channel to the proxy, and the proxy's what it
// earned, as their statuses say.
func TestDashboardPayments(t *testing.T) {
	b, dir := browser(t)
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	w := h.AddWorker()
	c := h.AddClient() // ready once its channel to the proxy is open
	api := sdk(c)
	var total int64
	for i := range 3 {
		resp, err := api.Chat.Completions.New(t.Context(), chatParams("sim-small", "pay for the dashboard", int64(3+i)))
		if err != nil {
			t.Fatal(err)
		}
		total += costOf(t, resp.RawJSON()).Total
	}
	waitStatus(t, c, func(s admin.Status) bool { return s.Payments != nil && s.Payments.Spent == total })
	waitStatus(t, p, func(s admin.Status) bool { return s.Payments != nil && s.Payments.Earned >= total })
	earned := p.Status(t.Context()).Payments.Earned

	// Each request is listed with its worker and cost, and the model's row
	// sums them: three requests, what they cost; the charts draw their
	// latency and the model's spending, up to that total.
	last := c.Status(t.Context()).Recent[0]
	checkDashboard(t, b, dir, "client-payments", c, p.ID().String(), "payer", "open", group(total)+" nanoTON", `class="series s1"`,
		`class="nowrap request ok"`, `title="`+w.ID().String()+`"`, "<td class=\"num\">3</td>", "<td class=\"num\">"+group(last.CostNanoton)+"</td>",
		"<td class=\"num\">"+group(total)+"</td>", "first token ms", "sim-small nanoTON "+group(total))
	// The proxy's map draws its client, the payer of a channel it is paid on.
	checkDashboard(t, b, dir, "proxy-payments", p, c.ID().String(), "payee", "open", group(earned)+" nanoTON", `class="series s0"`,
		"<title>client "+c.ID().String()+"</title>")
}

// browser is a headless Chromium, and where its screenshots go:
// $COCOON_ARTIFACTS if set, else a temporary dir. It skips the test when
// there is no Chromium.
func browser(t *testing.T) (headless.Browser, string) {
	t.Helper()
	bin := headless.Find()
	if bin == "" {
		t.Skip("no chromium binary on PATH (apt-get install chromium): the web dashboard is not checked")
	}
	dir := os.Getenv("COCOON_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return headless.Browser{Bin: bin}, dir
}

// checkDashboard loads nd's dashboard, checks that it shows every one of
// want once its scripts ran, and keeps a screenshot of it as
// dashboard-<name>.png in dir.
func checkDashboard(t *testing.T, b headless.Browser, dir, name string, nd *node.Node, want ...string) {
	t.Helper()
	url := admin.Endpoint{URL: nd.AdminURL(), Token: nd.AdminToken()}.LoginURL() // logs in, then shows /
	dom, err := b.DOM(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	bad := false
	for _, s := range want {
		if !strings.Contains(dom, s) {
			t.Errorf("the %s dashboard lacks %q", name, s)
			bad = true
		}
	}
	if strings.Contains(dom, "not answering") {
		t.Errorf("the %s dashboard says the node is not answering", name)
		bad = true
	}
	if bad {
		t.Logf("rendered page:\n%s", dom)
	}
	shot := filepath.Join(dir, "dashboard-"+name+".png")
	if err := b.Screenshot(t.Context(), url, shot, 1280, 900); err != nil {
		t.Fatal(err)
	}
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG", shot)
	}
	t.Logf("screenshot of the %s dashboard: %s (%d bytes)", name, shot, len(png))
}

// group writes n with its digits in threes, as the dashboard does.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// waitStatus waits until nd's status satisfies ok.
func waitStatus(t *testing.T, nd *node.Node, ok func(admin.Status) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s := nd.Status(ctx)
		if ok(s) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s's status never got there; last: %+v", nd.ID(), s)
		case <-tick.C:
		}
	}
}
