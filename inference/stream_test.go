package inference_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

var inferenceProto = p2p.ProtocolID("local", inference.ProtocolName, inference.ProtocolVersion)

// echoServer serves inference on sv with handle, counting the streams it
// was given.
func echoServer(sv *p2p.Service, cfg inference.ServeConfig, check func() *inference.Error, handle inference.RequestHandler) *atomic.Int64 {
	var streams atomic.Int64
	sv.Handle(inferenceProto, 0, func(ctx context.Context, s network.Stream) error {
		streams.Add(1)
		return inference.ServeRequests(ctx, s, cfg, check, handle)
	})
	return &streams
}

func okCheck() *inference.Error { return nil }

// answer writes one chunk with the request's model, then End.
func answer(_ context.Context, req *inference.Request, fw *p2p.FrameWriter) error {
	if err := fw.Write(inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: req.Model})); err != nil {
		return err
	}
	if err := inference.WriteEnd(fw, &inference.End{FinishReason: "stop"}); err != nil {
		return err
	}
	return fw.Flush()
}

func request(model string) *inference.Request {
	return &inference.Request{ID: "r", Kind: inference.KindChat, Model: model, Body: []byte("{}")}
}

// collect reads a whole response and returns its text and last frame type.
func collect(t *testing.T, c *inference.Call) (string, byte) {
	t.Helper()
	text := ""
	for {
		typ, p, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if typ != inference.FrameChunk {
			return text, typ
		}
		chunk, _, err := inference.DecodeChunk(p)
		if err != nil {
			t.Fatal(err)
		}
		text += string(chunk)
	}
}

// TestPoolReusesStreams: sequential requests share one stream.
func TestPoolReusesStreams(t *testing.T) {
	server, client, sv := hostPair(t)
	streams := echoServer(sv, inference.DefaultServeConfig(), okCheck, answer)
	pool := inference.NewPool(client, "local", inference.DefaultPoolConfig())
	defer pool.Close()
	for _, m := range []string{"a", "b", "c"} {
		c, err := pool.Send(t.Context(), server.ID(), request(m))
		if err != nil {
			t.Fatal(err)
		}
		text, last := collect(t, c)
		c.Done()
		if text != m || last != inference.FrameEnd {
			t.Fatalf("request %s: got %q ending in frame %d", m, text, last)
		}
	}
	if n := streams.Load(); n != 1 {
		t.Fatalf("three requests used %d streams, want 1", n)
	}
}

// TestPoolReplacesStaleStream: a pooled stream the server closed while it
// was idle is replaced without the caller noticing.
func TestPoolReplacesStaleStream(t *testing.T) {
	server, client, sv := hostPair(t)
	cfg := inference.DefaultServeConfig()
	cfg.Idle = time.Millisecond
	streams := echoServer(sv, cfg, okCheck, answer)
	pool := inference.NewPool(client, "local", inference.DefaultPoolConfig()) // keeps idle streams far longer
	defer pool.Close()
	c, err := pool.Send(t.Context(), server.ID(), request("a"))
	if err != nil {
		t.Fatal(err)
	}
	collect(t, c)
	c.Done()
	p2ptest.Eventually(t, "the server to close the idle stream", func() bool {
		return len(server.Network().ConnsToPeer(client.ID())[0].GetStreams()) == 0
	})
	c, err = pool.Send(t.Context(), server.ID(), request("b"))
	if err != nil {
		t.Fatalf("a stale pooled stream surfaced as an error: %v", err)
	}
	if text, _ := collect(t, c); text != "b" {
		t.Fatalf("got %q", text)
	}
	c.Done()
	if n := streams.Load(); n != 2 {
		t.Fatalf("%d streams, want 2 (the stale one replaced)", n)
	}
}

// TestPoolDropsDeadConnection: when the pooled streams to a peer all died
// with their connection (the peer restarted), the next request still
// succeeds on its first Send, and the dead streams are not tried again.
func TestPoolDropsDeadConnection(t *testing.T) {
	server, client, sv := hostPair(t)
	streams := echoServer(sv, inference.DefaultServeConfig(), okCheck, answer)
	pool := inference.NewPool(client, "local", inference.DefaultPoolConfig())
	defer pool.Close()
	// Three requests at once leave three idle streams on one connection.
	var calls []*inference.Call
	for _, m := range []string{"a", "b", "c"} {
		c, err := pool.Send(t.Context(), server.ID(), request(m))
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, c)
	}
	for _, c := range calls {
		collect(t, c)
		c.Done()
	}
	// The server drops every stream and the connection: the pool still
	// holds three dead streams. A new connection is dialled afresh.
	for _, c := range server.Network().ConnsToPeer(client.ID()) {
		for _, s := range c.GetStreams() {
			s.Reset()
		}
	}
	if err := server.Network().ClosePeer(client.ID()); err != nil {
		t.Fatal(err)
	}
	client.Peerstore().AddAddrs(server.ID(), server.Addrs(), time.Hour)
	for i, m := range []string{"d", "e"} {
		c, err := pool.Send(t.Context(), server.ID(), request(m))
		if err != nil {
			t.Fatalf("request %d after the connection died: %v", i+1, err)
		}
		if text, _ := collect(t, c); text != m {
			t.Fatalf("got %q, want %q", text, m)
		}
		c.Done()
	}
	if n := streams.Load(); n != 4 {
		t.Fatalf("%d streams, want 4 (three, then one new one reused)", n)
	}
}

