package node

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// TestEngineWarmUp: a worker whose engine is not up yet starts anyway,
// says it waits, and says when the engine answers, with its models.
func TestEngineWarmUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there until the engine "finishes loading"

	cfg := config.Default(config.RoleWorker)
	cfg.DataDir = t.TempDir()
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Admin.Addr = ""
	cfg.Worker.Backend = "openai"
	cfg.Worker.OpenAI.URL = "http://" + addr + "/v1"
	var logs logtest.Buffer
	n, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if !strings.Contains(logs.String(), "engine not answering yet") {
		t.Fatalf("no word of the engine at start:\n%s", logs.String())
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"object":"list","data":[{"id":"warm-model","object":"model"}]}`))
	})
	eln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(eln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	text, err := logs.WaitFor(ctx, func(text string) bool { return strings.Contains(text, "engine ready") })
	if err != nil {
		t.Fatalf("no \"engine ready\" within 15 s:\n%s", text)
	}
	if !strings.Contains(logs.String(), "models=warm-model") {
		t.Errorf("the ready line does not name the model:\n%s", logs.String())
	}
}
