package node

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/cocoon-mesh/cocoon/inference"
)

// web is the dashboard: plain HTML, CSS and JavaScript that poll /status.
//
//go:embed web
var web embed.FS

// dashboardCSP keeps the dashboard to its own files: offers carry text
// from other peers, and nothing on the page may load or run anything else.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// handleDashboard serves the web dashboard on mux: GET / and its files
// under /ui/, and GET /models, the models the network serves as the node
// sees them, which the dashboard shows beside /status.
func (n *Node) handleDashboard(mux *http.ServeMux) {
	root, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(root)
	serve := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", dashboardCSP)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /{$}", serve)
	mux.HandleFunc("GET /ui/", serve)
	mux.HandleFunc("GET /models", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		c := n.catalog(ctx)
		if c == nil {
			c = &inference.Catalog{}
		}
		if c.Models == nil {
			c.Models = []inference.Model{}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(c)
	})
}

// catalog is what the node knows of the models served: a proxy's from its
// workers, a worker's from its engine, a client's from a proxy. Nil if
// none answers.
func (n *Node) catalog(ctx context.Context) *inference.Catalog {
	var c *inference.Catalog
	var err error
	switch {
	case n.router != nil:
		c = n.router.Catalog()
	case n.worker != nil:
		c, err = n.worker.Catalog(ctx)
	case n.up != nil:
		c, err = n.up.Catalog(ctx)
	}
	if err != nil {
		n.log.Debug("dashboard: no catalog", "err", err)
		return nil
	}
	return c
}

// guardAdmin lets through only what a local operator sends: requests
// addressed to a loopback name (see loopbackOnly), and no state-changing
// request from another web site's page (http.CrossOriginProtection).
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
