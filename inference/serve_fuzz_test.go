package inference_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// FuzzServeRequests writes arbitrary bytes into an inference stream, as a
// requester would, and checks that the serving side always ends: it answers
// what decodes, refuses what does not, and returns, never hanging and never
// panicking. The hosts are libp2p's in-memory mock network.
func FuzzServeRequests(f *testing.F) {
	mn := mocknet.New()
	f.Cleanup(func() { mn.Close() })
	requester, err := mn.GenPeer()
	if err != nil {
		f.Fatal(err)
	}
	server, err := mn.GenPeer()
	if err != nil {
		f.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		f.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		f.Fatal(err)
	}
	const proto = "/cocoon/fuzz/inference/1"
	ended := make(chan error, 1)
	cfg := inference.ServeConfig{FirstRequest: 200 * time.Millisecond, Idle: 200 * time.Millisecond, MaxDuration: time.Second}
	server.SetStreamHandler(proto, func(s network.Stream) {
		ended <- inference.ServeRequests(context.Background(), s, cfg, func() *inference.Error { return nil },
			func(ctx context.Context, req *inference.Request, out *p2p.FrameWriter) error {
				if err := inference.WriteError(out, inference.Errorf(inference.CodeBadRequest, "fuzz: %d bytes", len(req.Body))); err != nil {
					return err
				}
				return out.Flush()
			})
	})
	frame := func(reqs ...*inference.Request) []byte {
		var b bytes.Buffer
		for _, r := range reqs {
			p, err := inference.AppendRequest(nil, r)
			if err != nil {
				f.Fatal(err)
			}
			if err := p2p.WriteFrame(&b, inference.FrameRequest, p); err != nil {
				f.Fatal(err)
			}
		}
		return b.Bytes()
	}
	req := &inference.Request{ID: "r", Kind: inference.KindChat, Model: "m", Body: []byte(`{"messages":[]}`)}
	f.Add(frame(req))
	f.Add(frame(req, req))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := requester.NewStream(ctx, server.ID(), proto)
		if err != nil {
			t.Fatal(err)
		}
		s.Write(b) // the server may reset before reading it all
		s.CloseWrite()
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, s)
		s.Close()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("the server did not end a stream of %d bytes", len(b))
		}
	})
}
