package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/cocoon-mesh/cocoon/internal/secret"
)

// TokenFile is the file beside AddrFile where a running node writes the
// admin API's token (mode 0600): every request must carry it, as
// "Authorization: Bearer <token>" or, from the dashboard, as a cookie.
const TokenFile = "admin.token"

// tokenBytes is how many random bytes a token holds; it is written as hex.
const tokenBytes = 32

// cookiePrefix names the dashboard's cookie, followed by the API's port:
// browsers share cookies between the ports of one host, and two nodes on
// one machine must not log each other out.
const cookiePrefix = "cocoon_admin_"

// newToken returns a fresh random token, hex-encoded.
func newToken() string {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Endpoint is where a running node serves its admin API and the token it
// wants, as the node wrote them into its data dir.
type Endpoint struct {
	URL   string
	Token string
}

// ReadEndpoint reads the admin URL and token a running node wrote into
// dataDir. A missing URL file wraps fs.ErrNotExist: no node runs there.
// The token file is a secret: one that others may read is refused.
func ReadEndpoint(dataDir string) (Endpoint, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, AddrFile))
	if err != nil {
		return Endpoint{}, fmt.Errorf("reading the admin URL: %w", err)
	}
	tok, err := ReadToken(filepath.Join(dataDir, TokenFile))
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{URL: strings.TrimSpace(string(b)), Token: tok}, nil
}

// ReadToken reads an admin token file (mode 0600).
func ReadToken(path string) (string, error) {
	b, err := secret.Read(path, "admin token")
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin token %s is empty", path)
	}
	return tok, nil
}

// NewRequest is a request for path on the admin API at e, with its token.
func (e Endpoint) NewRequest(ctx context.Context, method, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(e.URL, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if e.Token != "" {
		req.Header.Set("Authorization", "Bearer "+e.Token)
	}
	return req, nil
}

// LoginURL is the dashboard's address with the token in it, for a
// browser: opening it sets the dashboard's cookie and drops the token
// from the address bar.
func (e Endpoint) LoginURL() string {
	return strings.TrimRight(e.URL, "/") + "/?token=" + e.Token
}

// Token is the token this run of the admin API wants; it is new for each
// Server and written to TokenFile by Start.
func (s *Server) Token() string { return s.token }

// Endpoint is the API's URL and token; its URL is empty if Start did not
// listen.
func (s *Server) Endpoint() Endpoint { return Endpoint{URL: s.url, Token: s.token} }

// requireToken lets through only requests that carry token: in an
// "Authorization: Bearer" header (the CLI, Prometheus, scripts) or in the
// dashboard's cookie. GET /?token=<token> is the dashboard's login: it
// sets the cookie (HttpOnly, SameSite=Strict) and redirects to / so the
// token leaves the address bar. Anything else is a 401 saying where the
// token is.
func requireToken(token string, h http.Handler) http.Handler {
	want := []byte(token)
	valid := func(got string) bool {
		return got != "" && subtle.ConstantTimeCompare([]byte(got), want) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/" && r.URL.Query().Has("token") {
			if !valid(r.URL.Query().Get("token")) {
				unauthorized(w, "the token in this address is not this node's: take it from "+TokenFile+" in the node's data dir (it changes at each start)")
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: token, Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode})
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Referrer-Policy", "no-referrer")
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		if auth := r.Header.Get("Authorization"); auth != "" {
			got, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok || !valid(strings.TrimSpace(got)) {
				unauthorized(w, "wrong admin token: send the one in "+TokenFile+" in the node's data dir (it changes at each start)")
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(cookieName(r)); err == nil && valid(c.Value) {
			h.ServeHTTP(w, r)
			return
		}
		unauthorized(w, "the admin API needs its token: send \"Authorization: Bearer <token>\" with the token in "+TokenFile+
			" in the node's data dir, or open the dashboard at /?token=<token>")
	})
}

// cookieName is the dashboard's cookie for the API at r's Host.
func cookieName(r *http.Request) string {
	_, port, err := net.SplitHostPort(r.Host)
	if err != nil || port == "" {
		port = "80"
	}
	return cookiePrefix + port
}

// unauthorized answers 401 {"error": msg}.
func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="cocoon admin"`)
	adminError(w, http.StatusUnauthorized, msg)
}

// writeEndpoint writes the token, then the URL, into the data dir: a
// reader that finds the URL finds its token too.
func (s *Server) writeEndpoint(url string) error {
	tokenPath, urlPath := filepath.Join(s.cfg.DataDir, TokenFile), filepath.Join(s.cfg.DataDir, AddrFile)
	if err := secret.Write(tokenPath, []byte(s.token+"\n")); err != nil {
		return fmt.Errorf("writing the admin token: %w", err)
	}
	if err := secret.Write(urlPath, []byte(url+"\n")); err != nil {
		removeIfHolds(tokenPath, []byte(s.token+"\n"))
		return fmt.Errorf("writing the admin URL: %w", err)
	}
	return nil
}

// removeEndpoint removes the URL, then the token, that Start wrote, each
// only if it still holds what this run wrote: a node started since on the
// same data dir keeps its own.
func (s *Server) removeEndpoint() error {
	return errors.Join(
		removeIfHolds(filepath.Join(s.cfg.DataDir, AddrFile), []byte(s.url+"\n")),
		removeIfHolds(filepath.Join(s.cfg.DataDir, TokenFile), []byte(s.token+"\n")))
}

// removeIfHolds removes path if it holds want; a file already gone is no
// error.
func removeIfHolds(path string, want []byte) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !bytes.Equal(b, want)) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
