package testnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/directory"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// snoop is a proxy the test drives by hand, built from the same parts as
// a real one (the directory server, the inference pool and frames): it
// lists the workers it attested in its directory, sends every request to
// the worker route names, records every byte it relays in both
// directions, and changes the worker's answer as tamper says.
type snoop struct {
	*intruder
	pool    *inference.Pool
	workers []peer.ID

	mu      sync.Mutex
	record  bytes.Buffer                 // every request and answer frame relayed
	route   func(req int) peer.ID        // the worker request number req goes to
	tamper  func(frames []frame) []frame // changes an answer before the client gets it
	replays []*inference.Error           // what workers answered to requests the snoop sent twice
	replay  bool                         // send every request a second time, to the same worker
	last    []frame                      // the previous answer, as the worker sent it
	n       int                          // requests relayed
	swapKey bool                         // list workers with another sealing key than their evidence binds
	forget  bool                         // change every session reference to one the worker never made
	sent    []sentRequest                // every request relayed, in order
}

// sentRequest is what the snoop saw of one request: its ID, the size of
// its sealed body, whether its wraps named their sessions by reference,
// and the error code its worker answered with ("" for an answer).
type sentRequest struct {
	id     string
	size   int
	byRef  bool
	answer string
}

// frame is one frame of an answer.
type frame struct {
	typ byte
	p   []byte
}

// newSnoop starts a snoop proxy attested to workers, which a client can
// use by listing its addresses in client.proxies.
func newSnoop(t *testing.T, workers ...*node.Node) *snoop {
	t.Helper()
	s := &snoop{intruder: newIntruder(t)}
	s.pool = inference.NewPool(s.h, "local", inference.DefaultPoolConfig())
	t.Cleanup(s.pool.Close)
	for _, w := range workers {
		s.attest(t, w)
		s.workers = append(s.workers, w.ID())
	}
	s.route = func(int) peer.ID { return s.workers[0] }
	s.tamper = func(f []frame) []frame { return f }
	s.sv.Handle(proto(inference.CatalogProtocolName), 10*time.Second, func(_ context.Context, st network.Stream) error {
		return inference.ServeCatalog(st, &inference.Catalog{Models: []inference.Model{{ID: "sim-small", Workers: 1}}})
	})
	directory.NewServer("local", directory.Join(snoopRoutes{s}, snoopAttested{s}, noPrices{}), directory.AnyPeer{}, slog.New(slog.DiscardHandler)).Register(s.sv)
	s.sv.Handle(proto(inference.ProtocolName), 0, func(ctx context.Context, st network.Stream) error {
		return inference.ServeRequests(ctx, st, inference.DefaultServeConfig(), func() *inference.Error { return nil },
			func(ctx context.Context, req *inference.Request, fw *p2p.FrameWriter) error {
				return s.relay(ctx, req, fw)
			})
	})
	return s
}

// relay sends req to its worker and the (tampered) answer to the client.
func (s *snoop) relay(ctx context.Context, req *inference.Request, fw *p2p.FrameWriter) error {
	s.mu.Lock()
	n := s.n
	s.n++
	raw, _ := inference.AppendRequest(nil, req)
	s.record.Write(raw)
	to, replay, forget := s.route(n), s.replay, s.forget
	s.mu.Unlock()
	seen := sentRequest{id: req.ID, size: len(req.Body)}
	if req.Sealed {
		sr, err := seal.DecodeSealedRequest(req.Body)
		if err != nil {
			return err
		}
		for i := range sr.Wraps {
			if sr.Wraps[i].Ref != nil {
				seen.byRef = true
				if forget { // as if the worker had made room for other sessions
					sr.Wraps[i].Ref = bytes.Repeat([]byte{0xee}, seal.RefLen)
				}
			}
		}
		if forget {
			changed := *req
			if changed.Body, err = seal.AppendSealedRequest(nil, sr); err != nil {
				return err
			}
			req = &changed
		}
	}
	frames, err := s.call(ctx, to, req)
	if err != nil {
		return err
	}
	if len(frames) > 0 && frames[0].typ == inference.FrameError {
		if ev, err := inference.DecodeEvent(frames[0].typ, frames[0].p); err == nil {
			seen.answer = ev.Err.Code.String()
		}
	}
	s.mu.Lock()
	s.sent = append(s.sent, seen)
	s.mu.Unlock()
	if replay {
		again, err := s.call(ctx, to, req)
		if err != nil {
			return err
		}
		s.mu.Lock()
		if len(again) > 0 && again[0].typ == inference.FrameError {
			ev, _ := inference.DecodeEvent(again[0].typ, again[0].p)
			s.replays = append(s.replays, ev.Err)
		} else {
			s.replays = append(s.replays, nil) // answered twice
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	out := s.tamper(frames)
	s.last = frames
	s.mu.Unlock()
	for _, f := range out {
		if err := fw.Write(f.typ, f.p); err != nil {
			return err
		}
	}
	return fw.Flush()
}

// call sends req to worker and returns its whole answer, recorded.
func (s *snoop) call(ctx context.Context, worker peer.ID, req *inference.Request) ([]frame, error) {
	c, err := s.pool.Send(ctx, worker, req)
	if err != nil {
		return nil, err
	}
	defer c.Done()
	var out []frame
	for {
		typ, p, err := c.Next()
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.record.Write(p)
		s.mu.Unlock()
		out = append(out, frame{typ, bytes.Clone(p)})
		if typ == inference.FrameEnd || typ == inference.FrameError {
			return out, nil
		}
	}
}

// recorded is everything the snoop relayed so far.
func (s *snoop) recorded() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.record.Bytes())
}

