package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cocoon-mesh/cocoon/internal/metrics"
)

// AddrFile is the file in the data dir where a running node writes its
// admin API's URL, so that `cocoon status` finds it; TokenFile beside it
// holds the token the API wants. Both go away when the node stops.
const AddrFile = "admin.url"

// Config is where the admin API listens and what it says of the node.
type Config struct {
	// Addr is the loopback host:port to listen on (admin.addr); "" serves
	// nothing, though Status and Doctor still answer.
	Addr string
	// DataDir is the node's data directory, where AddrFile and TokenFile go.
	DataDir string
	// Network is the network's name, as the status shows it.
	Network string
}

// Server is a node's admin API: GET /status (JSON Status), GET /doctor
// (JSON checks), GET /metrics (Prometheus), the payment channels under
// /channels, POST /reload and /drain, and the web dashboard at GET / with
// GET /models beside it. Every route wants the per-run token (see
// requireToken).
type Server struct {
	cfg      Config
	node     Node
	att      Attestation
	role     Role
	root     string    // the root contract's address; with registry
	registry Registry  // nil without a root contract
	dht      DHT       // nil without a DHT
	pay      *Payments // nil without payments
	control  Control   // nil: no reload or drain
	requests *metrics.Requests
	log      *slog.Logger
	handler  http.Handler
	token    string // this run's token, in TokenFile while it serves

	srv *http.Server // nil until Start listens
	url string
	wg  sync.WaitGroup
}

// New prepares the admin API of a node playing role; it starts nothing.
// Its /metrics serves requests beside the status.
func New(cfg Config, node Node, att Attestation, role Role, requests *metrics.Requests, log *slog.Logger, opts ...Option) *Server {
	s := &Server{cfg: cfg, node: node, att: att, role: role, requests: requests, log: log.With("component", "admin"), token: newToken()}
	for _, o := range opts {
		o(s)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(statusCollector{s}, requests)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeIndented(w, s.Status(r.Context()))
	})
	mux.HandleFunc("GET /doctor", func(w http.ResponseWriter, r *http.Request) {
		writeIndented(w, s.Doctor(r.Context()))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.paymentRoutes(mux)
	s.controlRoutes(mux)
	s.dashboardRoutes(mux)
	s.handler = guardAdmin(requireToken(s.token, mux))
	return s
}

// writeIndented answers v as indented JSON.
func writeIndented(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Handler is the admin API, guarded as Start serves it.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on the configured address, writes the API's token to
// TokenFile and then its URL to AddrFile in the data dir (mode 0600), and
// serves until Close. Without an address it does nothing.
func (s *Server) Start(ctx context.Context) error {
	if s.cfg.Addr == "" {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin.addr: %w", err)
	}
	url := "http://" + ln.Addr().String()
	if err := s.writeEndpoint(url); err != nil {
		ln.Close()
		return err
	}
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	s.url = url
	s.wg.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin API stopped", "err", err)
		}
	})
	return nil
}

// URL is where the admin API is served ("" if it is not).
func (s *Server) URL() string { return s.url }

// DashboardURL is the address a person opens in a browser to see the web
// dashboard, with the token that lets the browser in ("" if the API is not
// served), so every place that prints it shows the same link.
func (s *Server) DashboardURL() string {
	if s.url == "" {
		return ""
	}
	return s.Endpoint().LoginURL()
}

// Close removes the URL and token files Start wrote (each only if it still
// holds what this run wrote), stops serving, giving requests in flight 5 s
// to finish, and waits for the server to stop. It does nothing if Start
// did not listen.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	err := s.removeEndpoint()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("removing the admin URL and token: %w", err)
	}
	return nil
}

// guardAdmin lets through only what a local operator sends: requests
// addressed to a loopback name (see loopbackOnly), and no state-changing
// request from another web site's page (http.CrossOriginProtection). The
// Server puts requireToken behind it.
func guardAdmin(h http.Handler) http.Handler {
	return loopbackOnly(http.NewCrossOriginProtection().Handler(h))
}

// loopbackOnly refuses requests whose Host header is not a loopback
// address or localhost: the admin API listens on loopback only, and a
// web page that rebinds its own name to 127.0.0.1 must not read it.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = strings.Trim(r.Host, "[]")
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, "the admin API answers only to a loopback address or localhost", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
