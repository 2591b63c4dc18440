package directory

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// ErrRefused: the proxy does not serve its directory to this peer.
// Retrying the same proxy does not help until its policy changes.
var ErrRefused = errors.New("proxy refused its directory")

// ClientConfig configures a Client.
type ClientConfig struct {
	Network string
	Now     func() time.Time // the clock verdicts are reached and expire at; time.Now if nil
	// MaxVerdicts bounds the verdict cache; 4096 if zero.
	MaxVerdicts int
	// MaxAge is how long Workers keeps a proxy's directory before
	// fetching it again; 5 s if zero.
	MaxAge time.Duration
}

// Worker is a directory entry the client verified itself.
type Worker struct {
	Peer peer.ID
	// Verdict is the client's own: its Tier is what the evidence proves,
	// whatever the proxy claimed, and its SealKey the sealing key the
	// evidence binds (empty for a worker that seals nothing), to seal to
	// until Expiry.
	Verdict attest.Verdict
	// Models are as the proxy listed them: what to ask it to route, and
	// the prices it will bill by.
	Models []Model
}

// Client fetches proxies' directories and verifies each worker in them.
type Client struct {
	h         host.Host
	proto     protocol.ID
	cfg       ClientConfig
	validator attest.Validator
	log       *slog.Logger

	mu       sync.Mutex // guards verdicts, fetched, fetching and gen
	verdicts map[verdictKey]attest.Verdict
	fetched  map[peer.ID]fetched       // each proxy's directory, as Workers last verified it
	fetching map[peer.ID]chan struct{} // closed when the fetch in flight for a proxy ends
	gen      uint64                    // directories Workers stored so far
}

// fetched is a proxy's directory as the client verified it at a time.
type fetched struct {
	at      time.Time
	gen     uint64 // the client's fetch count when it was stored
	workers []Worker
}

// verdictKey is a worker and the evidence it was verified on.
type verdictKey struct {
	peer   peer.ID
	digest [sha256.Size]byte
}

// NewClient fetches directories of cfg.Network over h and verifies their
// entries with validator (the node's attest.Kinds).
func NewClient(cfg ClientConfig, h host.Host, validator attest.Validator, log *slog.Logger) *Client {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxVerdicts <= 0 {
		cfg.MaxVerdicts = 4096
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * time.Second
	}
	return &Client{
		h: h, proto: ProtocolID(cfg.Network), cfg: cfg, validator: validator,
		log: log.With("component", "directory"), verdicts: make(map[verdictKey]attest.Verdict),
		fetched: make(map[peer.ID]fetched), fetching: make(map[peer.ID]chan struct{}),
	}
}

// maxProxies bounds how many proxies' directories Workers keeps.
const maxProxies = 64

// Workers is Fetch with a memory: the workers of proxy's directory as the
// client last verified them, fetched again when older than MaxAge, when
// refresh is set (the caller found the copy wanting), or when a verdict
// in it has expired. Callers that come while a fetch for proxy is in
// flight wait for it and share its result.
func (c *Client) Workers(ctx context.Context, proxy peer.ID, refresh bool) ([]Worker, error) {
	c.mu.Lock()
	start := c.gen
	c.mu.Unlock()
	for {
		c.mu.Lock()
		f, ok := c.fetched[proxy]
		now := c.cfg.Now()
		if ok && (!refresh || f.gen > start) && now.Sub(f.at) < c.cfg.MaxAge && allLive(f.workers, now) {
			c.mu.Unlock()
			return f.workers, nil
		}
		wait, busy := c.fetching[proxy]
		if !busy {
			done := make(chan struct{})
			c.fetching[proxy] = done
			c.mu.Unlock()
			ws, err := c.Fetch(ctx, proxy)
			c.mu.Lock()
			delete(c.fetching, proxy)
			close(done)
			if err == nil {
				c.gen++
				c.storeFetchedLocked(proxy, fetched{at: c.cfg.Now(), gen: c.gen, workers: ws})
			}
			c.mu.Unlock()
			return ws, err
		}
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if _, ok := c.peek(proxy); !ok {
			return nil, fmt.Errorf("fetching proxy %s's directory failed", proxy)
		}
	}
}

// peek returns what Workers keeps of proxy's directory, if anything.
func (c *Client) peek(proxy peer.ID) (fetched, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.fetched[proxy]
	return f, ok
}

// storeFetchedLocked keeps f as proxy's directory, making room first.
func (c *Client) storeFetchedLocked(proxy peer.ID, f fetched) {
	if _, ok := c.fetched[proxy]; !ok && len(c.fetched) >= maxProxies {
		for p := range c.fetched {
			delete(c.fetched, p) // an arbitrary one: it is fetched again if used
			break
		}
	}
	c.fetched[proxy] = f
}

// Reset drops every verdict and directory the client holds: the
// network's policy changed, and workers verified under the old one must
// be verified again under the new one (the next Workers call fetches and
// verifies each proxy's directory anew).
func (c *Client) Reset() {
	c.mu.Lock()
	clear(c.verdicts)
	clear(c.fetched)
	c.mu.Unlock()
}

