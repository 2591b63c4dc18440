package gateway

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/inference"
)

// TestBrowserGuard: the API answers programs on this machine and the web
// apps allowed by name with the key; a page the user merely opens (a
// cross-site POST, a DNS-rebound host name, a form, a Sec-Fetch-Site
// cross-site request) is refused before anything goes upstream, with an
// error naming the setting to configure.
func TestBrowserGuard(t *testing.T) {
	const (
		chat = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
		app  = "https://app.example"
	)
	open := Config{}
	hosts := Config{AllowedHosts: []string{"gpu-box.lan", "192.0.2.7:10000"}}
	anyIP := Config{AllowedHosts: []string{"0.0.0.0:10000"}}
	keyed := Config{APIKey: "k", AllowedOrigins: []string{app}}
	unkeyed := Config{AllowedOrigins: []string{app}} // Validate refuses it; the gateway ignores the list
	tests := []struct {
		name    string
		cfg     Config
		method  string
		host    string // "" for the server's own 127.0.0.1:port
		header  map[string]string
		body    string
		status  int
		code    string // the error's code
		setting string // what its message names
	}{
		{"curl: loopback, JSON, no Origin", open, "POST", "", map[string]string{"Content-Type": "application/json"}, chat, 200, "", ""},
		{"JSON with a charset", open, "POST", "", map[string]string{"Content-Type": "application/json; charset=utf-8"}, chat, 200, "", ""},
		{"localhost with any port", open, "POST", "localhost:1", map[string]string{"Content-Type": "application/json"}, chat, 200, "", ""},
		{"127.0.0.0/8", open, "GET", "127.3.4.5:10000", nil, "", 200, "", ""},
		{"::1", open, "GET", "[::1]:10000", nil, "", 200, "", ""},
		{"a program's Sec-Fetch-Site none", open, "GET", "", map[string]string{"Sec-Fetch-Site": "none"}, "", 200, "", ""},

		{"cross-site text/plain POST", open, "POST", "", map[string]string{"Content-Type": "text/plain", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, chat, 403, "origin_not_allowed", originsSetting},
		{"Origin null (a sandboxed frame)", open, "POST", "", map[string]string{"Content-Type": "application/json", "Origin": "null"}, chat, 403, "origin_not_allowed", originsSetting},
		{"Sec-Fetch-Site cross-site without Origin", open, "GET", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", 403, "origin_not_allowed", originsSetting},
		{"Sec-Fetch-Site same-site", open, "POST", "", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, chat, 403, "origin_not_allowed", originsSetting},
		{"DNS rebinding: Host evil.example", open, "POST", "evil.example:10000", map[string]string{"Content-Type": "application/json"}, chat, 403, "host_not_allowed", hostsSetting},
		{"DNS rebinding: a name ending in 127.0.0.1", open, "GET", "127.0.0.1.nip.io:10000", nil, "", 403, "host_not_allowed", hostsSetting},
		{"an IP not this API's", open, "GET", "192.0.2.7:10000", nil, "", 403, "host_not_allowed", hostsSetting},
		{"form-encoded body", open, "POST", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "model=m", 415, "unsupported_media_type", "application/json"},
		{"multipart body", open, "POST", "", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, "--x--", 415, "unsupported_media_type", "application/json"},
		{"text/plain without Origin", open, "POST", "", map[string]string{"Content-Type": "text/plain"}, chat, 415, "unsupported_media_type", "application/json"},
		{"a program's body without Content-Type", open, "POST", "", nil, chat, 200, "", ""},
		{"a page's body without Content-Type", open, "POST", "", map[string]string{"Origin": "https://evil.example"}, chat, 403, "origin_not_allowed", originsSetting},
		{"a malformed Content-Type", open, "POST", "", map[string]string{"Content-Type": "application/json; ;"}, chat, 415, "unsupported_media_type", "application/json"},

		{"an allowed host name", hosts, "GET", "GPU-box.lan.:8080", nil, "", 200, "", ""},
		{"an allowed IP", hosts, "GET", "192.0.2.7", nil, "", 200, "", ""},
		{"a name not allowed", hosts, "GET", "other.lan:10000", nil, "", 403, "host_not_allowed", hostsSetting},
		{"listening on every address: an IP", anyIP, "GET", "198.51.100.3:10000", nil, "", 200, "", ""},
		{"listening on every address: a name", anyIP, "GET", "evil.example:10000", nil, "", 403, "host_not_allowed", hostsSetting},

		{"allowed origin with the key", keyed, "POST", "", map[string]string{"Content-Type": "application/json", "Origin": app, "Sec-Fetch-Site": "cross-site", "Authorization": "Bearer k"}, chat, 200, "", ""},
		{"allowed origin without the key", keyed, "POST", "", map[string]string{"Content-Type": "application/json", "Origin": app}, chat, 401, "invalid_api_key", ""},
		{"another origin with the key", keyed, "POST", "", map[string]string{"Content-Type": "application/json", "Origin": "https://app.example.evil", "Authorization": "Bearer k"}, chat, 403, "origin_not_allowed", originsSetting},
		{"allowed origin's text/plain", keyed, "POST", "", map[string]string{"Content-Type": "text/plain", "Origin": app, "Authorization": "Bearer k"}, chat, 415, "unsupported_media_type", "application/json"},
		{"allowed origin, no key configured", unkeyed, "POST", "", map[string]string{"Content-Type": "application/json", "Origin": app}, chat, 403, "origin_not_allowed", originsSetting},
		{"preflight from another origin", keyed, "OPTIONS", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, "", 403, "origin_not_allowed", originsSetting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &fakeUpstream{events: make(chan inference.Event, 2), closed: make(chan struct{}), opened: make(chan *inference.Request, 1)}
			up.events <- inference.Event{Type: inference.FrameChunk, Text: []byte("hello")}
			up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{}}
			srv := httptest.NewServer(New(tt.cfg, up, nil, nil, slog.New(slog.DiscardHandler)))
			defer srv.Close()
			path := "/v1/chat/completions"
			if tt.method == "GET" {
				path = "/v1/models"
			}
			req, _ := http.NewRequest(tt.method, srv.URL+path, strings.NewReader(tt.body))
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			status, e := do(t, req)
			if status != tt.status {
				t.Fatalf("status %d %+v, want %d", status, e, tt.status)
			}
			if tt.status == 200 {
				return
			}
			if e.Code == nil || *e.Code != tt.code || !strings.Contains(e.Message, tt.setting) || e.Type != "invalid_request_error" {
				t.Fatalf("error %+v: want code %s naming %s", e, tt.code, tt.setting)
			}
			if len(up.opened) != 0 {
				t.Fatal("a refused request went upstream")
			}
		})
	}
}

