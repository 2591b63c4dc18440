package testnet_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// TestBrowserAttacks: through a real client node, what a web page the
// user merely opens can send to the API (a cross-site text/plain POST, a
// DNS-rebound host name, a form, a Sec-Fetch-Site cross-site request) is
// refused with an error that names the setting, while a program's request
// (curl, no Origin) is answered; a web app allowed by origin, with the
// key, gets its preflight answered for its exact origin and its answer.
func TestBrowserAttacks(t *testing.T) {
	const (
		chat = `{"model":"sim-small","max_tokens":4,"messages":[{"role":"user","content":"spend the user's TON"}]}`
		app  = "https://app.example"
	)
	h := testnet.New(t)
	worker := h.AddWorker()
	h.AddProxy()
	open := h.AddClient()
	allowing := h.AddClient(func(c *config.Config) {
		c.Client.APIKey, c.Client.AllowedOrigins = "s3cret", []string{app}
	})

	tests := []struct {
		name   string
		base   string
		method string
		path   string
		host   string // "" for the API's own address
		header map[string]string
		body   string
		status int
		code   string // the error's code, or for 2xx a header that must be there
	}{
		{"curl: no Origin, JSON", testnet.BaseURL(open), "POST", "/chat/completions", "",
			map[string]string{"Content-Type": "application/json"}, chat, 200, ""},
		{"cross-site text/plain POST", testnet.BaseURL(open), "POST", "/chat/completions", "",
			map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, chat, 403, "origin_not_allowed"},
		{"DNS rebinding: Host evil.example, reading models", testnet.BaseURL(open), "GET", "/models", "evil.example:10000",
			nil, "", 403, "host_not_allowed"},
		{"DNS rebinding: Host evil.example, JSON POST", testnet.BaseURL(open), "POST", "/chat/completions", "evil.example:10000",
			map[string]string{"Content-Type": "application/json"}, chat, 403, "host_not_allowed"},
		{"form-encoded body", testnet.BaseURL(open), "POST", "/chat/completions", "",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "model=sim-small", 415, "unsupported_media_type"},
		{"Sec-Fetch-Site cross-site", testnet.BaseURL(open), "POST", "/chat/completions", "",
			map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, chat, 403, "origin_not_allowed"},
		{"an allowed origin without configuring one", testnet.BaseURL(open), "POST", "/chat/completions", "",
			map[string]string{"Content-Type": "application/json", "Origin": app}, chat, 403, "origin_not_allowed"},

		{"allowed origin's preflight", testnet.BaseURL(allowing), "OPTIONS", "/chat/completions", "",
			map[string]string{"Origin": app, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}, "", 204, "Access-Control-Allow-Origin"},
		{"allowed origin with the key", testnet.BaseURL(allowing), "POST", "/chat/completions", "",
			map[string]string{"Content-Type": "application/json", "Origin": app, "Sec-Fetch-Site": "cross-site", "Authorization": "Bearer s3cret"}, chat, 200, "Access-Control-Allow-Origin"},
		{"allowed origin without the key", testnet.BaseURL(allowing), "POST", "/chat/completions", "",
			map[string]string{"Content-Type": "application/json", "Origin": app}, chat, 401, "invalid_api_key"},
		{"another origin with the key", testnet.BaseURL(allowing), "POST", "/chat/completions", "",
			map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example", "Authorization": "Bearer s3cret"}, chat, 403, "origin_not_allowed"},
	}
	answered, refused := 0, 0
	for _, tt := range tests {
		switch {
		case tt.status == 200:
			answered++
		case tt.status >= 400:
			refused++
		}
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, tt.base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, raw, tt.status)
			}
			if tt.status < 300 {
				if tt.code != "" && resp.Header.Get(tt.code) != app {
					t.Fatalf("%s: %q, want exactly %s", tt.code, resp.Header.Get(tt.code), app)
				}
				if tt.status == 200 && !strings.Contains(string(raw), `"content"`) {
					t.Fatalf("no answer: %s", raw)
				}
				return
			}
			var e struct {
				Error struct {
					Message, Type string
					Code          *string
				}
			}
			if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code == nil || *e.Error.Code != tt.code {
				t.Fatalf("body %s: want an OpenAI error with code %s", raw, tt.code)
			}
			if tt.status == 403 && !strings.Contains(e.Error.Message, "client.allowed_") {
				t.Fatalf("message %q names no setting to configure", e.Error.Message)
			}
		})
	}

	// Only the answered requests reached the worker: a refused one spent
	// nothing.
	served := func() int64 { return worker.Status(t.Context()).Serving.Served }
	p2ptest.Eventually(t, "the answered requests served", func() bool { return served() >= int64(answered) })
	if got := served(); got != int64(answered) {
		t.Fatalf("the worker served %d requests, want the %d answered", got, answered)
	}
	t.Logf("%d requests refused; the worker served only the %d answered", refused, answered)
}
