package seal_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
)

var kemCases = []seal.KEM{seal.MLKEM768X25519, seal.X25519}

func TestRoundTrip(t *testing.T) {
	bodies := map[string][]byte{
		"empty":    nil,
		"one byte": {'x'},
		"2 KiB":    bytes.Repeat([]byte("prompt! "), 256),
		"max":      bytes.Repeat([]byte{7}, seal.MaxBody),
	}
	for _, kem := range kemCases {
		for name, body := range bodies {
			t.Run(kem.String()+"/"+name, func(t *testing.T) {
				clock := clocktest.New(t0)
				w := newWorker(t, clock, "worker-a", seal.WithKEM(kem))
				c := seal.NewClient(nil, clock.Now)
				sr, o := mustSeal(t, c, "req-1", body, w.session(t))
				got, rs, err := w.open(t, sr)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, body) {
					t.Fatalf("opened body of %d bytes, want %d", len(got), len(body))
				}
				chunks := []string{"Hello", "", ", world", strings.Repeat("z", seal.MaxChunk)}
				out, err := readAll(o, answer(t, rs, chunks...))
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(out, chunks) {
					t.Fatalf("answer %d chunks, want %d", len(out), len(chunks))
				}
				if b, id, ok := o.Worker(); !ok || b != w.self || id != w.sessionKey(t) {
					t.Fatalf("Worker() = %v, %v, %v; want %v", b, id, ok, w.self)
				}
			})
		}
	}
}

// sessionKey is the ID of w's newest key.
func (w *worker) sessionKey(t testing.TB) seal.KeyID {
	t.Helper()
	p, err := seal.ParsePublicKey(w.pub)
	if err != nil {
		t.Fatal(err)
	}
	return p.ID()
}

// TestCandidates seals one request to three workers: each can open it,
// and the client's opener follows whichever answers, and only it.
func TestCandidates(t *testing.T) {
	clock := clocktest.New(t0)
	ws := []*worker{newWorker(t, clock, "a"), newWorker(t, clock, "b"), newWorker(t, clock, "c")}
	c := seal.NewClient(nil, clock.Now)
	sessions := []*seal.Session{ws[0].session(t), ws[1].session(t), ws[2].session(t)}
	for i, w := range ws {
		sr, o := mustSeal(t, c, "req", []byte("body"), sessions...)
		_, rs, err := w.open(t, sr)
		if err != nil {
			t.Fatalf("candidate %d: %v", i, err)
		}
		if _, err := readAll(o, answer(t, rs, "one", "two")); err != nil {
			t.Fatalf("candidate %d's answer: %v", i, err)
		}
		if b, id, _ := o.Worker(); b != w.self || b != sessions[i].Worker() || id != sessions[i].KeyID() {
			t.Fatalf("answer from %v, want %v", b, w.self)
		}
	}
}

func TestSealRequestRefuses(t *testing.T) {
	clock := clocktest.New(t0)
	a := newWorker(t, clock, "a")
	sa := a.session(t)
	other := newWorker(t, clock, "b")
	other.self.Network = "elsewhere"
	sOther, err := seal.NewSession(other.pub, other.self)
	if err != nil {
		t.Fatal(err)
	}
	many := make([]*seal.Session, seal.MaxCandidates+1)
	for i := range many {
		many[i] = newWorker(t, clock, "w").session(t)
	}
	tests := []struct {
		name     string
		sessions []*seal.Session
		reqID    string
		body     []byte
	}{
		{"no candidates", nil, "r", nil},
		{"too many candidates", many, "r", nil},
		{"nil session", []*seal.Session{nil}, "r", nil},
		{"same key twice", []*seal.Session{sa, a.session(t)}, "r", nil},
		{"two networks", []*seal.Session{sa, sOther}, "r", nil},
		{"empty request ID", []*seal.Session{sa}, "", nil},
		{"long request ID", []*seal.Session{sa}, strings.Repeat("r", seal.MaxRequestID+1), nil},
		{"request ID not UTF-8", []*seal.Session{sa}, "\xff", nil},
		{"body too large", []*seal.Session{sa}, "r", make([]byte, seal.MaxBody+1)},
	}
	c := seal.NewClient(nil, clock.Now)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := c.SealRequest(tt.sessions, tt.reqID, nil, tt.body); !errors.Is(err, seal.ErrMalformed) {
				t.Fatalf("SealRequest = %v, want ErrMalformed", err)
			}
		})
	}
	if _, _, err := seal.NewClient(failingReader{}, clock.Now).SealRequest([]*seal.Session{sa}, "r", nil, nil); err == nil {
		t.Fatal("SealRequest with failing randomness succeeded")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestNewSessionRefuses(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a")
	tests := []struct {
		name string
		pub  []byte
		b    seal.Binding
		want error
	}{
		{"empty network", w.pub, seal.Binding{Peer: "a"}, seal.ErrMalformed},
		{"empty peer", w.pub, seal.Binding{Network: "n"}, seal.ErrMalformed},
		{"long peer", w.pub, seal.Binding{Network: "n", Peer: strings.Repeat("p", seal.MaxPeer+1)}, seal.ErrMalformed},
		{"long network", w.pub, seal.Binding{Network: strings.Repeat("n", seal.MaxNetwork+1), Peer: "a"}, seal.ErrMalformed},
		{"short key", w.pub[:100], w.self, seal.ErrMalformed},
		{"unknown KEM", append([]byte{0, 0x10}, w.pub[2:]...), w.self, seal.ErrUnsupportedKEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := seal.NewSession(tt.pub, tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("NewSession = %v, want %v", err, tt.want)
			}
		})
	}
}

