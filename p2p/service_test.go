package p2p_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

const testProto = protocol.ID("/cocoon/local/test/1")

// open opens a stream to proto on server and writes msg on it.
func open(t *testing.T, client, server host.Host, proto protocol.ID, msg string) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.NewStream(ctx, server.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	if msg != "" {
		if _, err := s.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestServiceHandlerOutcomes(t *testing.T) {
	server, client := p2ptest.NewHost(t), p2ptest.NewHost(t)
	p2ptest.Connect(t, client, server)
	sv := p2p.NewService(server, logtest.Discard)
	defer sv.Close()
	// The client's first byte says what the handler does.
	sv.Handle(testProto, 0, func(ctx context.Context, s network.Stream) error {
		var b [1]byte
		if _, err := io.ReadFull(s, b[:]); err != nil {
			return err
		}
		switch b[0] {
		case 'p':
			panic("handler bug")
		case 'e':
			return errors.New("handler failed")
		}
		_, err := s.Write([]byte("ok"))
		return err
	})

	tests := []struct {
		name      string
		cmd       string
		wantReset bool
	}{
		{"nil closes", "o", false},
		{"panic resets", "p", true},
		{"service survives a panic", "o", false},
		{"error resets", "e", true},
		{"service survives an error", "o", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, client, server, testProto, tt.cmd)
			got, err := io.ReadAll(s)
			if tt.wantReset {
				if !errors.Is(err, network.ErrReset) {
					t.Fatalf("read %q, %v; want a reset", got, err)
				}
				return
			}
			if err != nil || string(got) != "ok" {
				t.Fatalf("read %q, %v; want \"ok\" and a clean close", got, err)
			}
		})
	}
}

func TestServiceDeadline(t *testing.T) {
	server, client := p2ptest.NewHost(t), p2ptest.NewHost(t)
	p2ptest.Connect(t, client, server)
	sv := p2p.NewService(server, logtest.Discard)
	defer sv.Close()
	readErr := make(chan error, 1)
	sv.Handle(testProto, 50*time.Millisecond, func(ctx context.Context, s network.Stream) error {
		_, err := s.Read(make([]byte, 10)) // the client sends one byte, then nothing
		if err == nil {
			_, err = s.Read(make([]byte, 10))
		}
		readErr <- err
		return err
	})
	s := open(t, client, server, testProto, "x")
	if err := p2ptest.WaitFor(t, readErr, "the handler's read to time out"); err == nil {
		t.Fatal("read past the deadline succeeded")
	}
	if _, err := io.ReadAll(s); !errors.Is(err, network.ErrReset) {
		t.Fatalf("client read %v, want a reset", err)
	}
}

func TestServiceCloseWaitsForHandlers(t *testing.T) {
	server, client := p2ptest.NewHost(t), p2ptest.NewHost(t)
	p2ptest.Connect(t, client, server)
	sv := p2p.NewService(server, logtest.Discard)

	started := make(chan struct{})
	cancelled := make(chan struct{})
	release := make(chan struct{})
	var returned atomic.Bool
	sv.Handle(testProto, 0, func(ctx context.Context, s network.Stream) error {
		close(started)
		<-ctx.Done()
		close(cancelled)
		<-release
		returned.Store(true)
		return nil
	})
	s := open(t, client, server, testProto, "x")
	p2ptest.WaitFor(t, started, "the handler to start")

	closed := make(chan struct{})
	go func() {
		sv.Close()
		close(closed)
	}()
	p2ptest.WaitFor(t, cancelled, "Close to cancel the handler's context")
	select {
	case <-closed:
		t.Fatal("Close returned while a handler was still running")
	default:
	}
	close(release)
	p2ptest.WaitFor(t, closed, "Close to return")
	if !returned.Load() {
		t.Fatal("Close returned before the handler did")
	}
	if _, err := io.ReadAll(s); !errors.Is(err, network.ErrReset) {
		t.Fatalf("client read %v, want a reset", err)
	}
}

func TestServiceCloseUnblocksReads(t *testing.T) {
	server, client := p2ptest.NewHost(t), p2ptest.NewHost(t)
	p2ptest.Connect(t, client, server)
	sv := p2p.NewService(server, logtest.Discard)

	started := make(chan struct{})
	readErr := make(chan error, 1)
	sv.Handle(testProto, 0, func(ctx context.Context, s network.Stream) error {
		var b [1]byte
		if _, err := s.Read(b[:]); err != nil {
			return err
		}
		close(started)
		_, err := s.Read(b[:]) // the client sends nothing more
		readErr <- err
		return err
	})
	s := open(t, client, server, testProto, "x")
	p2ptest.WaitFor(t, started, "the handler to start")

	closed := make(chan struct{})
	go func() {
		sv.Close()
		close(closed)
	}()
	p2ptest.WaitFor(t, closed, "Close to return")
	if err := <-readErr; err == nil {
		t.Fatal("the handler's read succeeded after Close")
	}
	if _, err := io.ReadAll(s); !errors.Is(err, network.ErrReset) {
		t.Fatalf("client read %v, want a reset", err)
	}
	sv.Close() // a second Close returns at once
}

func TestServiceNoHandlerAfterClose(t *testing.T) {
	server, client := p2ptest.NewHost(t), p2ptest.NewHost(t)
	p2ptest.Connect(t, client, server)
	sv := p2p.NewService(server, logtest.Discard)

	var calls atomic.Int32
	handler := func(ctx context.Context, s network.Stream) error {
		calls.Add(1)
		_, err := s.Write([]byte("served"))
		return err
	}
	sv.Handle(testProto, 0, handler)
	// One stream before Close proves the protocol was reachable.
	if got, err := io.ReadAll(open(t, client, server, testProto, "")); err != nil || string(got) != "served" {
		t.Fatalf("before Close: %q, %v", got, err)
	}
	sv.Close()
	const late = protocol.ID("/cocoon/local/late/1")
	sv.Handle(late, 0, handler) // after Close: ignored

	for _, proto := range []protocol.ID{testProto, late} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := client.NewStream(ctx, server.ID(), proto)
		cancel()
		if err == nil {
			got, rerr := io.ReadAll(s)
			s.Reset()
			if rerr == nil {
				t.Errorf("%s after Close: read %q without error", proto, got)
			}
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once (before Close)", n)
	}
}
