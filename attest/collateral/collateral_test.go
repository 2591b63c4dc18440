package collateral_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	tdxtesting "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/attest/collateral"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/attest/tdx/tdxtest"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const net = "local"

// realNow is a time at which go-tdx-guest's sample quote and collateral,
// Intel-signed, are valid.
var realNow = time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)

// tcbMismatch is where the sample quote fails once collateral was had and
// verified: its TCB is older than the sample TCB info's levels (see
// attest/tdx's collateral tests).
const tcbMismatch = "no matching TCB level found"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func noPolicy() tdx.Policy { return tdx.Policy{} }

// countingCache is a collateral.Cache that counts lookups.
type countingCache struct {
	collateral.Cache
	mu     sync.Mutex // guards looked
	looked []string
}

func (c *countingCache) Cached(url string) (map[string][]string, []byte, bool) {
	c.mu.Lock()
	c.looked = append(c.looked, url)
	c.mu.Unlock()
	return c.Cache.Cached(url)
}

func (c *countingCache) lookups() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.looked)
}

// emptyCache holds nothing.
type emptyCache struct{}

func (emptyCache) Cached(string) (map[string][]string, []byte, bool) { return nil, nil, false }

// serve starts a host serving cache's collateral.
func serve(t *testing.T, cache collateral.Cache) host.Host {
	t.Helper()
	h := p2ptest.NewHost(t)
	sv := p2p.NewService(h, logtest.Discard)
	collateral.NewServer(net, cache, logtest.Discard).Register(sv)
	t.Cleanup(sv.Close)
	return h
}

// newProxy is a proxy whose collateral cache holds go-tdx-guest's sample
// collateral, as verifying the sample quote against Intel left it.
func newProxy(t *testing.T) (host.Host, *countingCache) {
	t.Helper()
	v, err := tdx.NewValidator(tdx.Config{Policy: noPolicy, Collateral: tdx.CollateralOn, CacheDir: t.TempDir(), Getter: tdxtesting.TestGetter})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyQuote(context.Background(), testdata.RawQuote, realNow); err == nil || !strings.Contains(err.Error(), tcbMismatch) {
		t.Fatalf("proxy verifying the sample quote: %v, want the TCB mismatch", err)
	}
	cache := &countingCache{Cache: v}
	return serve(t, cache), cache
}

// newClient is a validator with an empty cache on a host connected to
// peers, reaching Intel through intel and asking peers when that fails.
func newClient(t *testing.T, intel tdx.Getter, peers ...host.Host) (*tdx.Validator, host.Host) {
	t.Helper()
	return newClientWith(t, noPolicy, intel, peers...)
}

// newClientWith is newClient with a policy.
func newClientWith(t *testing.T, policy func() tdx.Policy, intel tdx.Getter, peers ...host.Host) (*tdx.Validator, host.Host) {
	t.Helper()
	h := p2ptest.NewHost(t)
	var ids []peer.ID
	for _, p := range peers {
		p2ptest.Connect(t, h, p)
		ids = append(ids, p.ID())
	}
	g := collateral.NewGetter(net, intel, h, collateral.PeersFunc(func() []peer.ID { return ids }), logtest.New(t))
	v, err := tdx.NewValidator(tdx.Config{Policy: policy, Collateral: tdx.CollateralOn, CacheDir: t.TempDir(), Getter: g})
	if err != nil {
		t.Fatal(err)
	}
	return v, h
}

// TestRelayIntelCollateral: a client with an empty cache, Intel
// unreachable, checks a real quote against Intel's real collateral that a
// proxy relays from its cache: the check gets as far as Intel's TCB levels
// (signatures, chains and dates passed); without the relay it cannot
// start. The client caches what it was relayed.
func TestRelayIntelCollateral(t *testing.T) {
	ctx := ctxT(t)
	proxy, cache := newProxy(t)

	alone, _ := newClient(t, tdxtest.Unreachable{})
	if _, err := alone.VerifyQuote(ctx, testdata.RawQuote, realNow); !errors.Is(err, tdx.ErrCollateralUnavailable) || !errors.Is(err, tdxtest.ErrUnreachable) {
		t.Fatalf("no Intel, no peers: %v, want ErrCollateralUnavailable wrapping Intel's error", err)
	}

	client, _ := newClient(t, tdxtest.Unreachable{}, proxy)
	if _, err := client.VerifyQuote(ctx, testdata.RawQuote, realNow); !errors.Is(err, tdx.ErrCollateral) || !strings.Contains(err.Error(), tcbMismatch) {
		t.Fatalf("through the relay: %v, want ErrCollateral at the TCB check", err)
	}
	if n := cache.lookups(); n != 4 {
		t.Fatalf("the proxy was asked %d times, want 4", n)
	}
	for u, want := range tdxtesting.TestGetter.Responses {
		if _, b, ok := client.Cached(u); !ok || !bytes.Equal(b, want.Body) {
			t.Fatalf("client cache for %s: %v", u, ok)
		}
	}
}