// reqEnv is a client and three workers: a and b are candidates, c is not.
type reqEnv struct {
	clock   *clocktest.Clock
	a, b, c *worker
	client  *seal.Client
	sa, sb  *seal.Session
}

func newReqEnv(t *testing.T) *reqEnv {
	clock := clocktest.New(t0)
	e := &reqEnv{clock: clock, client: seal.NewClient(nil, clock.Now)}
	e.a, e.b, e.c = newWorker(t, clock, "a"), newWorker(t, clock, "b"), newWorker(t, clock, "c")
	e.sa, e.sb = e.a.session(t), e.b.session(t)
	return e
}

func (e *reqEnv) seal(t *testing.T, reqID string) *seal.SealedRequest {
	sr, _ := mustSeal(t, e.client, reqID, []byte("secret prompt"), e.sa, e.sb)
	return sr
}

// requestTampering is every way a proxy may misuse a sealed request; each
// returns the error of the worker's last OpenRequest.
var requestTampering = []struct {
	name string
	run  func(t *testing.T, e *reqEnv) error
	want error
}{
	{"genuine", func(t *testing.T, e *reqEnv) error {
		_, _, err := e.a.open(t, e.seal(t, "r"))
		return err
	}, nil},
	{"wrong worker", func(t *testing.T, e *reqEnv) error {
		_, _, err := e.c.open(t, e.seal(t, "r"))
		return err
	}, seal.ErrNoRecipient},
	{"replay to the same worker", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		if _, _, err := e.a.open(t, sr); err != nil {
			t.Fatal(err)
		}
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrReplay},
	{"replay to another worker", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		if _, _, err := e.a.open(t, sr); err != nil {
			t.Fatal(err)
		}
		_, _, err := e.c.open(t, sr)
		return err
	}, seal.ErrNoRecipient},
	{"replay after the lifetime", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		if _, _, err := e.a.open(t, sr); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(seal.RequestLifetime + time.Millisecond)
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrStale},
	{"held back too long", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		e.clock.Advance(seal.RequestLifetime + time.Millisecond)
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrStale},
	{"sealed in the future", func(t *testing.T, e *reqEnv) error {
		ahead := clocktest.New(t0.Add(seal.RequestLifetime + time.Second))
		sr, _ := mustSeal(t, seal.NewClient(nil, ahead.Now), "r", nil, e.sa)
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrStale},
	{"sealing time changed", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		sr.SealedAt = sr.SealedAt.Add(-time.Second)
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrAuth},
	{"moved to another request ID", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		sr.RequestID = "r2"
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrAuth},
	{"body of another request", func(t *testing.T, e *reqEnv) error {
		sr, other := e.seal(t, "r"), e.seal(t, "r")
		sr.Body = other.Body
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrAuth},
	{"wrap of another request", func(t *testing.T, e *reqEnv) error {
		sr, other := e.seal(t, "r"), e.seal(t, "r")
		sr.Wraps[0] = other.Wraps[0]
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrAuth},
	{"counter changed", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		sr.Wraps[0].Counter += 10
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrAuth},
	{"enc of another session", func(t *testing.T, e *reqEnv) error {
		sr, other := e.seal(t, "r"), mustSealed(t, e, e.a.session(t))
		sr.Wraps[0].Enc = other.Wraps[0].Enc
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrAuth},
	{"other network", func(t *testing.T, e *reqEnv) error {
		_, _, err := e.a.ring.OpenRequest(e.seal(t, "r"), seal.Binding{Network: "mainnet", Peer: "a"}, nil)
		return err
	}, seal.ErrAuth},
	{"worker's key under another peer's name", func(t *testing.T, e *reqEnv) error {
		s, err := seal.NewSession(e.a.pub, seal.Binding{Network: testNetwork, Peer: "c"})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = e.a.open(t, mustSealed(t, e, s))
		return err
	}, seal.ErrAuth},
	{"wrong key ID", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		e.a.rotate(t, t0.Add(2*time.Hour))
		sr.Wraps[0].KeyID = e.a.sessionKey(t) // a's other live key
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrAuth},
	{"unknown key ID", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		sr.Wraps[0].KeyID[0] ^= 1
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrNoRecipient},
	{"KEM changed", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		sr.Wraps[0].KEM, sr.Wraps[0].Enc = seal.X25519, sr.Wraps[0].Enc[:32]
		_, _, err := e.a.open(t, sr)
		return err
	}, seal.ErrAuth},
	{"wraps stripped but one", func(t *testing.T, e *reqEnv) error {
		sr := e.seal(t, "r")
		sr.Wraps = sr.Wraps[1:]
		_, _, err := e.b.open(t, sr)
		return err
	}, nil},
}

func TestRequestTampering(t *testing.T) {
	for _, tt := range requestTampering {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(t, newReqEnv(t))
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("OpenRequest = %v, want %v", err, tt.want)
			}
		})
	}
}