// snoopRoutes, snoopAttested and noPrices are the snoop's directory.
type snoopRoutes struct{ s *snoop }

func (r snoopRoutes) Routable() []directory.Route {
	var out []directory.Route
	for _, w := range r.s.workers {
		out = append(out, directory.Route{Peer: w, Models: []string{"sim-small"}})
	}
	return out
}

type snoopAttested struct{ s *snoop }

func (a snoopAttested) Verified(p peer.ID) (attest.Verdict, bool) { return a.s.hs.Verified(p) }

// PeerEvidence is the worker's evidence, with another sealing key than
// the one it binds when the snoop swaps keys.
func (a snoopAttested) PeerEvidence(p peer.ID) (*attest.Evidence, bool) {
	ev, ok := a.s.hs.PeerEvidence(p)
	a.s.mu.Lock()
	swap := a.s.swapKey
	a.s.mu.Unlock()
	if !ok || !swap {
		return ev, ok
	}
	keys, err := seal.NewKeyring(nil, nil)
	if err != nil {
		return nil, false
	}
	pub, err := keys.Next(time.Unix(ev.Expiry, 0))
	if err != nil {
		return nil, false
	}
	swapped := *ev
	swapped.SealKey = pub
	return &swapped, true
}

type noPrices struct{}

func (noPrices) Price(peer.ID, string) (payments.Price, bool) { return payments.Price{}, false }

// snoopNet is two workers, a snoop proxy attested to both, and a client
// that uses only the snoop.
func snoopNet(t *testing.T) (a, b *node.Node, s *snoop, client *node.Node) {
	t.Helper()
	h := testnet.New(t)
	a = h.AddWorker()
	b = h.AddWorker(func(c *config.Config) { c.Worker.Sim.Models = []string{"other-model"} })
	s = newSnoop(t, a, b)
	s.workers = s.workers[:1] // the directory lists a: b serves another model
	client = h.AddClient(func(c *config.Config) { c.Client.Proxies = s.addrs() })
	return a, b, s, client
}

// post sends body to the client's API at path and returns the status and
// the whole answer.
func post(t *testing.T, client *node.Node, path, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", testnet.BaseURL(client)+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(raw)
}

