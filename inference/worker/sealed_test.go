package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/inference/worker"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

// sealedWorker starts a worker holding keys, with a current key, and
// returns its host, a connected requester, and a client session with that
// key.
func sealedWorker(t *testing.T, b inference.Backend, keys *seal.Keyring) (server, requester host.Host, s *seal.Session) {
	t.Helper()
	server, requester = p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv := p2p.NewService(server, slog.New(slog.DiscardHandler))
	t.Cleanup(sv.Close)
	worker.New(worker.Config{Network: "local", Keys: keys}, server.ID(), b, nil, slog.New(slog.DiscardHandler)).Register(sv)
	p2ptest.Connect(t, requester, server)
	pub, _, ok := keys.Current()
	if !ok {
		var err error
		if pub, err = keys.Next(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return server, requester, session(t, pub, server.ID())
}

// session is a client's session with key pub of worker p.
func session(t *testing.T, pub []byte, p peer.ID) *seal.Session {
	t.Helper()
	s, err := seal.NewSession(pub, seal.Binding{Network: "local", Peer: p.String()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sealTo seals body as request id to s, with req's header; change, if
// set, changes the request after it was sealed, as a hop might.
func sealTo(t *testing.T, s *seal.Session, id, body string, change func(*inference.Request)) (*inference.Request, *seal.ResponseOpener) {
	t.Helper()
	req := &inference.Request{ID: id, Kind: inference.KindChat, Model: "m", MaxPrice: 9, Sealed: true}
	header, err := inference.AppendHeader(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	sr, opener, err := seal.NewClient(nil, nil).SealRequest([]*seal.Session{s}, id, header, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if req.Body, err = seal.AppendSealedRequest(nil, sr); err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(req)
	}
	return req, opener
}

// A sealed request is opened with the worker's keys, the engine gets the
// body the client sealed, and the answer comes back in records only the
// client opens, its end record before the End frame in the clear.
func TestSealedRequest(t *testing.T) {
	keys, err := seal.NewKeyring(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	b := &inferencetest.Backend{Served: served, Func: func(_ context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
		got = string(req.Body)
		for _, c := range []string{"sealed ", "answer"} {
			if err := emit(inference.Chunk{Text: c}); err != nil {
				return inference.Result{}, err
			}
		}
		return inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 1, Completion: 2}}, FinishReason: "stop"}, nil
	}}
	w, r, s := sealedWorker(t, b, keys)
	req, opener := sealTo(t, s, "r1", `{"secret":1}`, nil)
	_, rr := sendReq(t, r, w.ID(), req)
	var text string
	for {
		ev, err := rr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == inference.FrameEnd {
			break
		}
		if ev.Type != inference.FrameRecord {
			t.Fatalf("frame %+v in the answer to a sealed request", ev)
		}
		plain, err := opener.Open(ev.Text)
		if errors.Is(err, io.EOF) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for len(plain) > 0 {
			chunk, rest, err := inference.NextSealedChunk(plain)
			if err != nil {
				t.Fatal(err)
			}
			text += string(chunk.Text)
			plain = rest
		}
	}
	if got != `{"secret":1}` || text != "sealed answer" {
		t.Fatalf("the engine got %q, the client opened %q", got, text)
	}
	if err := opener.Done(); err != nil {
		t.Fatalf("the answer ended without its end record: %v", err)
	}
}

// What a worker cannot open, or must not, it refuses with a code that
// says whether another candidate could.
func TestSealedRefusals(t *testing.T) {
	keys, err := seal.NewKeyring(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &inferencetest.Backend{Served: served, Chunks: []string{"x"}}
	for _, tt := range []struct {
		name    string
		change  func(*inference.Request)
		another bool // seal to a key the worker does not hold
		code    inference.Code
	}{
		{name: "header changed on the way", change: func(r *inference.Request) { r.MaxPrice = 1000 }, code: inference.CodeSealFailed},
		{name: "model changed on the way", change: func(r *inference.Request) { r.Model = "dear" }, code: inference.CodeSealFailed},
		{name: "request ID other than the sealed one", change: func(r *inference.Request) { r.ID = "r2" }, code: inference.CodeBadRequest},
		{name: "body not a sealed request", change: func(r *inference.Request) { r.Body = []byte(`{"clear":1}`) }, code: inference.CodeBadRequest},
		{name: "sealed to another worker's key", another: true, code: inference.CodeNotCandidate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, r, s := sealedWorker(t, b, keys)
			if tt.another {
				s = session(t, mustPub(t), w.ID())
			}
			req, _ := sealTo(t, s, "r1", "{}", tt.change)
			_, rr := sendReq(t, r, w.ID(), req)
			expectError(t, rr, tt.code)
		})
	}
	t.Run("a worker without keys", func(t *testing.T) {
		pub := mustPub(t)
		w, r := serve(t, b, 1)
		req, _ := sealTo(t, session(t, pub, w.ID()), "r1", "{}", nil)
		_, rr := sendReq(t, r, w.ID(), req)
		expectError(t, rr, inference.CodeBadRequest)
	})
}

// mustPub is the public key of a fresh keyring no worker holds.
func mustPub(t *testing.T) []byte {
	t.Helper()
	k, err := seal.NewKeyring(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.Next(time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