func mustSealed(t *testing.T, e *reqEnv, s *seal.Session) *seal.SealedRequest {
	sr, _ := mustSeal(t, e.client, "r", []byte("secret prompt"), s)
	return sr
}

// TestRequestBitFlips flips one bit of each byte of a sealed
// request: none opens, and the genuine request still does afterwards.
func TestRequestBitFlips(t *testing.T) {
	for _, kem := range kemCases {
		t.Run(kem.String(), func(t *testing.T) {
			clock := clocktest.New(t0)
			w := newWorker(t, clock, "a", seal.WithKEM(kem))
			sr, _ := mustSeal(t, seal.NewClient(nil, clock.Now), "r", []byte("secret prompt"), w.session(t))
			wire, err := seal.AppendSealedRequest(nil, sr)
			if err != nil {
				t.Fatal(err)
			}
			for i := range wire {
				got, err := seal.DecodeSealedRequest(flip(wire, i))
				if err == nil {
					_, _, err = w.ring.OpenRequest(got, w.self, routing)
				}
				if !isAny(err, seal.ErrMalformed, seal.ErrUnsupportedKEM, seal.ErrAuth, seal.ErrStale, seal.ErrNoRecipient) {
					t.Fatalf("byte %d flipped: %v", i, err)
				}
			}
			if _, _, err := w.open(t, sr); err != nil {
				t.Fatalf("genuine request after the flips: %v", err)
			}
		})
	}
}

// ansEnv is one request sealed to a and b, answered by a (recs, chunks
// "c0" "c1" "c2" then end) and by b (bRecs); and a second request to a
// from the same session (other).
type ansEnv struct {
	o           *seal.ResponseOpener
	recs, bRecs [][]byte
	other       [][]byte
}

func newAnsEnv(t *testing.T) *ansEnv {
	e := newReqEnv(t)
	sr, o := mustSeal(t, e.client, "r", []byte("p"), e.sa, e.sb)
	_, rsA, err := e.a.open(t, sr)
	if err != nil {
		t.Fatal(err)
	}
	_, rsB, err := e.b.open(t, sr)
	if err != nil {
		t.Fatal(err)
	}
	sr2, _ := mustSeal(t, e.client, "r", []byte("p"), e.sa)
	_, rs2, err := e.a.open(t, sr2)
	if err != nil {
		t.Fatal(err)
	}
	return &ansEnv{
		o:     o,
		recs:  answer(t, rsA, "c0", "c1", "c2"),
		bRecs: answer(t, rsB, "c0", "c1", "c2"),
		other: answer(t, rs2, "c0", "c1", "c2"),
	}
}

