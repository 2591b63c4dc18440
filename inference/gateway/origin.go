package gateway

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The API answers only what a program on this machine sent on purpose.
// Loopback is no trust boundary against the browser: any page the user
// opens may POST to 127.0.0.1 (a text/plain or form body needs no CORS
// preflight, and spends the user's channel even if the page never reads
// the answer), and with DNS rebinding (the page's own host name made to
// resolve to 127.0.0.1) it reads the answers too. So the guard, before
// the API key is checked:
//
//   - refuses a Host that is not loopback (localhost, 127.0.0.0/8, ::1),
//     the listen address, or one of Config.AllowedHosts: a rebound page
//     sends its own host name (403, host_not_allowed);
//   - refuses a request from a browser on another page, one with an Origin
//     header not in Config.AllowedOrigins or with Sec-Fetch-Site
//     cross-site or same-site (403, origin_not_allowed);
//   - answers an allowed origin's CORS preflight, and marks its answers
//     readable by it: that origin only, never "*";
//
// and, once the key is checked, refuses a POST whose body is declared
// anything but JSON (415, unsupported_media_type): text/plain, forms and
// multipart are what a page can send without a preflight. A body with no
// declared type is read as JSON, as before: a browser always sends an
// Origin with it. Programs (curl, the OpenAI SDKs) send no Origin or
// Sec-Fetch-Site header and declare their JSON, and pass as before.

// The settings the guard's errors name.
const (
	hostsSetting   = "client.allowed_hosts"
	originsSetting = "client.allowed_origins"
)

// corsHeaders are the request headers an allowed origin may send, besides
// the CORS-safelisted ones; the preflight also allows what it asks for.
var corsHeaders = []string{"Authorization", "Content-Type", MaxPriceHeader, MinTrustHeader}

// maxCORSHeaders caps the headers a preflight may ask for.
const maxCORSHeaders = 64

// guard is the browser's side of the API's checks.
type guard struct {
	hosts   map[string]bool // lowercased host names and IPs, without port
	anyIP   bool            // the API listens on every address: any IP literal is this machine
	origins map[string]bool // lowercased exact origins; empty without an API key
}

func newGuard(cfg Config) guard {
	g := guard{hosts: make(map[string]bool), origins: make(map[string]bool)}
	for _, h := range cfg.AllowedHosts {
		h = hostName(h)
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			g.anyIP = true
		}
		g.hosts[h] = true
	}
	if cfg.APIKey != "" { // an allowed origin without a key would be any page's
		for _, o := range cfg.AllowedOrigins {
			g.origins[strings.ToLower(o)] = true
		}
	}
	return g
}

// hostName is the host of a Host header or address, without port,
// brackets or a final dot: an IP in its canonical form, a name lowercased.
func hostName(hostport string) string {
	if ip := net.ParseIP(strings.Trim(hostport, "[]")); ip != nil {
		return ip.String()
	}
	h := (&url.URL{Host: hostport}).Hostname()
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// hostAllowed says whether a request's Host names this machine as the
// guard knows it. No Host at all (HTTP/1.0) is no browser's.
func (g guard) hostAllowed(hostport string) bool {
	if hostport == "" {
		return true
	}
	h := hostName(hostport)
	if h == "localhost" || g.hosts[h] {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || g.anyIP)
}

// check answers a request the guard refuses, or a preflight it allows, and
// says whether it did; otherwise it marks the answer for an allowed origin
// and leaves the request to the API.
func (g guard) check(w http.ResponseWriter, r *http.Request) bool {
	if !g.hostAllowed(r.Host) {
		writeError(w, http.StatusForbidden, "invalid_request_error", "", "host_not_allowed",
			"This API does not answer requests for host "+quote(r.Host)+": only loopback names and addresses, "+
				"its listen address, and the names in "+hostsSetting+" (set it to the host name your apps use to reach this node).")
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			writeError(w, http.StatusForbidden, "invalid_request_error", "", "origin_not_allowed",
				"This API does not answer requests a browser sends from another site (Sec-Fetch-Site: "+site+"); "+
					"to let a web app use it, add its origin to "+originsSetting+" and give the app the API key.")
			return true
		}
		return false
	}
	w.Header().Add("Vary", "Origin")
	if !g.origins[strings.ToLower(origin)] {
		writeError(w, http.StatusForbidden, "invalid_request_error", "", "origin_not_allowed",
			"This API does not answer requests from web pages (Origin "+quote(origin)+"); "+
				"to let a web app use it, add its exact origin to "+originsSetting+" and give the app the API key.")
		return true
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h := w.Header()
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", strings.Join(allowHeaders(r.Header.Values("Access-Control-Request-Headers")), ", "))
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	w.Header().Set("Access-Control-Expose-Headers", TierHeader)
	return false
}

// allowHeaders are corsHeaders and the header names a preflight asks for
// (an SDK sends its own): the origin is trusted, and the key still checked.
func allowHeaders(asked []string) []string {
	out := append([]string(nil), corsHeaders...)
	for _, v := range asked {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if len(out) >= maxCORSHeaders || !validHeaderName(name) {
				continue
			}
			out = append(out, name)
		}
	}
	return out
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// checkJSON answers a POST whose body is not declared JSON, and says
// whether it did.
func checkJSON(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return false // no browser sends a body without its type and an Origin
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
		return false
	}
	writeError(w, http.StatusUnsupportedMediaType, "invalid_request_error", "", "unsupported_media_type",
		"The request body must be JSON, sent with 'Content-Type: application/json' (this request's: "+quote(ct)+"); with curl, add -H 'Content-Type: application/json'.")
	return true
}

// quote quotes s for an error message, cut to 100 bytes.
func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return strconv.Quote(s)
}
