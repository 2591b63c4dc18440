package testnet_test

// Attacks on running nodes, each shown to be bounded by a limit; the limits
// and the tests are tabled in docs/hardening.md.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/discovery"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// intruder is a libp2p peer the test drives by hand. It passes dev
// attestation, as any peer of a local network can (TestUnattestedPeerRefused
// covers one that does not), so its bytes reach the decoders behind the
// attestation check.
type intruder struct {
	h  host.Host
	hs *attest.Handshaker
	sv *p2p.Service
}

func newIntruder(t *testing.T) *intruder {
	t.Helper()
	return newIntruderKeys(t, nil)
}

// newIntruderKeys is an intruder whose evidence binds the sealing keys of
// keys (nil: none), as a worker's does.
func newIntruderKeys(t *testing.T, keys attest.SealKeys) *intruder {
	t.Helper()
	key, _ := p2ptest.NewKey(t)
	cfg := p2p.DefaultHostConfig()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := p2p.NewHost(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	sv := p2p.NewService(h, log)
	hs := attest.NewHandshaker(h, dev.Issuer{}, keys, attest.NewKinds(map[string]attest.Validator{dev.Kind: dev.Validator{}}),
		attest.Config{Network: "local"}, log)
	hs.Register(sv)
	t.Cleanup(func() {
		sv.Close()
		h.Close()
	})
	return &intruder{h: h, hs: hs, sv: sv}
}

// intrudedNet starts a worker, a proxy and a client, and an intruder
// attested to the worker and the proxy.
func intrudedNet(t *testing.T) (w, p, client *node.Node, in *intruder) {
	t.Helper()
	h := testnet.New(t)
	w, p, client = h.AddWorker(), h.AddProxy(), h.AddClient()
	in = newIntruder(t)
	in.attest(t, w)
	in.attest(t, p)
	return w, p, client, in
}

// attest connects to nd and runs the attestation handshake with it.
func (in *intruder) attest(t *testing.T, nd *node.Node) {
	t.Helper()
	infos, err := discovery.ParseAddrs(nd.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := in.h.Connect(ctx, infos[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := in.hs.Attest(ctx, nd.ID()); err != nil {
		t.Fatalf("attesting %s: %v", nd.ID(), err)
	}
}

// addrs are the intruder's addresses with /p2p/<id>, for a proxy's
// proxy.workers.
func (in *intruder) addrs() []string {
	var out []string
	for _, a := range in.h.Addrs() {
		out = append(out, a.String()+"/p2p/"+in.h.ID().String())
	}
	return out
}

func proto(name string) protocol.ID {
	switch name {
	case inference.ProtocolName:
		return p2p.ProtocolID("local", name, inference.ProtocolVersion)
	case inference.CatalogProtocolName:
		return p2p.ProtocolID("local", name, inference.CatalogProtocolVersion)
	case attest.ProtocolName:
		return p2p.ProtocolID("local", name, attest.ProtocolVersion)
	}
	return p2p.ProtocolID("local", name, "1") // pay
}

// ask sends one well-formed request on a new inference stream to p and
// reads the answer to its End: the intruder's connection still works.
func (in *intruder) ask(t *testing.T, p peer.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := in.h.NewStream(ctx, p, proto(inference.ProtocolName))
	if err != nil {
		t.Fatalf("a new stream after the attack: %v", err)
	}
	defer s.Reset()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	req := &inference.Request{ID: "after", Kind: inference.KindChat, Model: "sim-small",
		Body: []byte(`{"model":"sim-small","max_tokens":2,"messages":[{"role":"user","content":"still there?"}]}`)}
	if err := inference.WriteRequest(s, req); err != nil {
		t.Fatal(err)
	}
	rr := inference.NewResponseReader(s)
	for {
		ev, err := rr.Next()
		if err != nil {
			t.Fatalf("a request after the attack: %v", err)
		}
		switch ev.Type {
		case inference.FrameEnd:
			return
		case inference.FrameError:
			t.Fatalf("a request after the attack: %+v", ev.Err)
		}
	}
}

// chatOK sends one request through client and fails the test unless it is
// answered; it returns how long the answer took.
func chatOK(t *testing.T, client *node.Node, prompt string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c := sdk(client)
	resp, err := c.Chat.Completions.New(ctx, chatParams("sim-small", prompt, 3))
	if err != nil {
		t.Fatalf("a normal request: %v", err)
	}
	if resp.Usage.CompletionTokens != 3 {
		t.Fatalf("a normal request: usage %+v", resp.Usage)
	}
	return time.Since(start)
}

// TestSlowloris: connections that send a request's headers one byte at a
// time are closed once the client's ReadHeaderTimeout (10 s, see
// gateway.NewHTTPServer) passes, and an app is answered meanwhile. The
// body, which that timeout does not cover, has its own: TestSlowBody in
// inference/gateway.
func TestSlowloris(t *testing.T) {
	const conns, headerTimeout = 64, 10 * time.Second
	h := testnet.New(t)
	h.AddWorker()
	h.AddProxy()
	client := h.AddClient()

	var closed atomic.Int64
	closedAt := make(chan time.Duration, conns)
	var wg sync.WaitGroup
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
		wg.Wait()
	}()
	start := time.Now()
	for range conns {
		c, err := net.Dial("tcp", client.APIAddr())
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		wg.Go(func() {
			io.Copy(io.Discard, c) // until the server closes the connection
			closed.Add(1)
			closedAt <- time.Since(start)
		})
	}
	// One byte every 100 ms on each connection: a request line, then a
	// header that never ends.
	stop := make(chan struct{})
	wg.Go(func() {
		const head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slowloris: "
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		live := make([]bool, len(open))
		for i := range live {
			live[i] = true
		}
		for i := 0; ; i++ {
			b := byte('a')
			if i < len(head) {
				b = head[i]
			}
			for j, c := range open {
				if live[j] {
					if _, err := c.Write([]byte{b}); err != nil {
						live[j] = false
					}
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	defer close(stop)

	took := chatOK(t, client, "served while slowloris holds 64 connections")
	if n := closed.Load(); n != 0 && time.Since(start) < headerTimeout-time.Second {
		t.Fatalf("%d slowloris connections closed before the header timeout", n)
	}
	held := conns - closed.Load()

	var first, last time.Duration
	deadline := time.After(headerTimeout + 5*time.Second - time.Since(start))
	for i := range conns {
		select {
		case d := <-closedAt:
			if i == 0 {
				first = d
			}
			last = d
		case <-deadline:
			t.Fatalf("%d of %d slowloris connections still open %s after they started (ReadHeaderTimeout %s)",
				conns-closed.Load(), conns, time.Since(start).Round(time.Millisecond), headerTimeout)
		}
	}
	t.Logf("a normal request took %s while %d slowloris connections were held; all %d closed between %s and %s",
		took.Round(time.Millisecond), held, conns, first.Round(time.Millisecond), last.Round(time.Millisecond))
}

// TestOversizedHTTP: an app's headers over MaxHeaderBytes (64 KiB) get 431,
// and a body that claims 1 GiB, or is chunked without end, gets 413 after
// the 4 MiB cap, without the server reading the rest. (TestErrors checks
// a body just over the cap.)
func TestOversizedHTTP(t *testing.T) {
	h := testnet.New(t)
	h.AddWorker()
	h.AddProxy()
	client := h.AddClient()

	tests := []struct {
		name   string
		head   string
		body   func(w io.Writer) // writes until the server stops reading
		status string
	}{
		{"headers of 1 MiB", "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ", func(w io.Writer) {
			w.Write(bytes.Repeat([]byte("a"), 1<<20))
			io.WriteString(w, "\r\n\r\n")
		}, "431"},
		{"Content-Length of 1 GiB", "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1073741824\r\n\r\n", endless, "413"},
		{"chunked without end", "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", func(w io.Writer) {
			chunk := append([]byte("10000\r\n"), append(bytes.Repeat([]byte("a"), 1<<16), "\r\n"...)...)
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, "413"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", client.APIAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			cw := &countingWriter{w: c}
			done := make(chan struct{})
			go func() {
				defer close(done)
				if _, err := io.WriteString(cw, tt.head); err == nil {
					tt.body(cw)
				}
			}()
			status, err := bufio.NewReader(c).ReadString('\n')
			c.Close() // stops the writer
			<-done
			if err != nil {
				t.Fatalf("no answer: %v (sent %d bytes)", err, cw.n.Load())
			}
			if !strings.Contains(status, " "+tt.status+" ") {
				t.Fatalf("got %q, want %s", strings.TrimSpace(status), tt.status)
			}
			t.Logf("%s after the app had sent %.1f MiB", strings.TrimSpace(status), float64(cw.n.Load())/(1<<20))
		})
	}
	chatOK(t, client, "still serving")
}

// endless writes until the writer fails.
func endless(w io.Writer) {
	b := bytes.Repeat([]byte("a"), 64<<10)
	for {
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// streamOutcome is how a node answered a stream the intruder misused.
func streamOutcome(s network.Stream) string {
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	fr := p2p.NewFrameReader(s, 1<<20, 0)
	defer fr.Release()
	typ, payload, err := fr.Next()
	switch {
	case errors.Is(err, network.ErrReset):
		return "reset"
	case errors.Is(err, io.EOF):
		return "closed"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "hung"
	case err != nil:
		return "error: " + err.Error()
	}
	if s.Protocol() == proto(inference.ProtocolName) && typ == inference.FrameError {
		ev, err := inference.DecodeEvent(typ, payload)
		if err != nil {
			return "malformed error"
		}
		return ev.Err.Code.String()
	}
	if s.Protocol() == proto(inference.CatalogProtocolName) && typ == 1 {
		if _, err := inference.DecodeCatalog(payload); err == nil {
			return "catalog"
		}
	}
	return fmt.Sprintf("frame type %d", typ)
}

// TestOversizedFrames: a frame header that claims more than a protocol's
// cap (inference 4 MiB, attest 256 KiB) resets the stream before anything
// is allocated for it, on a worker and a proxy; the node keeps serving,
// the intruder's own connection included. The frame reader's check is
// TestFrameCapCheckedBeforeAllocation in p2p; a worker that sends
// oversized frames is in TestRogueWorker.
func TestOversizedFrames(t *testing.T) {
	w, p, client, in := intrudedNet(t)

	header := func(n uint64) []byte {
		return append(binary.AppendUvarint(nil, n), p2p.FrameVersion, inference.FrameRequest)
	}
	claims := []struct {
		name  string
		proto string
		n     uint64 // the frame length claimed: payload + 2
	}{
		{"inference, one byte over the cap", inference.ProtocolName, inference.MaxRequestFrame + 3},
		{"inference, 1 GiB", inference.ProtocolName, 1<<30 + 2},
		{"inference, 2^62", inference.ProtocolName, 1 << 62},
		{"attest, 1 GiB", attest.ProtocolName, 1<<30 + 2},
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var claimed uint64
	var slowest time.Duration
	for _, target := range []*node.Node{w, p} {
		for _, c := range claims {
			s, err := in.h.NewStream(t.Context(), target.ID(), proto(c.proto))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if _, err := s.Write(header(c.n)); err != nil {
				t.Fatal(err)
			}
			got := streamOutcome(s)
			s.Reset()
			if got != "reset" {
				t.Errorf("%s, %s: %s, want the stream reset", target.Role(), c.name, got)
			}
			claimed += c.n
			slowest = max(slowest, time.Since(start))
		}
	}
	runtime.ReadMemStats(&after)
	grew := after.TotalAlloc - before.TotalAlloc
	if grew > 64<<20 {
		t.Errorf("the process allocated %d MiB while refusing the frames", grew>>20)
	}
	in.ask(t, w.ID())
	in.ask(t, p.ID())
	chatOK(t, client, "still serving")
	t.Logf("%d frames claiming %.3g bytes in all: each stream reset within %s; the whole process allocated %.1f MiB meanwhile",
		2*len(claims), float64(claimed), slowest.Round(time.Microsecond), float64(grew)/(1<<20))
}

// TestProtocolConfusion: garbage, an HTTP request, a TLS ClientHello, a
// frame of the wrong type and an empty stream, on the inference, catalog
// and attestation protocols of a worker and a proxy, from an attested
// peer. Each stream is refused at once (reset, or bad_request for a
// well-framed message that is not a request); the catalog protocol reads
// nothing and answers its catalog. The nodes keep serving, the intruder
// included. The pay protocol is TestPayProtocolConfusion; fuzz targets
// cover the decoders (make fuzz).
func TestProtocolConfusion(t *testing.T) {
	w, p, client, in := intrudedNet(t)

	httpReq := "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:10000\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	clientHello := append([]byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03}, bytes.Repeat([]byte{0x42}, 64)...)
	payloads := []struct {
		name  string
		bytes []byte
	}{
		{"garbage", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 16)},
		{"an HTTP request", []byte(httpReq)},
		{"a TLS ClientHello", clientHello},
		{"a frame of the wrong type", p2p.AppendFrame(nil, 9, []byte(`{"kind":"dev"}`))},
		{"nothing, then close", nil},
	}
	want := map[string][]string{ // per protocol, in the order of payloads
		inference.ProtocolName:        {"reset", "reset", "reset", "bad_request", "closed"},
		inference.CatalogProtocolName: {"catalog", "catalog", "catalog", "catalog", "catalog"},
		attest.ProtocolName:           {"reset", "reset", "reset", "reset", "reset"},
	}
	var slowest time.Duration
	n := 0
	for _, target := range []*node.Node{w, p} {
		for _, pr := range []string{inference.ProtocolName, inference.CatalogProtocolName, attest.ProtocolName} {
			for i, pl := range payloads {
				s, err := in.h.NewStream(t.Context(), target.ID(), proto(pr))
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if len(pl.bytes) > 0 {
					s.Write(pl.bytes)
				} else {
					s.CloseWrite()
				}
				got := streamOutcome(s)
				s.Reset()
				slowest = max(slowest, time.Since(start))
				n++
				if got != want[pr][i] {
					t.Errorf("%s %s, %s: %s, want %s", target.Role(), pr, pl.name, got, want[pr][i])
				}
			}
		}
	}
	for _, target := range []*node.Node{w, p} {
		if in.h.Network().Connectedness(target.ID()) != network.Connected {
			t.Errorf("the %s dropped the intruder's connection, not just its streams", target.Role())
		}
	}
	in.ask(t, w.ID())
	in.ask(t, p.ID())
	chatOK(t, client, "still serving")
	t.Logf("%d misused streams, each answered within %s; both nodes still serve", n, slowest.Round(time.Microsecond))
}

// TestPayProtocolConfusion: on a proxy's pay protocol, whose messages are
// a 4-byte length and JSON, a length over 512 KiB (garbage, HTTP and TLS
// all read as one) resets the stream unread, and a well-framed message
// that is not a request is refused with code "refused".
func TestPayProtocolConfusion(t *testing.T) {
	h := testnet.New(t, testnet.WithPayments("sim-small"))
	p := h.AddProxy()
	h.AddWorker()
	client := h.AddClient()
	in := newIntruder(t)
	in.attest(t, p)

	framed := func(b string) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }
	tests := []struct {
		name  string
		bytes []byte
		want  string // "reset", or the reply's code
	}{
		{"garbage", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 16), "reset"},
		{"an HTTP request", []byte("POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"), "reset"},
		{"a TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03}, "reset"},
		{"not JSON", framed("hello"), "refused"},
		{"an unknown type", framed(`{"type":"gimme"}`), "refused"},
		{"an unknown field", framed(`{"type":"hello","admin":true}`), "refused"},
		{"a sync of no channel", framed(`{"type":"sync","channel":"nonsense"}`), "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := in.h.NewStream(t.Context(), p.ID(), proto("pay"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Reset()
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := s.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			var n [4]byte
			_, err = io.ReadFull(s, n[:])
			got := "reset"
			if err == nil {
				b := make([]byte, min(binary.BigEndian.Uint32(n[:]), 1<<20))
				if _, err := io.ReadFull(s, b); err != nil {
					t.Fatal(err)
				}
				var reply struct {
					Code string `json:"code"`
				}
				json.Unmarshal(b, &reply)
				got = reply.Code
			} else if !errors.Is(err, network.ErrReset) {
				got = err.Error()
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	chatOK(t, client, "still serving, and paying")
}

// TestStreamExhaustion: an intruder opening 256 inference streams to a
// proxy whose p2p.max_streams_per_peer is 32 gets at most 32; the
// resource manager resets the rest as they arrive, and another client is
// served meanwhile. TestStreamsPerPeerLimit in p2p counts the limit
// exactly, with the host-wide one.
func TestStreamExhaustion(t *testing.T) {
	const limit, opened = 32, 256
	h := testnet.New(t)
	h.AddWorker()
	p := h.AddProxy(func(c *config.Config) { c.P2P.MaxStreamsPerPeer = limit })
	client := h.AddClient()
	in := newIntruder(t)
	in.attest(t, p)

	var resets atomic.Int64
	var wg sync.WaitGroup
	var streams []network.Stream
	defer func() {
		for _, s := range streams {
			s.Reset()
		}
		wg.Wait()
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for range opened {
		s, err := in.h.NewStream(ctx, p.ID(), proto(inference.ProtocolName))
		if err != nil {
			resets.Add(1)
			continue
		}
		streams = append(streams, s)
		// Negotiation is lazy: the first read sends it, and then waits
		// for a request that never comes, or sees the reset.
		wg.Go(func() {
			if _, err := s.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				resets.Add(1)
			}
		})
	}
	p2ptest.Eventually(t, fmt.Sprintf("the proxy to refuse all but %d of %d streams", limit, opened), func() bool {
		return resets.Load() >= opened-limit
	})
	took := chatOK(t, client, "served while an intruder holds its streams")
	held := opened - resets.Load()
	if held < limit/2 {
		t.Errorf("the intruder held only %d streams: refused for another reason than the limit?", held)
	}
	t.Logf("%d streams opened, %d reset, %d held (max_streams_per_peer %d); another client's request took %s",
		opened, resets.Load(), held, limit, took.Round(time.Millisecond))
}

// rogue is a worker that is not a node: it attests, serves a catalog and
// then answers each model's requests the way its behaviour says.
type rogue struct {
	*intruder
	key   crypto.PrivKey
	other crypto.PrivKey // not the rogue's: for forged signatures
	keys  *seal.Keyring  // its sealing keys: clients seal requests to it
}

// rogueModels are the rogue worker's models, one behaviour each.
var rogueModels = []string{"forged", "honest", "content", "tokens", "utf8", "huge-tokens", "frame-type", "oversized", "silent", "stall"}

func newRogue(t *testing.T) *rogue {
	t.Helper()
	keys, err := seal.NewKeyring(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := newIntruderKeys(t, keys)
	other, _ := p2ptest.NewKey(t)
	r := &rogue{intruder: in, key: in.h.Peerstore().PrivKey(in.h.ID()), other: other, keys: keys}
	var models []inference.Model
	for _, m := range rogueModels {
		models = append(models, inference.Model{ID: m})
	}
	in.sv.Handle(proto(inference.CatalogProtocolName), 10*time.Second, func(_ context.Context, s network.Stream) error {
		return inference.ServeCatalog(s, &inference.Catalog{Models: models, MaxConcurrent: 16})
	})
	in.sv.Handle(proto(inference.ProtocolName), 0, func(ctx context.Context, s network.Stream) error {
		proxy := s.Conn().RemotePeer()
		return inference.ServeRequests(ctx, s, inference.DefaultServeConfig(), func() *inference.Error { return nil },
			func(ctx context.Context, req *inference.Request, fw *p2p.FrameWriter) error {
				return r.answer(ctx, s, proxy, req, fw)
			})
	})
	return r
}

// rogueText is what every answer of the rogue streams, unless its
// behaviour says otherwise.
const rogueText = "a fine answer"

// answer answers req as the rogue's behaviour for its model says. It
// opens sealed requests and seals what it streams, as a worker must for
// a client to read it: its misbehaviour is in what it seals and signs.
func (r *rogue) answer(ctx context.Context, s network.Stream, proxy peer.ID, req *inference.Request, fw *p2p.FrameWriter) error {
	var sealer *seal.ResponseSealer
	if req.Sealed {
		sr, err := seal.DecodeSealedRequest(req.Body)
		if err != nil {
			return err
		}
		head := *req
		head.Body = nil
		header, err := inference.AppendHeader(nil, &head)
		if err != nil {
			return err
		}
		body, rs, err := r.keys.OpenRequest(sr, seal.Binding{Network: "local", Peer: r.h.ID().String()}, header)
		if err != nil {
			return err
		}
		opened := *req
		opened.Body, opened.Sealed = body, false
		req, sealer = &opened, rs
	}
	text, signed, key := rogueText, rogueText, r.key
	usage := inference.Usage{Tokens: payments.Tokens{Prompt: 4, Completion: 3}}
	receiptTokens := usage
	switch req.Model {
	case "forged":
		key = r.other
	case "content":
		signed = "a different answer"
	case "tokens":
		receiptTokens.Completion = 300
	case "utf8":
		text = "bad \xff\xfe bytes \xc3"
		signed = text
	case "huge-tokens":
		usage.Prompt = 1 << 41 // over the End decoder's 2^40
		receiptTokens = usage
	case "frame-type":
		if err := fw.Write(9, []byte("surprise")); err != nil {
			return err
		}
		return fw.Flush()
	case "oversized":
		if _, err := s.Write(append(binary.AppendUvarint(nil, 1<<30+2), p2p.FrameVersion, inference.FrameChunk)); err != nil {
			return err
		}
		<-ctx.Done() // until the proxy resets the stream
		return ctx.Err()
	case "silent":
		<-ctx.Done()
		return ctx.Err()
	case "stall":
		if err := fw.Write(inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: "and then"})); err != nil {
			return err
		}
		if err := fw.Flush(); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
	receipt, err := payments.Sign(&payments.Receipt{
		RequestID: req.ID, RequestHash: payments.Hash(req.Body), ResponseHash: payments.Hash([]byte(signed)),
		Model:  req.Model,
		Tokens: payments.Tokens{Prompt: receiptTokens.Prompt, Completion: receiptTokens.Completion},
		Price:  payments.Price{Prompt: 100_000_000, Completion: 400_000_000},
		Worker: r.h.ID(), Proxy: proxy, Time: time.Now().UnixMilli(),
	}, key)
	if err != nil {
		return err
	}
	typ, chunk := inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: text})
	if sealer != nil {
		typ = inference.FrameRecord
		if chunk, err = sealer.Seal(inference.AppendSealedChunk(nil, inference.Chunk{Text: text})); err != nil {
			return err
		}
	}
	if err := fw.Write(typ, chunk); err != nil {
		return err
	}
	if sealer != nil {
		end, err := sealer.End()
		if err != nil {
			return err
		}
		if err := fw.Write(inference.FrameRecord, end); err != nil {
			return err
		}
	}
	if err := inference.WriteEnd(fw, &inference.End{Usage: usage, FinishReason: "stop", Worker: r.h.ID().String(), Receipt: receipt}); err != nil {
		return err
	}
	return fw.Flush()
}

// failures is how many attempts the proxy counts the worker w failed.
func failures(t *testing.T, p *node.Node, w peer.ID) int {
	t.Helper()
	for _, ws := range p.Status(t.Context()).Workers {
		if ws.Peer == w.String() {
			return ws.Failures
		}
	}
	t.Fatalf("the proxy does not know the worker %s", w)
	return 0
}

// rogueNet is a proxy routing to a rogue worker, and a client.
func rogueNet(t *testing.T) (*rogue, *node.Node, *node.Node) {
	t.Helper()
	r := newRogue(t)
	h := testnet.New(t)
	p := h.AddProxy(func(c *config.Config) {
		c.Proxy.Workers = r.addrs()
		c.Proxy.FirstChunkTimeout = config.Duration(time.Second)
		c.Proxy.ChunkTimeout = config.Duration(time.Second)
	})
	return r, p, h.AddClient()
}

// TestRogueWorker: a worker that forges or mismatches its receipts, streams
// invalid UTF-8, claims absurd token counts, sends frames of an unknown
// type or over the cap, or never answers. The client never hangs: it gets
// 502 receipt_invalid or engine_error, 504 after proxy.first_chunk_timeout,
// or, for invalid UTF-8 the worker signed for, an answer in valid JSON
// with U+FFFD; and the proxy counts every misbehaviour as the worker
// failing. The checks themselves are unit-tested in inference/router
// (TestReceipts) and inference/gateway (TestReceiptCheck).
func TestRogueWorker(t *testing.T) {
	r, p, client := rogueNet(t)
	tests := []struct {
		model  string // the behaviour
		status int
		code   string
		failed bool // the proxy counts the worker failed
	}{
		// First: the client verifies the signature of a worker's first
		// receipt and every 16th after it (the proxy, every receipt).
		{"forged", 502, "receipt_invalid", true},
		{"honest", 200, "", false},
		// A receipt for other content than the sealed answer: only the
		// client, which opens the answer, can tell.
		{"content", 502, "receipt_invalid", false},
		{"tokens", 502, "receipt_invalid", true},
		{"utf8", 200, "", false},
		{"huge-tokens", 502, "engine_error", true},
		{"frame-type", 502, "engine_error", true},
		{"oversized", 502, "engine_error", true},
		{"silent", 504, "upstream_timeout", true},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			before := failures(t, p, r.h.ID())
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, tt.model)
			req, _ := http.NewRequestWithContext(ctx, "POST", testnet.BaseURL(client)+"/chat/completions", strings.NewReader(body))
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("no answer within 10 s: %v", err)
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			var out struct {
				Choices []struct {
					Message struct {
						Content string `json:"content"`
					} `json:"message"`
				} `json:"choices"`
				Error struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatalf("the answer is not JSON: %v: %q", err, raw)
			}
			if resp.StatusCode != tt.status || out.Error.Code != tt.code {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, raw, tt.status, tt.code)
			}
			if tt.status == 200 {
				text := out.Choices[0].Message.Content
				if tt.model == "utf8" && (!utf8.ValidString(text) || !strings.Contains(text, "\ufffd")) {
					t.Errorf("content %q: want valid UTF-8 with U+FFFD for the bad bytes", text)
				}
				if tt.model == "honest" && text != rogueText {
					t.Errorf("content %q, want %q", text, rogueText)
				}
			} else if bytes.Contains(raw, []byte(rogueText)) {
				t.Errorf("a refused answer reached the app: %s", raw)
			}
			if tt.failed {
				p2ptest.Eventually(t, "the proxy to count the worker failed", func() bool { return failures(t, p, r.h.ID()) > before })
			} else if n := failures(t, p, r.h.ID()); n != before {
				t.Errorf("the proxy counted %d failures for an answer that was fine", n-before)
			}
			t.Logf("%d %s in %s", resp.StatusCode, tt.code, took.Round(time.Millisecond))
		})
	}
}

// TestWorkerStallsMidStream: a worker that sends a chunk and then nothing
// is cut off once proxy.chunk_timeout (1 s here, a minute by default)
// passes without a frame; the app gets an error, not a hang.
func TestWorkerStallsMidStream(t *testing.T) {
	_, _, client := rogueNet(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c := sdk(client)
	_, err := c.Chat.Completions.New(ctx, chatParams("stall", "hi", 3))
	if ctx.Err() != nil {
		t.Fatalf("the request was still waiting after 10 s: %v", err)
	}
	if err == nil {
		t.Fatal("a stalled answer was answered")
	}
}