// TestAnswerTampering feeds the client's opener records as a proxy might
// misdeliver them. got is what the app would have received.
func TestAnswerTampering(t *testing.T) {
	tests := []struct {
		name string
		recs func(e *ansEnv) [][]byte
		got  []string
		want error
	}{
		{"genuine", func(e *ansEnv) [][]byte { return e.recs }, []string{"c0", "c1", "c2"}, nil},
		{"other candidate's whole answer", func(e *ansEnv) [][]byte { return e.bRecs }, []string{"c0", "c1", "c2"}, nil},
		{"reordered", func(e *ansEnv) [][]byte { return [][]byte{e.recs[0], e.recs[2], e.recs[1], e.recs[3]} }, []string{"c0"}, seal.ErrOrder},
		{"first dropped", func(e *ansEnv) [][]byte { return e.recs[1:] }, nil, seal.ErrOrder},
		{"last chunk dropped", func(e *ansEnv) [][]byte { return [][]byte{e.recs[0], e.recs[1], e.recs[3]} }, []string{"c0", "c1"}, seal.ErrOrder},
		{"duplicated", func(e *ansEnv) [][]byte { return [][]byte{e.recs[0], e.recs[0]} }, []string{"c0"}, seal.ErrOrder},
		{"truncated", func(e *ansEnv) [][]byte { return e.recs[:3] }, []string{"c0", "c1", "c2"}, seal.ErrTruncated},
		{"nothing", func(e *ansEnv) [][]byte { return nil }, nil, seal.ErrTruncated},
		{"record after the end", func(e *ansEnv) [][]byte { return append(slices.Clone(e.recs), e.recs[2]) }, []string{"c0", "c1", "c2"}, seal.ErrAfterEnd},
		{"end replayed", func(e *ansEnv) [][]byte { return append(slices.Clone(e.recs), e.recs[3]) }, []string{"c0", "c1", "c2"}, seal.ErrAfterEnd},
		{"chunk moved from another request", func(e *ansEnv) [][]byte { return [][]byte{e.recs[0], e.other[1]} }, []string{"c0"}, seal.ErrAuth},
		{"answer of another request", func(e *ansEnv) [][]byte { return e.other }, nil, seal.ErrAuth},
		{"end moved from another request", func(e *ansEnv) [][]byte { return append(slices.Clone(e.recs[:3]), e.other[3]) }, []string{"c0", "c1", "c2"}, seal.ErrAuth},
		{"candidates' answers mixed", func(e *ansEnv) [][]byte { return [][]byte{e.recs[0], e.bRecs[1]} }, []string{"c0"}, seal.ErrAuth},
		{"chunk retyped as end", func(e *ansEnv) [][]byte { return [][]byte{e.recs[0], retype(e.recs[1], 3)} }, []string{"c0"}, seal.ErrAuth},
		{"end retyped as chunk", func(e *ansEnv) [][]byte { return append(slices.Clone(e.recs[:3]), retype(e.recs[3], 2)) }, []string{"c0", "c1", "c2"}, seal.ErrAuth},
		{"record cut", func(e *ansEnv) [][]byte { return [][]byte{e.recs[0][:len(e.recs[0])-1]} }, nil, seal.ErrAuth},
		{"record too short", func(e *ansEnv) [][]byte { return [][]byte{e.recs[0][:seal.RecordOverhead-1]} }, nil, seal.ErrMalformed},
		{"stays failed", func(e *ansEnv) [][]byte { return [][]byte{e.recs[1], e.recs[0], e.recs[1]} }, nil, seal.ErrOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newAnsEnv(t)
			got, err := readAll(e.o, tt.recs(e))
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("reading the answer: %v, want %v", err, tt.want)
			}
			if !slices.Equal(got, tt.got) {
				t.Fatalf("the app got %q, want %q", got, tt.got)
			}
			if tt.want != nil && !errors.Is(e.o.Done(), tt.want) {
				t.Fatalf("Done() = %v, want %v", e.o.Done(), tt.want)
			}
		})
	}
}

func retype(rec []byte, typ byte) []byte {
	c := bytes.Clone(rec)
	c[1] = typ
	return c
}

// TestAnswerBitFlips flips one bit of each byte of each record: the record
// is refused and the opener stays failed.
func TestAnswerBitFlips(t *testing.T) {
	lens := newAnsEnv(t).recs
	for r := range lens {
		for i := range lens[r] {
			e := newAnsEnv(t)
			for _, prev := range e.recs[:r] {
				if _, err := e.o.Open(prev); err != nil {
					t.Fatal(err)
				}
			}
			_, err := e.o.Open(flip(e.recs[r], i))
			if !isAny(err, seal.ErrAuth, seal.ErrMalformed) {
				t.Fatalf("record %d byte %d flipped: %v", r, i, err)
			}
			if _, err2 := e.o.Open(e.recs[r]); !errors.Is(err2, err) {
				t.Fatalf("after a failure, Open = %v, want the failure", err2)
			}
		}
	}
}