// TestCORS: an allowed origin's preflight is answered with that exact
// origin, never "*", and its answers are readable by it alone.
func TestCORS(t *testing.T) {
	const app = "https://app.example"
	up := &fakeUpstream{events: make(chan inference.Event, 2), closed: make(chan struct{})}
	srv := httptest.NewServer(New(Config{APIKey: "k", AllowedOrigins: []string{"HTTPS://App.Example"}}, up, nil, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	pre, _ := http.NewRequest("OPTIONS", srv.URL+"/v1/chat/completions", nil)
	pre.Header.Set("Origin", app)
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "authorization, content-type, x-stainless-os, bad header")
	resp, err := http.DefaultClient.Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(allowed, "authorization") || !strings.Contains(allowed, "content-type") ||
		!strings.Contains(allowed, "x-stainless-os") || strings.Contains(allowed, "bad header") ||
		!strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, h)
	}

	up.events <- inference.Event{Type: inference.FrameChunk, Text: []byte("hello")}
	up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{Tier: "dev"}}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Origin", app)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer k")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), TierHeader) {
		t.Fatalf("answer: %d %v", resp.StatusCode, resp.Header)
	}

	// Without an Origin (a program), no CORS header at all.
	get, _ := http.NewRequest("GET", srv.URL+"/v1/models", nil)
	get.Header.Set("Authorization", "Bearer k")
	resp, err = http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("a program's answer: %d %v", resp.StatusCode, resp.Header)
	}
}

// FuzzGuard: any Host, Origin, Sec-Fetch-Site and Content-Type are judged
// without panic; what passes names this machine, and comes from a program
// or the one allowed origin.
func FuzzGuard(f *testing.F) {
	f.Add("127.0.0.1:10000", "", "", "application/json")
	f.Add("[::1]:1", "https://app.example", "cross-site", "application/json; charset=utf-8")
	f.Add("localhost.", "null", "same-site", "text/plain")
	f.Add("evil.example:80", "https://evil.example", "none", "multipart/form-data; boundary=x")
	f.Add("[", "HTTPS://APP.EXAMPLE", "same-origin", "application/json; ;")
	f.Add("0.0.0.0", "", "cross-site", "")
	const app = "https://app.example"
	g := newGuard(Config{APIKey: "k", AllowedOrigins: []string{app}})
	f.Fuzz(func(t *testing.T, host, origin, site, ctype string) {
		r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
		r.Host = host
		for k, v := range map[string]string{"Origin": origin, "Sec-Fetch-Site": site, "Content-Type": ctype} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		if g.check(w, r) {
			if w.Code != http.StatusForbidden && w.Code != http.StatusNoContent {
				t.Fatalf("answered %d", w.Code)
			}
			return
		}
		if h := hostName(host); host != "" && h != "localhost" {
			if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
				t.Fatalf("host %q passed as %q", host, h)
			}
		}
		if origin != "" && !strings.EqualFold(origin, app) {
			t.Fatalf("origin %q passed", origin)
		}
		if origin == "" && (site == "cross-site" || site == "same-site") {
			t.Fatalf("Sec-Fetch-Site %q passed", site)
		}
		checkJSON(w, r)
	})
}