// Forget drops proxy's directory from Workers' memory.
func (c *Client) Forget(proxy peer.ID) {
	c.mu.Lock()
	delete(c.fetched, proxy)
	c.mu.Unlock()
}

func allLive(ws []Worker, now time.Time) bool {
	for _, w := range ws {
		if !w.Verdict.Live(now) {
			return false
		}
	}
	return true
}

// Fetch reads proxy's directory and returns the workers in it whose
// evidence the client verified, with the client's verdicts. Entries that
// fail are left out (logged with the reason); a directory that is
// malformed (ErrMalformed) or refused (ErrRefused) is an error. The host
// must know how to reach proxy.
func (c *Client) Fetch(ctx context.Context, proxy peer.ID) ([]Worker, error) {
	d, err := c.fetch(ctx, proxy)
	if err != nil {
		return nil, err
	}
	return c.Verify(ctx, proxy, d), nil
}

func (c *Client) fetch(ctx context.Context, proxy peer.ID) (*Directory, error) {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	s, err := c.h.NewStream(ctx, proxy, c.proto)
	if err != nil {
		return nil, fmt.Errorf("opening directory stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return nil, fmt.Errorf("closing directory request: %w", err)
	}
	fr := p2p.NewFrameReader(s, MaxSize, 0)
	defer fr.Release()
	typ, payload, err := fr.Next()
	if err != nil {
		s.Reset()
		if errors.Is(err, p2p.ErrFrameTooLarge) {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil, fmt.Errorf("reading directory: %w", err)
	}
	switch typ {
	case frameRefused:
		s.Reset()
		return nil, fmt.Errorf("%w: %.64q", ErrRefused, payload)
	case frameDirectory:
	default:
		s.Reset()
		return nil, fmt.Errorf("%w: frame type %d", ErrMalformed, typ)
	}
	d, err := Decode(payload, c.cfg.Network)
	if err != nil {
		s.Reset()
		return nil, err
	}
	s.Close()
	return d, nil
}

// Verify checks every entry of d, a directory proxy served, and returns
// those whose evidence verifies, in d's order.
func (c *Client) Verify(ctx context.Context, proxy peer.ID, d *Directory) []Worker {
	now := c.cfg.Now()
	out := make([]Worker, 0, len(d.Workers))
	for i := range d.Workers {
		e := &d.Workers[i]
		v, err := c.verify(ctx, e, now)
		if err != nil {
			c.log.Info("directory entry failed verification", "proxy", proxy, "peer", e.Peer, "err", err)
			continue
		}
		if e.Tier != 0 && e.Tier != v.Tier {
			c.log.Info("proxy claimed another tier for a worker", "proxy", proxy, "peer", e.Peer, "claimed", e.Tier, "tier", v.Tier)
		}
		out = append(out, Worker{Peer: e.Peer, Verdict: v, Models: e.Models})
	}
	return out
}

// verify returns e's verdict, from the cache while it is live.
func (c *Client) verify(ctx context.Context, e *Entry, now time.Time) (attest.Verdict, error) {
	if e.Evidence == nil {
		return attest.Verdict{}, fmt.Errorf("%w: no evidence", attest.ErrFormat)
	}
	key := verdictKey{e.Peer, e.digest}
	if e.digest == ([sha256.Size]byte{}) {
		key.digest = digestOf(e.Evidence)
	}
	c.mu.Lock()
	v, ok := c.verdicts[key]
	c.mu.Unlock()
	if ok && v.Live(now) {
		return v, nil
	}
	pub, err := e.Peer.ExtractPublicKey()
	if err != nil {
		return attest.Verdict{}, fmt.Errorf("peer ID carries no public key: %w", err)
	}
	v, err = c.validator.Validate(ctx, e.Evidence, pub, now)
	if err != nil {
		return attest.Verdict{}, err
	}
	if !v.Live(now) {
		return attest.Verdict{}, fmt.Errorf("%w: verdict not live", attest.ErrExpired)
	}
	c.mu.Lock()
	c.storeLocked(key, v, now)
	c.mu.Unlock()
	return v, nil
}

// storeLocked caches v, first dropping expired verdicts when the cache is
// full, then, if it is still full, an arbitrary one.
func (c *Client) storeLocked(key verdictKey, v attest.Verdict, now time.Time) {
	if _, ok := c.verdicts[key]; !ok && len(c.verdicts) >= c.cfg.MaxVerdicts {
		for k, old := range c.verdicts {
			if !old.Live(now) {
				delete(c.verdicts, k)
			}
		}
		for k := range c.verdicts {
			if len(c.verdicts) < c.cfg.MaxVerdicts {
				break
			}
			delete(c.verdicts, k)
		}
	}
	c.verdicts[key] = v
}

// digestOf hashes evidence that did not come through Decode.
func digestOf(ev *attest.Evidence) [sha256.Size]byte {
	b, err := json.Marshal(ev)
	if err != nil {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256(b)
}
