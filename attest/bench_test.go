package attest_test

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// benchNode is a host with a handshaker whose own evidence is already
// issued (warm), as on a running node.
func benchNode(b *testing.B) (host.Host, *attest.Handshaker) {
	b.Helper()
	h := p2ptest.NewHost(b)
	hs := attest.NewHandshaker(h, dev.Issuer{}, nil, dev.Validator{}, attest.Config{Network: "local", Limits: noLimits}, logtest.Discard)
	sv := p2p.NewService(h, logtest.Discard)
	hs.Register(sv)
	b.Cleanup(sv.Close)
	if _, err := hs.Evidence(context.Background()); err != nil {
		b.Fatal(err)
	}
	return h, hs
}

// connectBench opens and closes a connection per iteration; attested runs
// Attest on each, with verdicts forgotten in between (cold: every
// handshake validates afresh) unless warm (the verdicts of the last
// connection still live, as on a reconnect).
func connectBench(b *testing.B, attested, warm bool) {
	hd, dialer := benchNode(b)
	hl, listener := benchNode(b)
	info := peer.AddrInfo{ID: hl.ID(), Addrs: hl.Addrs()}
	ctx := context.Background()
	for b.Loop() {
		if err := hd.Connect(ctx, info); err != nil {
			b.Fatal(err)
		}
		if attested {
			if _, err := dialer.Attest(ctx, hl.ID()); err != nil {
				b.Fatal(err)
			}
			if !warm {
				dialer.Forget(hl.ID())
				listener.Forget(hd.ID())
			}
		}
		hd.Network().ClosePeer(hl.ID())
	}
}

// BenchmarkConnect is the baseline: a new libp2p connection (TCP, TLS,
// yamux) on loopback, closed again.
func BenchmarkConnect(b *testing.B) { connectBench(b, false, false) }

// BenchmarkConnectAttested adds the mutual attestation handshake with dev
// evidence: one stream, one frame each way, both validations. The
// difference from BenchmarkConnect is what attestation adds to a new
// connection with warm caches (own evidence issued); the target is 1 ms.
func BenchmarkConnectAttested(b *testing.B) { connectBench(b, true, false) }

// BenchmarkConnectAttestedWarm reconnects to a peer whose verdict is still
// live: the handshake is skipped, so attestation adds nothing.
func BenchmarkConnectAttestedWarm(b *testing.B) { connectBench(b, true, true) }

// BenchmarkHandshake is the attestation handshake alone, on a connection
// that stays open: what attestation adds to connection setup, measured
// without the noise of TCP and TLS.
func BenchmarkHandshake(b *testing.B) {
	hd, dialer := benchNode(b)
	hl, listener := benchNode(b)
	ctx := context.Background()
	if err := hd.Connect(ctx, peer.AddrInfo{ID: hl.ID(), Addrs: hl.Addrs()}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := dialer.Attest(ctx, hl.ID()); err != nil {
			b.Fatal(err)
		}
		dialer.Forget(hl.ID())
		listener.Forget(hd.ID())
	}
}
