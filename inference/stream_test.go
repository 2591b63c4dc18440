package inference_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

var inferenceProto = p2p.ProtocolID("local", inference.ProtocolName, inference.ProtocolVersion)

func TestReadRequest(t *testing.T) {
	good := &inference.Request{ID: "r1", Kind: inference.KindChat, Model: "sim-small", Body: []byte(`{"messages":[]}`)}
	goodPayload, err := inference.AppendRequest(nil, good)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		send    func(s network.Stream) error
		wantErr error // nil: want good
		anyErr  bool  // any error will do
	}{
		{name: "WriteRequest", send: func(s network.Stream) error { return inference.WriteRequest(s, good) }},
		{name: "chunk frame instead", send: func(s network.Stream) error {
			_, err := s.Write(p2p.AppendFrame(nil, inference.FrameChunk, goodPayload))
			return err
		}, wantErr: inference.ErrMalformed},
		{name: "data after the request", send: func(s network.Stream) error {
			_, err := s.Write(append(p2p.AppendFrame(nil, inference.FrameRequest, goodPayload), 0))
			return err
		}, wantErr: inference.ErrMalformed},
		{name: "malformed payload", send: func(s network.Stream) error {
			_, err := s.Write(p2p.AppendFrame(nil, inference.FrameRequest, []byte{0}))
			return err
		}, wantErr: inference.ErrMalformed},
		{name: "frame over the cap", send: func(s network.Stream) error {
			_, err := s.Write(binary.AppendUvarint(nil, inference.MaxRequestFrame+3))
			return err
		}, wantErr: p2p.ErrFrameTooLarge},
		{name: "nothing sent", send: func(s network.Stream) error { return s.CloseWrite() }, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client, sv := hostPair(t)
			type result struct {
				req *inference.Request
				err error
			}
			got := make(chan result, 1)
			sv.Handle(inferenceProto, 0, func(_ context.Context, s network.Stream) error {
				req, err := inference.ReadRequest(s)
				got <- result{req, err}
				return err
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := client.NewStream(ctx, server.ID(), inferenceProto)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Reset()
			if err := tt.send(s); err != nil {
				t.Fatal(err)
			}
			r := p2ptest.WaitFor(t, got, "ReadRequest")
			switch {
			case tt.anyErr:
				if r.err == nil {
					t.Fatalf("got %+v, want an error", r.req)
				}
			case tt.wantErr != nil:
				if !errors.Is(r.err, tt.wantErr) {
					t.Fatalf("got %+v, %v; want %v", r.req, r.err, tt.wantErr)
				}
			default:
				if r.err != nil {
					t.Fatal(r.err)
				}
				assertRequest(t, r.req, good)
			}
		})
	}
}

func TestWatchCancel(t *testing.T) {
	tests := []struct {
		name       string
		peer       func(s network.Stream) error // what the requester does while it waits
		wantCancel bool
	}{
		{"requester resets", func(s network.Stream) error { return s.Reset() }, true},
		{"requester sends more", func(s network.Stream) error { _, err := s.Write([]byte{1}); return err }, true},
		{"requester waits", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client, sv := hostPair(t)
			watching := make(chan struct{})
			cancelled := make(chan bool, 1)
			sv.Handle(inferenceProto, 0, func(_ context.Context, s network.Stream) error {
				if _, err := inference.ReadRequest(s); err != nil {
					return err
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				stop := inference.WatchCancel(s, cancel)
				close(watching)
				if tt.wantCancel {
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Second):
					}
				}
				c := ctx.Err() != nil
				stop() // must return promptly, with the requester still idle
				cancelled <- c
				if c {
					return errors.New("cancelled")
				}
				// The write side still works after stop.
				fw := p2p.NewFrameWriter(s, 0)
				if err := inference.WriteEnd(fw, &inference.End{FinishReason: "stop"}); err != nil {
					return err
				}
				return fw.Flush()
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := client.NewStream(ctx, server.ID(), inferenceProto)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Reset()
			if err := inference.WriteRequest(s, &inference.Request{Kind: inference.KindChat, Model: "m"}); err != nil {
				t.Fatal(err)
			}
			p2ptest.WaitFor(t, watching, "the handler to watch")
			if tt.peer != nil {
				if err := tt.peer(s); err != nil {
					t.Fatal(err)
				}
			}
			if got := p2ptest.WaitFor(t, cancelled, "the handler to finish"); got != tt.wantCancel {
				t.Fatalf("cancelled = %v, want %v", got, tt.wantCancel)
			}
			if !tt.wantCancel {
				rr := inference.NewResponseReader(s)
				ev, err := rr.Next()
				if err != nil || ev.Type != inference.FrameEnd {
					t.Fatalf("after stop: %+v, %v; want End", ev, err)
				}
				if _, err := rr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("after End: %v", err)
				}
			}
		})
	}
}
