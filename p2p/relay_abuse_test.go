package p2p_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

const echoProto = "/cocoon/test/echo/1"

// privateEcho is a private host with no listener that echoes echoProto.
func privateEcho(t *testing.T) host.Host {
	t.Helper()
	wc := p2p.DefaultHostConfig()
	wc.Listen, wc.Private = nil, true
	h := newHostWith(t, wc)
	h.SetStreamHandler(echoProto, func(s network.Stream) {
		defer s.Close()
		io.Copy(s, s)
	})
	return h
}

// hostWithKey is a dialling host with identity key.
func hostWithKey(t *testing.T, key crypto.PrivKey) host.Host {
	t.Helper()
	hc := p2p.DefaultHostConfig()
	hc.Listen = nil
	h, err := p2p.NewHost(hc, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// echoThrough connects h to dest at addrs (relayed) and echoes a message.
func echoThrough(ctx context.Context, h host.Host, dest peer.ID, addrs []ma.Multiaddr) error {
	if err := h.Connect(ctx, peer.AddrInfo{ID: dest, Addrs: addrs}); err != nil {
		return err
	}
	s, err := h.NewStream(network.WithAllowLimitedConn(ctx, "test"), dest, echoProto)
	if err != nil {
		return err
	}
	defer s.Close()
	msg := []byte("through the relay")
	if _, err := s.Write(msg); err != nil {
		return err
	}
	s.CloseWrite()
	_, err = io.ReadAll(s)
	return err
}

// TestRelayServesOnlyAdmitted: a proxy's relay is not open to strangers
// (issue 17, item 2). A stranger cannot reserve a slot nor open a circuit
// to a private worker; strangers' circuits cannot take the worker's
// circuits and lock an honest proxy out; an admitted peer holds at most
// its share of circuits.
func TestRelayServesOnlyAdmitted(t *testing.T) {
	gate := &fakeGate{admitted: map[peer.ID]bool{}}
	rc := p2p.DefaultHostConfig()
	rc.RelayMaxCircuits = 16 // libp2p's default, as before this round
	relayHost, _ := newRelay(t, rc, gate)
	relayInfo := peer.AddrInfo{ID: relayHost.ID(), Addrs: relayHost.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	worker := privateEcho(t)
	gate.add(worker.ID())
	slots := p2p.NewReservations(worker, nil)
	if err := slots.Reserve(ctx, relayInfo); err != nil {
		t.Fatalf("an admitted worker reserving: %v", err)
	}
	addrs := slots.Addrs()

	// A stranger cannot reserve a slot.
	stranger := privateEcho(t)
	if err := p2p.NewReservations(stranger, nil).Reserve(ctx, relayInfo); err == nil {
		t.Fatal("a stranger reserved a slot on the relay")
	}

	// 16 strangers, each trying a circuit to the worker: all refused.
	var strangersIn int
	for range 16 {
		s := p2ptest.NewHost(t)
		if err := echoThrough(ctx, s, worker.ID(), addrs); err == nil {
			strangersIn++
		}
	}
	if strangersIn != 0 {
		t.Fatalf("%d of 16 strangers reached the private worker through the relay", strangersIn)
	}

	// An admitted peer opening 8 circuits at once (8 hosts with one key)
	// holds at most its share.
	greedyKey, greedyID := p2ptest.NewKey(t)
	gate.add(greedyID)
	var greedyIn int
	for range 8 {
		if err := echoThrough(ctx, hostWithKey(t, greedyKey), worker.ID(), addrs); err == nil {
			greedyIn++
		}
	}
	if greedyIn > rc.RelayCircuitsPerPeer || greedyIn == 0 {
		t.Fatalf("an admitted peer holds %d circuits, want 1 to %d", greedyIn, rc.RelayCircuitsPerPeer)
	}

	// The honest proxy still reaches the worker.
	proxyKey, proxyID := p2ptest.NewKey(t)
	gate.add(proxyID)
	if err := echoThrough(ctx, hostWithKey(t, proxyKey), worker.ID(), addrs); err != nil {
		t.Fatalf("an honest proxy locked out of the private worker: %v", err)
	}
	t.Logf("strangers: 0 of 1 reservations, %d of 16 circuits; an admitted peer: %d of 8 circuits; the honest proxy got through", strangersIn, greedyIn)
}

// A relay configuration with impossible limits is refused by name.
func TestRelayConfigValidate(t *testing.T) {
	cfg := p2p.DefaultHostConfig()
	cfg.RelayService = true
	cfg.RelayCircuitsPerPeer = cfg.RelayMaxCircuits + 1
	if err := cfg.Validate(); err == nil {
		t.Fatal("relay_circuits_per_peer over relay_max_circuits accepted")
	}
	_, err := p2p.NewRelay(p2ptest.NewHost(t), p2p.DefaultHostConfig(), (*fakeGate)(nil), logtest.Discard)
	if err == nil {
		t.Fatal("a relay started on a host without relay_service")
	}
}
