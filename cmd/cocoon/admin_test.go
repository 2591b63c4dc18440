package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/admin"
)

// TestAdminToken runs the worker command as an operator would and calls
// its admin API as another local process would: without the token, or
// with a wrong one, every route (the metrics and the dashboard too)
// answers 401; `cocoon status` finds the token in the data dir; a browser
// logs in to the dashboard with /?token=; and once the node stops neither
// admin.url nor admin.token remains for a stale reader.
func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"worker", "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0"},
			env(nil), io.Discard, io.Discard)
	}()
	var ep admin.Endpoint
	deadline := time.After(30 * time.Second)
	for {
		var err error
		if ep, err = admin.ReadEndpoint(dir); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("worker exited: %v", err)
		case <-deadline:
			t.Fatalf("no admin endpoint in the data dir: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	st, err := os.Stat(filepath.Join(dir, admin.TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 || len(ep.Token) != 64 {
		t.Fatalf("%s: %v (%v), token %q: want mode 0600 and 64 hex digits", admin.TokenFile, st, err, ep.Token)
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	ask := func(method, path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, ep.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/status", "/doctor", "/metrics", "/", "/models", "/channels"} {
		for _, auth := range []string{"", "Bearer " + strings.Repeat("0", 64)} {
			code, body := ask("GET", path, auth)
			var e map[string]string
			if code != http.StatusUnauthorized || json.Unmarshal([]byte(body), &e) != nil || e["error"] == "" {
				t.Errorf("GET %s with Authorization %q: %d %s, want 401 with a JSON error", path, auth, code, body)
			}
		}
	}
	if code, body := ask("POST", "/channels/close?peer=12D3KooWHFd1gyNYFqxt7ke9FY2VoVVWY2XSPhvL9vg2pB6wQGfa&uncooperative=1", ""); code != http.StatusUnauthorized {
		t.Errorf("POST /channels/close without the token: %d %s, want 401", code, body)
	}
	if code, body := ask("GET", "/metrics", "Bearer "+ep.Token); code != 200 || !strings.Contains(body, "cocoon_ready") {
		t.Errorf("GET /metrics with the token: %d", code)
	}

	// The CLI reads the token beside the URL; given only the URL, it says what it lacks.
	var out syncBuffer
	if err := run(t.Context(), []string{"status", "--data-dir", dir, "--json"}, env(nil), &out, io.Discard); err != nil || !strings.Contains(out.String(), `"role": "worker"`) {
		t.Errorf("cocoon status --data-dir: %v\n%s", err, out.String())
	}
	if err := run(t.Context(), []string{"status", "--admin", ep.URL}, env(nil), io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "admin token") {
		t.Errorf("cocoon status --admin without a token: %v, want an error naming the admin token", err)
	}

	// The dashboard's login: a cookie, and the token leaves the address bar.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", ep.LoginURL(), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || len(resp.Cookies()) != 1 || !resp.Cookies()[0].HttpOnly {
		t.Errorf("dashboard login: %d to %q, cookies %v", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	req, _ = http.NewRequestWithContext(t.Context(), "GET", ep.URL+"/", nil)
	req.AddCookie(resp.Cookies()[0])
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("dashboard with its cookie: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("worker shutdown: %v", err)
	}
	for _, name := range []string{admin.AddrFile, admin.TokenFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the node stopped: %v, want none", name, err)
		}
	}
	if err := run(t.Context(), []string{"status", "--data-dir", dir}, env(nil), io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "no running node found") {
		t.Errorf("cocoon status after the node stopped: %v, want no running node found", err)
	}
}