// answerText is the text of a whole or streamed answer.
func answerText(t *testing.T, raw string) string {
	t.Helper()
	type choice struct {
		Text    string `json:"text"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	}
	var text strings.Builder
	add := func(b []byte) {
		var v struct{ Choices []choice }
		if json.Unmarshal(b, &v) != nil {
			return
		}
		for _, c := range v.Choices {
			text.WriteString(c.Text + c.Message.Content + c.Delta.Content)
		}
	}
	if !strings.HasPrefix(raw, "data: ") {
		add([]byte(raw))
		return text.String()
	}
	for line := range strings.SplitSeq(raw, "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			add([]byte(d))
		}
	}
	return text.String()
}

// A curious proxy: one that records every byte it relays, both ways,
// streamed and whole, chat and completions, sees no prompt and no answer.
func TestCuriousProxy(t *testing.T) {
	_, _, s, client := snoopNet(t)
	for _, tt := range []struct {
		name, path, body string
	}{
		{"chat whole", "/chat/completions", `{"model":"sim-small","max_tokens":12,"messages":[{"role":"user","content":"%s"}]}`},
		{"chat streamed", "/chat/completions", `{"model":"sim-small","max_tokens":12,"stream":true,"messages":[{"role":"user","content":"%s"}]}`},
		{"completion whole", "/completions", `{"model":"sim-small","max_tokens":12,"prompt":"%s"}`},
		{"completion streamed", "/completions", `{"model":"sim-small","max_tokens":12,"stream":true,"prompt":"%s"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			secret := fmt.Sprintf("the launch code is %x", time.Now().UnixNano())
			status, raw := post(t, client, tt.path, fmt.Sprintf(tt.body, secret))
			if status != 200 {
				t.Fatalf("%d %s", status, raw)
			}
			answer := answerText(t, raw)
			if len(answer) < 20 {
				t.Fatalf("answer %q: too short to look for", answer)
			}
			rec := s.recorded()
			leaks := []string{secret, "launch code", `"messages"`, `"prompt"`}
			for _, w := range strings.Fields(answer) {
				if len(w) >= 5 { // the answer comes in pieces: each word is looked for
					leaks = append(leaks, w)
				}
			}
			for _, leak := range leaks {
				if bytes.Contains(rec, []byte(leak)) {
					t.Errorf("the proxy's record holds %q", leak)
				}
			}
			if !bytes.Contains(rec, []byte("sim-small")) {
				t.Error("the record lacks the model: the proxy routes by it, so the record is not what it relayed")
			}
		})
	}
}

