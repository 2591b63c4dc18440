package p2p_test

import (
	"context"
	"crypto/rand"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func TestHostConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*p2p.HostConfig)
		want   string // "" means valid
	}{
		{"default", func(*p2p.HostConfig) {}, ""},
		{"no listener", func(c *p2p.HostConfig) { c.Listen = nil }, ""},
		{"bad listen address", func(c *p2p.HostConfig) { c.Listen = []string{"127.0.0.1:4001"} }, "listen"},
		{"zero streams per peer", func(c *p2p.HostConfig) { c.MaxStreamsPerPeer = 0 }, "max_streams_per_peer"},
		{"streams below per peer", func(c *p2p.HostConfig) { c.MaxStreams = c.MaxStreamsPerPeer - 1 }, "max_streams"},
		{"zero conns low", func(c *p2p.HostConfig) { c.ConnsLow = 0 }, "conns_low"},
		{"high below low", func(c *p2p.HostConfig) { c.ConnsHigh = c.ConnsLow - 1 }, "conns_high"},
		{"max below high", func(c *p2p.HostConfig) { c.MaxConns = c.ConnsHigh - 1 }, "max_conns"},
		{"private relay", func(c *p2p.HostConfig) { c.Private, c.RelayService = true, true }, "relay_service"},
		{"private without listener", func(c *p2p.HostConfig) { c.Private, c.Listen = true, nil }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := p2p.DefaultHostConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestNewHostRefusesInvalidConfig(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p2p.DefaultHostConfig()
	cfg.MaxStreamsPerPeer = 0
	if h, err := p2p.NewHost(cfg, key); err == nil {
		h.Close()
		t.Fatal("NewHost accepted an invalid config")
	}
}

func TestNewHost(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p2p.DefaultHostConfig() // loopback TCP and QUIC
	h, err := p2p.NewHost(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	want, _ := peer.IDFromPrivateKey(key)
	if h.ID() != want {
		t.Fatalf("host ID %s, want the key's %s", h.ID(), want)
	}
	if len(h.Addrs()) < 2 {
		t.Fatalf("listening on %v, want TCP and QUIC", h.Addrs())
	}
	for _, a := range h.Addrs() {
		if !manet.IsIPLoopback(a) {
			t.Errorf("listening on non-loopback %s", a)
		}
	}

	noListen := p2p.DefaultHostConfig()
	noListen.Listen = nil
	key2, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	dialer, err := p2p.NewHost(noListen, key2)
	if err != nil {
		t.Fatal(err)
	}
	defer dialer.Close()
	if addrs := dialer.Addrs(); len(addrs) != 0 {
		t.Fatalf("a host without listen addresses listens on %v", addrs)
	}

	// The dial-only host reaches the listener and talks over a stream.
	const proto = "/cocoon/local/echo/1"
	h.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		io.Copy(s, s)
	})
	p2ptest.Connect(t, dialer, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := dialer.NewStream(ctx, h.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "ping" {
		t.Fatalf("echo %q", got)
	}
}

func TestDialPrefersTCP(t *testing.T) {
	server := newDualHost(t)
	client := p2ptest.NewHost(t)
	p2ptest.Connect(t, client, server)
	conns := client.Network().ConnsToPeer(server.ID())
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	if _, err := conns[0].RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
		t.Fatalf("connected over %s, want TCP", conns[0].RemoteMultiaddr())
	}
}

// newDualHost listens on loopback TCP and QUIC, as nodes do by default.
func newDualHost(t *testing.T) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.NewHost(p2p.DefaultHostConfig(), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
