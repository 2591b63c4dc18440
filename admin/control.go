package admin

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Control changes a running node: the settings it can take without a
// restart, and a worker's drain. *node.Node implements it.
type Control interface {
	// Reload reads the node's configuration again (file, flags,
	// environment) and applies what can change while it runs; it says
	// what it changed, and which changed settings need a restart.
	Reload(ctx context.Context) (Reloaded, error)
	// Drain stops a worker taking new requests, withdraws its offer,
	// waits for the requests in flight and settles its channels,
	// reporting each step to progress. Other roles refuse.
	Drain(ctx context.Context, progress func(string)) error
}

// Reloaded is what a reload did.
type Reloaded struct {
	// Applied are the settings changed while the node runs.
	Applied []string `json:"applied"`
	// NeedRestart are changed settings the node takes only at start.
	NeedRestart []string `json:"need_restart,omitempty"`
}

// WithControl gives the node's controls.
func WithControl(c Control) Option { return func(s *Server) { s.control = c } }

// controlRoutes serves the node's controls on the admin API:
//
//	POST /reload  read the configuration again and apply it (as SIGHUP does)
//	POST /drain   drain a worker; the answer streams its progress, a line per step,
//	              and ends with "drained" or "error: ..."
func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		if s.control == nil {
			adminError(w, http.StatusNotFound, "this node cannot reload its configuration")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		res, err := s.control.Reload(ctx)
		if err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeIndented(w, res)
	})
	mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) {
		if s.control == nil {
			adminError(w, http.StatusNotFound, "this node cannot drain")
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fl, _ := w.(http.Flusher)
		line := func(msg string) {
			fmt.Fprintln(w, msg)
			if fl != nil {
				fl.Flush()
			}
		}
		if err := s.control.Drain(r.Context(), line); err != nil {
			line("error: " + err.Error())
			return
		}
		line("drained")
	})
}