// TestServeCancel: a requester that abandons its call (reset) cancels the
// request being served.
func TestServeCancel(t *testing.T) {
	server, client, sv := hostPair(t)
	started, cancelled := make(chan struct{}), make(chan struct{})
	echoServer(sv, inference.DefaultServeConfig(), okCheck, func(ctx context.Context, _ *inference.Request, fw *p2p.FrameWriter) error {
		if err := fw.Write(inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: "x"})); err != nil {
			return err
		}
		if err := fw.Flush(); err != nil {
			return err
		}
		close(started)
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	})
	pool := inference.NewPool(client, "local", inference.DefaultPoolConfig())
	defer pool.Close()
	c, err := pool.Send(t.Context(), server.ID(), request("m"))
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, started, "the request to start")
	c.Done() // before the end: resets
	p2ptest.WaitFor(t, cancelled, "the request to be cancelled")
}

// TestServeStop: a requester that stops its call (its app went away
// mid-answer) stops the request being served without resetting the
// stream: the handler sees Stopped, ends the answer with an End, the
// requester reads it, and the stream carries the next request. A Stop
// that crosses the End is ignored.
func TestServeStop(t *testing.T) {
	server, client, sv := hostPair(t)
	started := make(chan struct{}, 1)
	streams := echoServer(sv, inference.DefaultServeConfig(), okCheck, func(ctx context.Context, req *inference.Request, fw *p2p.FrameWriter) error {
		if req.Model == "quick" {
			return answer(ctx, req, fw)
		}
		if err := fw.Write(inference.FrameChunk, inference.AppendChunk(nil, inference.Chunk{Text: "x"})); err != nil {
			return err
		}
		if err := fw.Flush(); err != nil {
			return err
		}
		started <- struct{}{}
		<-ctx.Done()
		if !inference.Stopped(ctx) {
			return ctx.Err()
		}
		if err := inference.WriteEnd(fw, &inference.End{FinishReason: "stopped"}); err != nil {
			return err
		}
		return fw.Flush()
	})
	pool := inference.NewPool(client, "local", inference.DefaultPoolConfig())
	defer pool.Close()
	c, err := pool.Send(t.Context(), server.ID(), request("long"))
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, started, "the request to start")
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if text, typ := collect(t, c); text != "x" || typ != inference.FrameEnd {
		t.Fatalf("after Stop: %q then frame %d, want the chunk then End", text, typ)
	}
	c.Done()
	for i := range 2 {
		c, err = pool.Send(t.Context(), server.ID(), request("quick"))
		if err != nil {
			t.Fatal(err)
		}
		if text, typ := collect(t, c); text != "quick" || typ != inference.FrameEnd {
			t.Fatalf("request %d after the stopped one got %q then frame %d", i+1, text, typ)
		}
		c.Stop() // after the End, as when it crosses it: ignored, and not carried to the next request
		c.Done()
	}
	if n := streams.Load(); n != 1 {
		t.Errorf("%d streams, want 1: a stopped answer keeps its stream", n)
	}
}

// TestServeRefusals: check refuses, garbage is a bad request, and a
// request past MaxDuration is cancelled.
func TestServeRefusals(t *testing.T) {
	t.Run("check", func(t *testing.T) {
		server, client, sv := hostPair(t)
		echoServer(sv, inference.DefaultServeConfig(), func() *inference.Error {
			return inference.Errorf(inference.CodeUnattested, "no")
		}, answer)
		pool := inference.NewPool(client, "local", inference.DefaultPoolConfig())
		defer pool.Close()
		c, err := pool.Send(t.Context(), server.ID(), request("m"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Done()
		typ, p, _ := c.Next()
		ev, err := inference.DecodeEvent(typ, p)
		if err != nil || ev.Type != inference.FrameError || ev.Err.Code != inference.CodeUnattested {
			t.Fatalf("got %+v %v, want an unattested error", ev, err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		server, client, sv := hostPair(t)
		echoServer(sv, inference.DefaultServeConfig(), okCheck, answer)
		s, err := client.NewStream(t.Context(), server.ID(), inferenceProto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		if err := p2p.WriteFrame(s, inference.FrameChunk, []byte("not a request")); err != nil {
			t.Fatal(err)
		}
		ev, err := inference.NewResponseReader(s).Next()
		if err != nil || ev.Type != inference.FrameError || ev.Err.Code != inference.CodeBadRequest {
			t.Fatalf("got %+v %v, want a bad request", ev, err)
		}
	})
	t.Run("max duration", func(t *testing.T) {
		server, client, sv := hostPair(t)
		cfg := inference.DefaultServeConfig()
		cfg.MaxDuration = 20 * time.Millisecond
		done := make(chan error, 1)
		echoServer(sv, cfg, okCheck, func(ctx context.Context, _ *inference.Request, _ *p2p.FrameWriter) error {
			<-ctx.Done()
			done <- context.Cause(ctx)
			return ctx.Err()
		})
		pool := inference.NewPool(client, "local", inference.DefaultPoolConfig())
		defer pool.Close()
		_, err := pool.Send(t.Context(), server.ID(), request("m"))
		if err == nil {
			t.Fatal("a request past its maximum duration got an answer")
		}
		if err := p2ptest.WaitFor(t, done, "the handler to stop"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("handler stopped because of %v, want its deadline", err)
		}
	})
}