// A proxy that tampers with what it relays is caught: every change is
// refused with a clear error, and no app ever gets text that did not come
// from the worker.
func TestTamperingProxy(t *testing.T) {
	a, b, s, client := snoopNet(t)
	const body = `{"model":"sim-small","max_tokens":6,"messages":[{"role":"user","content":"hi"}]}`
	ok := func(t *testing.T) string {
		t.Helper()
		status, raw := post(t, client, "/chat/completions", body)
		if status != 200 {
			t.Fatalf("an untouched answer: %d %s", status, raw)
		}
		return answerText(t, raw)
	}
	genuine := ok(t)
	records := func(f []frame) []int {
		var out []int
		for i, fr := range f {
			if fr.typ == inference.FrameRecord {
				out = append(out, i)
			}
		}
		return out
	}
	set := func(route func(int) peer.ID, tamper func([]frame) []frame) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if route != nil {
			s.route = route
		}
		if tamper != nil {
			s.tamper = tamper
		}
	}
	for _, tt := range []struct {
		name   string
		tamper func([]frame) []frame
		route  func(int) peer.ID
		status int
		code   string
	}{
		{name: "drop a chunk", status: 502, code: "seal_failed", tamper: func(f []frame) []frame {
			i := records(f)[0]
			return append(f[:i:i], f[i+1:]...)
		}},
		{name: "reorder chunks", status: 502, code: "seal_failed", tamper: func(f []frame) []frame {
			r := records(f)
			f[r[0]], f[r[1]] = f[r[1]], f[r[0]]
			return f
		}},
		{name: "cut the end record", status: 502, code: "seal_failed", tamper: func(f []frame) []frame {
			r := records(f)
			i := r[len(r)-1]
			return append(f[:i:i], f[i+1:]...)
		}},
		{name: "move a chunk from another answer", status: 502, code: "seal_failed", tamper: func(f []frame) []frame {
			f[records(f)[0]] = s.last[records(s.last)[0]]
			return f
		}},
		{name: "inject text in the clear", status: 502, code: "seal_failed", tamper: func(f []frame) []frame {
			f[records(f)[0]] = frame{inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: "injected"})}
			return f
		}},
		{name: "flip a bit", status: 502, code: "seal_failed", tamper: func(f []frame) []frame {
			p := f[records(f)[1]].p
			p[len(p)-1] ^= 1
			return f
		}},
		{name: "name another worker", status: 502, code: "seal_failed", tamper: func(f []frame) []frame {
			end, err := inference.DecodeEnd(f[len(f)-1].p)
			if err != nil {
				t.Error(err)
				return f
			}
			end.Worker = b.ID().String()
			f[len(f)-1].p = inference.AppendEnd(nil, end)
			return f
		}},
		{name: "route outside the candidates", status: 503, code: "not_a_candidate", route: func(int) peer.ID { return b.ID() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set(func(int) peer.ID { return a.ID() }, func(f []frame) []frame { return f })
			ok(t) // s.last is a whole answer
			set(tt.route, tt.tamper)
			status, raw := post(t, client, "/chat/completions", body)
			if status != tt.status || !strings.Contains(raw, `"code":"`+tt.code+`"`) {
				t.Fatalf("got %d %s, want %d %s", status, raw, tt.status, tt.code)
			}
			if strings.Contains(raw, "injected") || strings.Contains(raw, genuine) || answerText(t, raw) != "" {
				t.Errorf("text reached the app: %s", raw)
			}
		})
	}
	set(func(int) peer.ID { return a.ID() }, func(f []frame) []frame { return f })

	// The sealing key the directory lists is not the one the evidence
	// binds: the client verifies no worker, and seals to none.
	t.Run("swap the sealing key", func(t *testing.T) {
		s.mu.Lock()
		s.swapKey = true
		n := s.n
		s.mu.Unlock()
		defer func() { s.mu.Lock(); s.swapKey = false; s.mu.Unlock() }()
		// The client's copy of the directory is fresh for a few seconds:
		// the refusal comes once it reads the swapped one.
		deadline := time.Now().Add(15 * time.Second)
		for {
			status, raw := post(t, client, "/chat/completions", body)
			if status != 200 {
				if !strings.Contains(raw, "verified") {
					t.Errorf("got %d %s, want an error saying no verified worker serves it", status, raw)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the client kept sealing to a swapped key's worker")
			}
			n++
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.n != n {
			t.Errorf("the client sent %d requests sealed to a swapped key", s.n-n)
		}
	})
}

// A proxy that replays a sealed request to the worker that answered it
// gets a refusal: the worker runs each sealed request once.
func TestReplayedRequest(t *testing.T) {
	_, _, s, client := snoopNet(t)
	s.mu.Lock()
	s.replay = true
	s.mu.Unlock()
	status, raw := post(t, client, "/chat/completions", `{"model":"sim-small","max_tokens":4,"messages":[{"role":"user","content":"once"}]}`)
	if status != 200 {
		t.Fatalf("%d %s", status, raw)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.replays) != 1 || s.replays[0] == nil || s.replays[0].Code != inference.CodeSealFailed || !strings.Contains(s.replays[0].Message, "replayed") {
		t.Fatalf("the worker answered the replay with %v, want seal_failed naming the replay", s.replays)
	}
}

// A session's requests carry its encapsulated key (1,120 bytes) until the
// worker has answered through it, and a 32-byte reference after. A worker
// that no longer holds the session answers seal_session_unknown, and the
// client sends the request again with the key: the app sees only its
// answer.
func TestSessionReference(t *testing.T) {
	_, _, s, client := snoopNet(t)
	const body = `{"model":"sim-small","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
	for range 2 {
		if status, raw := post(t, client, "/chat/completions", body); status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
	}
	s.mu.Lock()
	s.forget = true
	s.mu.Unlock()
	if status, raw := post(t, client, "/chat/completions", body); status != 200 {
		t.Fatalf("a request whose session the worker forgot: %d %s, want it sent again and answered", status, raw)
	}
	s.mu.Lock()
	sent := slices.Clone(s.sent)
	s.mu.Unlock()
	if len(sent) != 4 {
		t.Fatalf("the snoop relayed %d requests, want 4: %+v", len(sent), sent)
	}
	first, second, forgotten, again := sent[0], sent[1], sent[2], sent[3]
	switch {
	case first.byRef || !second.byRef:
		t.Errorf("by reference: first request %v, second %v; want false, true", first.byRef, second.byRef)
	case first.size-second.size < 1000:
		t.Errorf("sealed requests of %d bytes by key, %d by reference: want over 1,000 saved", first.size, second.size)
	case !forgotten.byRef || forgotten.answer != "seal_session_unknown":
		t.Errorf("a forgotten reference: %+v, want refused as seal_session_unknown", forgotten)
	case again.id != forgotten.id || again.byRef || again.answer != "":
		t.Errorf("sent again: %+v after %+v, want the same request with the session's key, answered", again, forgotten)
	}
}
