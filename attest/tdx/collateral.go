package tdx

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Getter fetches a URL, returning the response header and body; it has the
// method set of go-tdx-guest's trust.HTTPSGetter.
type Getter interface {
	Get(url string) (header map[string][]string, body []byte, err error)
}

// ContextGetter is a Getter that can also fetch within a context: the
// cache calls GetContext with the validation's context, so a fetch ends
// when the validation is abandoned.
type ContextGetter interface {
	Getter
	GetContext(ctx context.Context, url string) (header map[string][]string, body []byte, err error)
}

// GetContext fetches url through g within ctx when g is a ContextGetter,
// and with g.Get otherwise.
func GetContext(ctx context.Context, g Getter, url string) (header map[string][]string, body []byte, err error) {
	if cg, ok := g.(ContextGetter); ok {
		return cg.GetContext(ctx, url)
	}
	return g.Get(url)
}

// MaxCollateral bounds the body of one Intel PCS answer, in bytes. Intel's
// are a few KiB; the largest, the PCK CRL, grows with revocations.
const MaxCollateral = 1 << 20

const defaultRefresh = time.Hour

// cache serves Intel PCS answers from files in dir, fetching through net
// when a file is missing or older than refresh, and falling back to the
// file when net fails.
type cache struct {
	dir     string
	net     Getter
	now     func() time.Time
	refresh time.Duration
	log     *slog.Logger
	mu      sync.Mutex // serialises writes of one process to dir
}

func newCache(cfg Config) (*cache, error) {
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("tdx: Config.CacheDir: %w", err)
	}
	c := &cache{dir: cfg.CacheDir, net: cfg.Getter, now: cfg.Now, refresh: cfg.Refresh, log: cfg.Log}
	if c.net == nil {
		c.net = NewHTTPSGetter()
	}
	if c.refresh == 0 {
		c.refresh = defaultRefresh
	}
	return c, nil
}

// entry is one cached answer.
type entry struct {
	URL     string              `json:"url"`
	Fetched time.Time           `json:"fetched"`
	Header  map[string][]string `json:"header"`
	Body    []byte              `json:"body"`
}

func (c *cache) path(url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(c.dir, hex.EncodeToString(sum[:16])+".json")
}

// get returns the answer for url, fresh from net if the cached one is old.
func (c *cache) get(ctx context.Context, url string) (map[string][]string, []byte, error) {
	cached, cerr := c.read(url)
	if cerr == nil && c.now().Sub(cached.Fetched) < c.refresh {
		return cached.Header, cached.Body, nil
	}
	h, b, err := GetContext(ctx, c.net, url)
	if err == nil {
		if werr := c.write(&entry{URL: url, Fetched: c.now(), Header: h, Body: b}); werr != nil {
			c.log.Warn("caching Intel collateral", "url", url, "err", werr)
		}
		return h, b, nil
	}
	if cerr == nil {
		c.log.Warn("Intel PCS unreachable, using cached collateral", "url", url, "fetched", cached.Fetched, "err", err)
		return cached.Header, cached.Body, nil
	}
	return nil, nil, fmt.Errorf("fetching %s: %w (and no cached copy)", url, err)
}

// Cached returns the answer to url that the collateral cache holds, as
// Intel PCS gave it, however old: ok is false when there is none, when
// collateral is off, or when url is not one this package fetches
// (IsCollateralURL). It never fetches. Package attest/collateral serves
// peers from it.
func (v *Validator) Cached(url string) (header map[string][]string, body []byte, ok bool) {
	if v.cache == nil || !IsCollateralURL(url) {
		return nil, nil, false
	}
	e, err := v.cache.read(url)
	if err != nil {
		return nil, nil, false
	}
	return e.Header, e.Body, true
}

func (c *cache) read(url string) (*entry, error) {
	data, err := os.ReadFile(c.path(url))
	if err != nil {
		return nil, err
	}
	var e entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, err
	}
	if e.URL != url {
		return nil, errors.New("cache entry for another URL")
	}
	return &e, nil
}

// write replaces the file for e.URL atomically, readable by its owner only.
func (c *cache) write(e *entry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := os.CreateTemp(c.dir, ".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), c.path(e.URL))
}

// call returns a getter for one verification, remembering whether any
// answer could not be had.
func (c *cache) call(ctx context.Context) *callGetter { return &callGetter{ctx: ctx, c: c} }

type callGetter struct {
	ctx    context.Context
	c      *cache
	failed error // first failure, if any
}

func (g *callGetter) Get(url string) (map[string][]string, []byte, error) {
	// go-tdx-guest takes the root CRL's URL from a certificate in an
	// answer it has not verified yet: fetch nothing but Intel's URLs.
	// Refusing is not unavailability; the collateral is bad.
	if !IsCollateralURL(url) {
		return nil, nil, fmt.Errorf("%q is not an Intel PCS collateral URL", url)
	}
	if err := g.ctx.Err(); err != nil {
		if g.failed == nil {
			g.failed = err
		}
		return nil, nil, err
	}
	h, b, err := g.c.get(g.ctx, url)
	if err != nil && g.failed == nil {
		g.failed = err
	}
	return h, b, err
}

// NewHTTPSGetter returns the Getter a Config without one uses: a plain
// HTTPS GET to Intel PCS with a 10 s timeout, an answer other than 200 OK
// being an error and a body over MaxCollateral refused. It is a
// ContextGetter.
func NewHTTPSGetter() ContextGetter {
	return httpsGetter{client: &http.Client{Timeout: 10 * time.Second}}
}

type httpsGetter struct{ client *http.Client }

func (g httpsGetter) Get(url string) (map[string][]string, []byte, error) {
	return g.GetContext(context.Background(), url)
}

func (g httpsGetter) GetContext(ctx context.Context, url string) (map[string][]string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxCollateral+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > MaxCollateral {
		return nil, nil, fmt.Errorf("%s: answer over %d bytes", url, MaxCollateral)
	}
	return resp.Header, body, nil
}