// TestIntelFirst: while Intel answers, no peer is asked.
func TestIntelFirst(t *testing.T) {
	proxy, cache := newProxy(t)
	client, _ := newClient(t, tdxtesting.TestGetter, proxy)
	if _, err := client.VerifyQuote(ctxT(t), testdata.RawQuote, realNow); !strings.Contains(fmtErr(err), tcbMismatch) {
		t.Fatalf("%v, want the TCB mismatch", err)
	}
	if n := cache.lookups(); n != 0 {
		t.Fatalf("the proxy was asked %d times with Intel up", n)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestPeersInTurn: peers are asked in order until one has the answer;
// the node itself and peers past MaxAsk are not asked.
func TestPeersInTurn(t *testing.T) {
	ctx := ctxT(t)
	empty := &countingCache{Cache: emptyCache{}}
	nothing := serve(t, empty)
	proxy, cache := newProxy(t)
	h := p2ptest.NewHost(t)
	p2ptest.Connect(t, h, nothing)
	p2ptest.Connect(t, h, proxy)
	url := pcs.QeIdentityURL()

	ask := func(ids ...peer.ID) error {
		g := collateral.NewGetter(net, tdxtest.Unreachable{}, h, collateral.PeersFunc(func() []peer.ID { return ids }), logtest.Discard)
		_, b, err := g.GetContext(ctx, url)
		if err == nil && !bytes.Equal(b, tdxtesting.TestGetter.Responses[url].Body) {
			t.Fatalf("relayed %d bytes that are not Intel's answer", len(b))
		}
		return err
	}
	if err := ask(h.ID(), nothing.ID(), proxy.ID()); err != nil {
		t.Fatal(err)
	}
	if empty.lookups() != 1 || cache.lookups() != 1 {
		t.Fatalf("asked the empty peer %d times and the proxy %d, want once each", empty.lookups(), cache.lookups())
	}

	many := make([]peer.ID, collateral.MaxAsk+3)
	for i := range many {
		many[i] = nothing.ID()
	}
	err := ask(append(many, proxy.ID())...)
	if !errors.Is(err, tdxtest.ErrUnreachable) || !strings.Contains(err.Error(), "asked 8 peers") {
		t.Fatalf("%v, want Intel's error after asking MaxAsk peers", err)
	}
	if n := empty.lookups(); n != 1+collateral.MaxAsk {
		t.Fatalf("the empty peer was asked %d more times, want %d", n-1, collateral.MaxAsk)
	}
	if cache.lookups() != 1 {
		t.Fatal("asked a peer past MaxAsk")
	}
}

// rawRequest sends frames to p's collateral protocol and returns the one
// frame it answers.
func rawRequest(t *testing.T, h host.Host, p peer.ID, frames []byte) (byte, string) {
	t.Helper()
	s, err := h.NewStream(ctxT(t), p, collateral.ProtocolID(net))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write(frames); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	fr := p2p.NewFrameReader(s, 1<<20, 0)
	defer fr.Release()
	typ, payload, err := fr.Next()
	if err != nil {
		t.Fatal(err)
	}
	return typ, string(payload)
}

// TestServerRefuses: the server answers only collateral URLs, only from
// its cache, and refuses what is malformed; the cache is never consulted
// for anything but a collateral URL.
func TestServerRefuses(t *testing.T) {
	ctx := ctxT(t)
	proxy, cache := newProxy(t)
	h := p2ptest.NewHost(t)
	p2ptest.Connect(t, h, proxy)

	tests := []struct {
		name   string
		frames []byte
		typ    byte
		answer string // the refusal's code
	}{
		{"not a PCS URL", p2p.AppendFrame(nil, 1, []byte("https://example.com/")), 3, "bad-request"},
		{"metadata service", p2p.AppendFrame(nil, 1, []byte("http://169.254.169.254/latest/meta-data/")), 3, "bad-request"},
		{"PCS URL of another kind", p2p.AppendFrame(nil, 1, []byte("https://api.trustedservices.intel.com/sgx/certification/v4/pckcert")), 3, "bad-request"},
		{"empty URL", p2p.AppendFrame(nil, 1, nil), 3, "bad-request"},
		{"oversized request", p2p.AppendFrame(nil, 1, []byte(pcs.QeIdentityURL()+strings.Repeat("x", collateral.MaxURL))), 3, "bad-request"},
		{"huge frame header", []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1}, 3, "bad-request"},
		{"wrong frame type", p2p.AppendFrame(nil, 2, []byte(pcs.QeIdentityURL())), 3, "bad-request"},
		{"not cached", p2p.AppendFrame(nil, 1, []byte(pcs.TcbInfoURL("00606a000000"))), 3, "not-cached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, answer := rawRequest(t, h, proxy.ID(), tt.frames)
			if typ != tt.typ || answer != tt.answer {
				t.Fatalf("answered type %d %q, want type %d %q", typ, answer, tt.typ, tt.answer)
			}
		})
	}
	if n := cache.lookups(); n != 1 {
		t.Fatalf("%d cache lookups, want 1 (the collateral URL not cached)", n)
	}

	if _, _, err := collateral.Fetch(ctx, h, net, proxy.ID(), pcs.TcbInfoURL("00606a000000")); !errors.Is(err, collateral.ErrNotCached) {
		t.Fatalf("Fetch of an uncached URL: %v, want ErrNotCached", err)
	}
	if _, _, err := collateral.Fetch(ctx, h, net, proxy.ID(), "https://example.com/"); !errors.Is(err, collateral.ErrNotCollateralURL) || cache.lookups() != 2 {
		t.Fatalf("Fetch of another URL: %v, want ErrNotCollateralURL without asking", err)
	}
	g := collateral.NewGetter(net, tdxtesting.TestGetter, h, collateral.PeersFunc(func() []peer.ID { return []peer.ID{proxy.ID()} }), logtest.Discard)
	if _, _, err := g.Get("https://example.com/"); !errors.Is(err, collateral.ErrNotCollateralURL) {
		t.Fatalf("Getter for another URL: %v, want ErrNotCollateralURL", err)
	}
}

