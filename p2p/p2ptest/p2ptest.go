// Package p2ptest provides test helpers for real loopback libp2p hosts;
// only tests import it.
package p2ptest

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/p2p"
)

// timeout bounds Connect and WaitFor.
const timeout = 10 * time.Second

// NewHost starts a libp2p host with a fresh Ed25519 key and the default
// config, listening on 127.0.0.1 TCP at a free port. It is closed at cleanup;
// closing it earlier is fine.
func NewHost(tb testing.TB) host.Host {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := p2p.DefaultHostConfig()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := p2p.NewHost(cfg, key)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// NewKey makes a fresh Ed25519 peer key and its peer ID.
func NewKey(tb testing.TB) (crypto.PrivKey, peer.ID) {
	tb.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return k, id
}

// Connect dials b from a at b's listen addresses, failing the test if that
// takes more than 10 s.
func Connect(tb testing.TB, a, b host.Host) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		tb.Fatal(err)
	}
}

// WaitFor returns the next value from ch, or the zero value once ch is
// closed, and fails the test, naming what it waited for, if neither happens
// within 10 s.
func WaitFor[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		tb.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// Eventually polls cond every 2 ms until it holds, failing tb after 10 s.
// For conditions nothing signals, like a connection noticed closed.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}
