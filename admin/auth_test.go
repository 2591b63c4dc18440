package admin_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/admin"
)

// TestTokenRequired: every route of the admin API, the metrics and the
// dashboard's files included, answers 401 with a JSON error naming the
// token file to a request without the token or with another one, and
// serves a request with it. Two servers have two tokens.
func TestTokenRequired(t *testing.T) {
	f := newProxyFixture(t, admin.Config{Network: "testnet"})
	other := newProxyFixture(t, admin.Config{Network: "testnet"})
	if f.srv.Token() == other.srv.Token() || len(f.srv.Token()) != 64 {
		t.Fatalf("tokens %q and %q: want two different 64-digit ones", f.srv.Token(), other.srv.Token())
	}
	routes := []struct{ method, path string }{
		{"GET", "/status"}, {"GET", "/doctor"}, {"GET", "/metrics"}, {"GET", "/channels"},
		{"GET", "/"}, {"GET", "/ui/app.js"}, {"GET", "/models"},
		{"POST", "/channels/open?peer=" + f.w1.String()}, {"POST", "/channels/close?peer=" + f.w1.String()},
		{"POST", "/channels/close?peer=" + f.w1.String() + "&uncooperative=1"}, {"POST", "/channels/finish?peer=" + f.w1.String()},
	}
	for _, auth := range []string{"", "Bearer " + other.srv.Token(), "Bearer ", "Basic " + f.srv.Token(), f.srv.Token()} {
		for _, r := range routes {
			req := httptest.NewRequest(r.method, r.path, nil)
			req.Host = "127.0.0.1:9100"
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			f.srv.Handler().ServeHTTP(rec, req)
			var e map[string]string
			if rec.Code != http.StatusUnauthorized || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e["error"], admin.TokenFile) {
				t.Errorf("%s %s with Authorization %q: %d %s, want 401 naming %s", r.method, r.path, auth, rec.Code, rec.Body, admin.TokenFile)
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without WWW-Authenticate", r.method, r.path)
			}
		}
	}
	if ops := f.channels.done(); len(ops) != 0 {
		t.Errorf("requests without the token did %q", ops)
	}
	for _, r := range routes {
		if rec := get(t, f.srv, r.method, r.path); rec.Code != http.StatusOK {
			t.Errorf("%s %s with the token: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
}

// TestDashboardLogin: a browser opens the dashboard at /?token=...: the
// answer sets an HttpOnly, SameSite=Strict cookie for this port and
// redirects to / without the token; the cookie then serves the dashboard
// and its data, but a cross-site page still cannot change anything with
// it. A wrong token in the address is a 401 and sets nothing.
func TestDashboardLogin(t *testing.T) {
	f := newProxyFixture(t, admin.Config{Network: "testnet"})
	h := f.srv.Handler()
	serve := func(method, path string, cookie *http.Cookie, header http.Header) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Host = "127.0.0.1:9100"
		if cookie != nil {
			req.AddCookie(cookie)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	if rec := serve("GET", "/?token=0123", nil, nil); rec.Code != http.StatusUnauthorized || len(rec.Result().Cookies()) != 0 {
		t.Errorf("login with a wrong token: %d, cookies %v; want 401 and none", rec.Code, rec.Result().Cookies())
	}
	rec := serve("GET", "/?token="+f.srv.Token(), nil, nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		t.Fatalf("login: %d to %q, want 303 to /", rec.Code, rec.Header().Get("Location"))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login set cookies %v, want one", cookies)
	}
	c := cookies[0]
	if c.Name != "cocoon_admin_9100" || c.Value != f.srv.Token() || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %+v: want cocoon_admin_9100, the token, HttpOnly, SameSite=Strict, Path=/", c)
	}

	for _, path := range []string{"/", "/status", "/ui/app.js", "/channels"} {
		if rec := serve("GET", path, c, nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s with the cookie: %d", path, rec.Code)
		}
	}
	// The cookie of another node's port, or with another value, is no login.
	for _, bad := range []*http.Cookie{{Name: "cocoon_admin_9101", Value: f.srv.Token()}, {Name: c.Name, Value: "x" + f.srv.Token()[1:]}} {
		if rec := serve("GET", "/status", bad, nil); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET /status with cookie %s=%s: %d, want 401", bad.Name, bad.Value, rec.Code)
		}
	}
	open := "/channels/open?peer=" + f.w1.String()
	for _, hdr := range []http.Header{{"Sec-Fetch-Site": {"cross-site"}}, {"Origin": {"http://evil.example"}}} {
		if rec := serve("POST", open, c, hdr); rec.Code != http.StatusForbidden {
			t.Errorf("cross-site POST with the cookie (%v): %d, want 403", hdr, rec.Code)
		}
	}
	if ops := f.channels.done(); len(ops) != 0 {
		t.Errorf("cross-site requests did %q", ops)
	}
	if rec := serve("POST", open, c, http.Header{"Sec-Fetch-Site": {"same-origin"}}); rec.Code != http.StatusOK {
		t.Errorf("same-origin POST with the cookie: %d %s", rec.Code, rec.Body)
	}
}

// TestCloseKeepsAnotherRunsFiles: Close removes admin.url and admin.token
// only while they hold what its run wrote; a node started since on the
// same data dir keeps its own.
func TestCloseKeepsAnotherRunsFiles(t *testing.T) {
	dir := t.TempDir()
	f := newProxyFixture(t, admin.Config{Addr: "127.0.0.1:0", DataDir: dir, Network: "testnet"})
	if err := f.srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Another run took the data dir over.
	other := map[string]string{admin.AddrFile: "http://127.0.0.1:1\n", admin.TokenFile: strings.Repeat("ab", 32) + "\n"}
	for name, b := range other {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for name, want := range other {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s after Close: %q (%v), want the other run's %q", name, b, err, want)
		}
	}
}

// TestReadEndpointRefusesOpenToken: a token file others may read is
// refused, as every secret is.
func TestReadEndpointRefusesOpenToken(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, admin.AddrFile), []byte("http://127.0.0.1:1\n"), 0o600)
	os.WriteFile(filepath.Join(dir, admin.TokenFile), []byte("secret\n"), 0o600)
	if err := os.Chmod(filepath.Join(dir, admin.TokenFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ReadEndpoint(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("ReadEndpoint with a 0644 token: %v, want a chmod error", err)
	}
	if _, err := admin.ReadEndpoint(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadEndpoint of an empty dir: %v, want ErrNotExist", err)
	}
}
