package inference_test

import (
	"context"
	"encoding/binary"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// TestServeBoundsSlowRequesters: slowloris on an inference stream. A
// requester that sends nothing, trickles its request a byte at a time,
// sends a frame header and then nothing, or goes quiet after a request,
// has its stream closed once ServeConfig.FirstRequest (or Idle) passes,
// the handler is never called for a request that did not arrive whole,
// and ServeRequests returns, so no goroutine is left waiting on it.
func TestServeBoundsSlowRequesters(t *testing.T) {
	const wait = 300 * time.Millisecond
	cfg := inference.ServeConfig{FirstRequest: wait, Idle: wait, MaxDuration: time.Minute}
	req := request("m")
	req.Body = []byte(`{"messages":[{"role":"user","content":"` + strings.Repeat("a", 200) + `"}]}`) // 5 s at a byte per 20 ms
	whole := p2p.AppendFrame(nil, inference.FrameRequest, mustRequest(t, req))
	tests := []struct {
		name   string
		send   func(s network.Stream, stop <-chan struct{})
		served int64
	}{
		{"nothing", func(network.Stream, <-chan struct{}) {}, 0},
		{"a request trickled a byte per 20 ms", func(s network.Stream, stop <-chan struct{}) {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for _, b := range whole {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := s.Write([]byte{b}); err != nil {
					return
				}
			}
		}, 0},
		{"a header claiming a whole request frame, then nothing", func(s network.Stream, _ <-chan struct{}) {
			s.Write(append(binary.AppendUvarint(nil, inference.MaxRequestFrame+2), p2p.FrameVersion, inference.FrameRequest))
		}, 0},
		{"one request, then idle", func(s network.Stream, _ <-chan struct{}) { s.Write(whole) }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client, sv := hostPair(t)
			var served, returned atomic.Int64
			sv.Handle(inferenceProto, 0, func(ctx context.Context, s network.Stream) error {
				defer returned.Add(1)
				return inference.ServeRequests(ctx, s, cfg, okCheck, func(ctx context.Context, req *inference.Request, fw *p2p.FrameWriter) error {
					served.Add(1)
					return answer(ctx, req, fw)
				})
			})
			start := time.Now()
			s, err := client.NewStream(t.Context(), server.ID(), inferenceProto)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Reset()
			stop := make(chan struct{})
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				tt.send(s, stop)
			}()
			defer func() {
				close(stop)
				<-sent
			}()
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, s) // the answer, if any, until the server ends the stream
			took := time.Since(start)
			if took < wait {
				t.Errorf("the stream ended after %s, before the %s wait", took, wait)
			}
			if took > wait+5*time.Second {
				t.Errorf("the stream ended only after %s (wait %s)", took, wait)
			}
			p2ptest.Eventually(t, "ServeRequests to return", func() bool { return returned.Load() == 1 })
			if n := served.Load(); n != tt.served {
				t.Errorf("the handler served %d requests, want %d", n, tt.served)
			}
			t.Logf("stream ended after %s", took.Round(time.Millisecond))
		})
	}
}

func mustRequest(t *testing.T, req *inference.Request) []byte {
	t.Helper()
	p, err := inference.AppendRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
