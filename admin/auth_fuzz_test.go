package admin

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRequireToken: whatever a caller puts in the Authorization header,
// the dashboard's cookie and the login query, the guard serves the API
// only when one of them holds the token exactly, and otherwise answers
// 401 or, for a good login, a redirect.
func FuzzRequireToken(f *testing.F) {
	const token = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	f.Add("Bearer "+token, "", "")
	f.Add("Bearer "+token[:63], token, "")
	f.Add("bearer "+token, "", token)
	f.Add("", token+" ", "x")
	f.Add("Bearer  "+token, "", "")
	f.Fuzz(func(t *testing.T, auth, cookie, query string) {
		served := false
		h := requireToken(token, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served = true }))
		target := "/status"
		if query != "" {
			target = "/?token=" + url.QueryEscape(query)
		}
		req := httptest.NewRequest("GET", target, nil)
		req.Host = "127.0.0.1:9100"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if cookie != "" && !strings.ContainsAny(cookie, "\r\n\x00;") {
			req.Header.Set("Cookie", "cocoon_admin_9100="+cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		bearer, isBearer := strings.CutPrefix(auth, "Bearer ")
		c, _ := req.Cookie("cocoon_admin_9100")
		switch {
		case query != "":
			if want := query == token; (rec.Code == http.StatusSeeOther) != want || served {
				t.Fatalf("login with %q: %d (served %v)", query, rec.Code, served)
			}
		case auth != "":
			if want := isBearer && strings.TrimSpace(bearer) == token; served != want {
				t.Fatalf("Authorization %q: served %v, want %v", auth, served, want)
			}
		default:
			if want := c != nil && c.Value == token; served != want {
				t.Fatalf("cookie %q: served %v, want %v", cookie, served, want)
			}
		}
		if !served && rec.Code != http.StatusUnauthorized && rec.Code != http.StatusSeeOther {
			t.Fatalf("refused with %d, want 401", rec.Code)
		}
	})
}
