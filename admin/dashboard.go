package admin

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
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

// dashboardRoutes serves the web dashboard on mux: GET / and its files
// under /ui/, and GET /models, the models the network serves as the node
// sees them, which the dashboard shows beside /status.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {
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
		c := s.catalog(ctx)
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
func (s *Server) catalog(ctx context.Context) *inference.Catalog {
	c, err := s.role.catalog(ctx)
	if err != nil {
		s.log.Debug("dashboard: no catalog", "err", err)
		return nil
	}
	return c
}

func (w Worker) catalog(ctx context.Context) (*inference.Catalog, error) {
	return w.Engine.Catalog(ctx)
}

func (p Proxy) catalog(context.Context) (*inference.Catalog, error) {
	return p.Router.Catalog(), nil
}

func (c Client) catalog(ctx context.Context) (*inference.Catalog, error) {
	return c.Upstream.Catalog(ctx)
}