// TestClientRefusesBadAnswers: a peer answering beyond the limits or out
// of format gets ErrMalformed, read no further than the frame header.
func TestClientRefusesBadAnswers(t *testing.T) {
	ctx := ctxT(t)
	url := pcs.QeIdentityURL()
	tests := []struct {
		name   string
		answer []byte
		want   error
	}{
		{"frame over the cap", []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2}, collateral.ErrMalformed},
		{"header not JSON", p2p.AppendFrame(nil, 2, append([]byte{3}, "abcbody"...)), collateral.ErrMalformed},
		{"header length past the end", p2p.AppendFrame(nil, 2, []byte{100, '{', '}'}), collateral.ErrMalformed},
		{"no body", p2p.AppendFrame(nil, 2, append([]byte{2}, "{}"...)), collateral.ErrMalformed},
		{"unknown frame type", p2p.AppendFrame(nil, 9, []byte("x")), collateral.ErrMalformed},
		{"refused", p2p.AppendFrame(nil, 3, []byte("bad-request")), collateral.ErrRefused},
		{"not cached", p2p.AppendFrame(nil, 3, []byte("not-cached")), collateral.ErrNotCached},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rogue := p2ptest.NewHost(t)
			rogue.SetStreamHandler(collateral.ProtocolID(net), func(s network.Stream) {
				defer s.Close()
				s.Write(tt.answer)
			})
			h := p2ptest.NewHost(t)
			p2ptest.Connect(t, h, rogue)
			if _, _, err := collateral.Fetch(ctx, h, net, rogue.ID(), url); !errors.Is(err, tt.want) {
				t.Fatalf("%v, want %v", err, tt.want)
			}
		})
	}
}