func TestSealerAfterEnd(t *testing.T) {
	e := newReqEnv(t)
	_, rs, err := e.a.open(t, e.seal(t, "r"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Seal(make([]byte, seal.MaxChunk+1)); !errors.Is(err, seal.ErrMalformed) {
		t.Fatalf("Seal of an oversized chunk = %v, want ErrMalformed", err)
	}
	if _, err := rs.End(); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Seal([]byte("x")); !errors.Is(err, seal.ErrEnded) {
		t.Fatalf("Seal after End = %v, want ErrEnded", err)
	}
	if _, err := rs.End(); !errors.Is(err, seal.ErrEnded) {
		t.Fatalf("End after End = %v, want ErrEnded", err)
	}
}

func TestOpenerEndIsEOF(t *testing.T) {
	e := newAnsEnv(t)
	for _, r := range e.recs[:3] {
		if _, err := e.o.Open(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.o.Done(); !errors.Is(err, seal.ErrTruncated) {
		t.Fatalf("Done before the end = %v, want ErrTruncated", err)
	}
	if c, err := e.o.Open(e.recs[3]); c != nil || err != io.EOF {
		t.Fatalf("Open(end) = %q, %v; want nil, io.EOF", c, err)
	}
	if err := e.o.Done(); err != nil {
		t.Fatalf("Done after the end = %v", err)
	}
}

// TestSessionReference: a session's requests carry its encapsulated key
// until the worker has answered through it, then a 32-byte reference; a
// worker that forgot the session since refuses the reference
// (ErrUnknownSession), and after ResendKeys the key travels again. A
// reference to another session, or to none, opens nothing.
func TestSessionReference(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "worker-a", seal.WithSessionCache(1))
	c := seal.NewClient(nil, clock.Now)
	s := w.session(t)
	serve := func(sr *seal.SealedRequest, o *seal.ResponseOpener) {
		t.Helper()
		_, rs, err := w.open(t, sr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(o, answer(t, rs, "ok")); err != nil {
			t.Fatal(err)
		}
	}
	size := func(sr *seal.SealedRequest) int {
		b, err := seal.AppendSealedRequest(nil, sr)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}

	first, o := mustSeal(t, c, "req-1", []byte("body"), s)
	if first.Wraps[0].Enc == nil || first.Wraps[0].Ref != nil {
		t.Fatal("a session's first request names it by reference")
	}
	serve(first, o)
	second, o := mustSeal(t, c, "req-2", []byte("body"), s)
	if second.Wraps[0].Enc != nil || len(second.Wraps[0].Ref) != seal.RefLen {
		t.Fatal("a session the worker answered through is not named by reference")
	}
	if a, b := size(first), size(second); a-b < 1000 {
		t.Errorf("sealed request of %d bytes by key, %d by reference: want over 1,000 saved", a, b)
	}
	serve(second, o)

	// Another client's session, in a keyring with room for one, once the
	// first has been idle past every request's lifetime, takes its place.
	clock.Advance(2*seal.RequestLifetime + time.Second)
	other := w.session(t)
	sr, o2 := mustSeal(t, c, "req-other", []byte("body"), other)
	serve(sr, o2)

	forgotten, o := mustSeal(t, c, "req-3", []byte("body"), s)
	if _, _, err := w.open(t, forgotten); !errors.Is(err, seal.ErrUnknownSession) {
		t.Fatalf("a reference to a forgotten session: %v, want ErrUnknownSession", err)
	}
	o.ResendKeys()
	clock.Advance(2*seal.RequestLifetime + time.Second) // room for it again
	again, o := mustSeal(t, c, "req-4", []byte("body"), s)
	if again.Wraps[0].Enc == nil {
		t.Fatal("after ResendKeys the request does not carry the session's key")
	}
	serve(again, o)

	// Another session's reference on this session's wrap, and a made-up
	// one: nothing opens.
	swapped, _ := mustSeal(t, c, "req-5", []byte("body"), other)
	swapped.Wraps[0].Ref = bytes.Clone(second.Wraps[0].Ref)
	if _, _, err := w.open(t, swapped); !errors.Is(err, seal.ErrAuth) && !errors.Is(err, seal.ErrUnknownSession) {
		t.Errorf("a wrap under another session's reference: %v, want refused", err)
	}
	made, _ := mustSeal(t, c, "req-6", []byte("body"), other)
	made.Wraps[0].Ref = bytes.Repeat([]byte{7}, seal.RefLen)
	if _, _, err := w.open(t, made); !errors.Is(err, seal.ErrUnknownSession) {
		t.Errorf("a made-up reference: %v, want ErrUnknownSession", err)
	}
}
