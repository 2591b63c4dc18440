package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

// Handshake frame types, as on the wire.
const (
	frameEvidence byte = 1
	frameReject   byte = 2
	frameNone     byte = 3
	frameAsk      byte = 4
)

var attestProto = p2p.ProtocolID("local", attest.ProtocolName, attest.ProtocolVersion)

// rawPeer is a plain host that speaks the handshake by hand.
func rawPeer(t testing.TB) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hc := p2p.DefaultHostConfig()
	hc.Listen = nil
	h, err := p2p.NewHost(hc, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// exchangeRaw sends one frame to the responder and reads its answer.
func exchangeRaw(ctx context.Context, h host.Host, to peer.ID, typ byte, payload []byte) (byte, []byte, error) {
	s, err := h.NewStream(ctx, to, attestProto)
	if err != nil {
		return 0, nil, err
	}
	defer s.Reset()
	if _, err := s.Write(p2p.AppendFrame(nil, typ, payload)); err != nil {
		return 0, nil, err
	}
	fr := p2p.NewFrameReader(s, 1<<20, 0)
	rt, rp, err := fr.Next()
	return rt, append([]byte(nil), rp...), err
}

func devEvidence(t testing.TB, pub crypto.PubKey, expiry time.Time) []byte {
	t.Helper()
	return sealedDevEvidence(t, pub, expiry, nil, nil)
}

// sealedDevEvidence is dev evidence binding sealKey, presented with
// shownKey in its place when shownKey is not nil.
func sealedDevEvidence(t testing.TB, pub crypto.PubKey, expiry time.Time, sealKey, shownKey []byte) []byte {
	t.Helper()
	ev, err := dev.Issuer{}.Issue(context.Background(), pub, expiry, sealKey)
	if err != nil {
		t.Fatal(err)
	}
	if shownKey != nil {
		ev.SealKey = shownKey
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResponderAnswers(t *testing.T) {
	clock := clocktest.New(t0)
	b := newNode(t, clock)
	client := rawPeer(t)
	ctx := ctxT(t)
	p2ptest.Connect(t, client, b.h)
	_, otherPub := fixedKey(t, 9)
	clientPub := client.Peerstore().PubKey(client.ID())
	own := devEvidence(t, clientPub, t0.Add(time.Hour))

	tests := []struct {
		name       string
		typ        byte
		payload    []byte
		wantType   byte   // 0: the stream is reset without an answer
		wantReason string // in a reject frame
	}{
		{"valid evidence", frameEvidence, own, frameEvidence, ""},
		{"valid evidence with a sealing key", frameEvidence, sealedDevEvidence(t, clientPub, t0.Add(time.Hour), []byte("sealing key"), nil), frameEvidence, ""},
		{"sealing key swapped", frameEvidence, sealedDevEvidence(t, clientPub, t0.Add(time.Hour), []byte("sealing key"), []byte("proxy's key")), frameReject, "not the v2 binding"},
		{"sealing key too long", frameEvidence, sealedDevEvidence(t, clientPub, t0.Add(time.Hour), nil, make([]byte, attest.MaxSealKey+1)), frameReject, "malformed evidence"},
		{"not JSON", frameEvidence, []byte("{"), frameReject, "decoding evidence"},
		{"JSON of the wrong shape", frameEvidence, []byte(`{"expiry":"soon"}`), frameReject, "decoding evidence"},
		{"another peer's evidence", frameEvidence, devEvidence(t, otherPub, t0.Add(time.Hour)), frameReject, "not bound"},
		{"expired evidence", frameEvidence, devEvidence(t, client.Peerstore().PubKey(client.ID()), t0), frameReject, "expired"},
		{"empty evidence", frameEvidence, []byte(`{"kind":"dev"}`), frameReject, "no report data"},
		{"unknown frame type", 9, own, 0, ""},
		{"a rejection first", frameReject, []byte("no"), 0, ""},
		{"oversized frame", frameEvidence, make([]byte, 257<<10), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, payload, err := exchangeRaw(ctx, client, b.h.ID(), tt.typ, tt.payload)
			if tt.wantType == 0 {
				if !errors.Is(err, network.ErrReset) {
					t.Fatalf("got frame %d %q, %v; want a reset", typ, payload, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if typ != tt.wantType {
				t.Fatalf("got frame type %d (%q), want %d", typ, payload, tt.wantType)
			}
			switch typ {
			case frameReject:
				if !strings.Contains(string(payload), tt.wantReason) {
					t.Fatalf("rejection %q, want it to mention %q", payload, tt.wantReason)
				}
			case frameEvidence:
				var ev attest.Evidence
				if err := json.Unmarshal(payload, &ev); err != nil {
					t.Fatal(err)
				}
				if _, err := (dev.Validator{}).Validate(ctx, &ev, b.h.Peerstore().PubKey(b.h.ID()), t0); err != nil {
					t.Fatalf("the responder's own evidence: %v", err)
				}
			}
		})
	}
	// Only the valid evidence earned a verdict.
	p2ptest.Eventually(t, "the responder's verdict", func() bool { _, ok := b.hs.Verified(client.ID()); return ok })
	if n := b.issuer.calls.Load(); n != 1 {
		t.Fatalf("the responder issued %d times, want 1", n)
	}
}

// panicCounter counts the Service's "stream handler panicked" records.
type panicCounter struct{ n atomic.Int32 }

func (p *panicCounter) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panicked") {
		p.n.Add(1)
	}
	return nil
}
func (p *panicCounter) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicCounter) WithGroup(string) slog.Handler      { return p }

// FuzzEvidence feeds arbitrary bytes as the evidence payload through the
// validation path the handshaker uses: DecodeEvidence, then the dev
// validator. Decoded evidence is within its limits; accepted evidence must
// really be bound (sealing key included), live and not too long, and its
// verdict carries the bound sealing key.
func FuzzEvidence(f *testing.F) {
	_, pub := fixedKey(f, 1)
	_, other := fixedKey(f, 2)
	now := t0
	f.Add(devEvidence(f, pub, now.Add(time.Hour)))
	f.Add(devEvidence(f, pub, now.Add(dev.MaxValidity)))
	f.Add(devEvidence(f, other, now.Add(time.Hour)))
	f.Add(devEvidence(f, pub, now))
	f.Add(sealedDevEvidence(f, pub, now.Add(time.Hour), []byte("sealing key"), nil))
	f.Add(sealedDevEvidence(f, pub, now.Add(time.Hour), []byte("sealing key"), []byte("other key")))
	f.Add(sealedDevEvidence(f, pub, now.Add(time.Hour), []byte("sealing key"), []byte{}))
	f.Add([]byte(`{"kind":"dev","expiry":1,"report_data":"AA==","seal_key":"AAAA"}`))
	f.Add([]byte(`{"kind":"dev","expiry":-9223372036854775808,"report_data":"AA=="}`))
	f.Add([]byte(`{"kind":"tdx","expiry":1,"report_data":"","quote":"AAAA"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dec, err := attest.DecodeEvidence(data)
		if err != nil {
			if !errors.Is(err, attest.ErrFormat) {
				t.Fatalf("decoding error without ErrFormat: %v", err)
			}
			return
		}
		ev := *dec
		if len(data) > attest.MaxEvidenceSize || len(ev.SealKey) > attest.MaxSealKey || len(ev.ReportData) > attest.ReportDataSize {
			t.Fatalf("decoded evidence over its limits: %d bytes, sealing key %d, report data %d", len(data), len(ev.SealKey), len(ev.ReportData))
		}
		// JSON round trip of what decoded.
		b, err := json.Marshal(&ev)
		if err != nil {
			t.Fatal(err)
		}
		var again attest.Evidence
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatal(err)
		}
		if again.Kind != ev.Kind || again.Expiry != ev.Expiry || !bytes.Equal(again.ReportData, ev.ReportData) || !bytes.Equal(again.Quote, ev.Quote) || !bytes.Equal(again.SealKey, ev.SealKey) {
			t.Fatalf("JSON round trip changed %+v into %+v", ev, again)
		}

		v, err := dev.Validator{}.Validate(context.Background(), &ev, pub, now)
		if err != nil {
			for _, sentinel := range []error{attest.ErrKind, attest.ErrBinding, attest.ErrExpired, attest.ErrTooLong, attest.ErrEmptyReport, attest.ErrFormat} {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("rejection without a documented reason: %v", err)
		}
		want, err := attest.Binding(pub, time.Unix(ev.Expiry, 0), ev.SealKey)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.ReportData, want[:]) || ev.Kind != dev.Kind {
			t.Fatalf("accepted unbound evidence %+v", ev)
		}
		if !bytes.Equal(v.SealKey, ev.SealKey) {
			t.Fatalf("verdict carries sealing key %x, the evidence %x", v.SealKey, ev.SealKey)
		}
		if v.Tier != attest.TierDev || !v.Live(now) || v.Expiry.Sub(now) > dev.MaxValidity {
			t.Fatalf("accepted evidence gave verdict %+v", v)
		}
	})
}

// FuzzHandshakeResponder sends one arbitrary frame to a real responder.
// It must never panic (the Service would hide a panic; its log shows it),
// and must answer evidence exactly when the dev validator accepts the
// payload, or when the frame says, with nothing in it, that the peer
// presents no evidence (it then holds no verdict on the peer).
func FuzzHandshakeResponder(f *testing.F) {
	client := rawPeer(f)
	h := p2ptest.NewHost(f)
	panics := &panicCounter{}
	log := slog.New(panics)
	clock := clocktest.New(t0)
	// The fuzzer is one peer sending thousands of frames: no bucket.
	hs := attest.NewHandshaker(h, dev.Issuer{}, nil, dev.Validator{}, attest.Config{Network: "local", Now: clock.Now, Limits: noLimits}, log)
	sv := p2p.NewService(h, log)
	hs.Register(sv)
	f.Cleanup(sv.Close)
	p2ptest.Connect(f, client, h)
	ctx := context.Background()
	clientPub := client.Peerstore().PubKey(client.ID())

	f.Add(frameEvidence, devEvidence(f, clientPub, t0.Add(time.Hour)))
	f.Add(frameEvidence, []byte(`{"kind":"dev","expiry":1,"report_data":"AA=="}`))
	f.Add(frameEvidence, []byte(`[]`))
	f.Add(frameReject, []byte("go away"))
	f.Add(byte(0), []byte{})
	f.Add(frameNone, []byte{})
	f.Add(frameNone, []byte("0"))
	f.Fuzz(func(t *testing.T, typ byte, payload []byte) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		rt, rp, err := exchangeRaw(ctx, client, h.ID(), typ, payload)
		if n := panics.n.Load(); n > 0 {
			t.Fatalf("the responder panicked on frame %d %q", typ, payload)
		}
		var ev *attest.Evidence
		valid := typ == frameEvidence
		if valid {
			var derr error
			ev, derr = attest.DecodeEvidence(payload)
			valid = derr == nil
		}
		if valid {
			_, verr := dev.Validator{}.Validate(ctx, ev, clientPub, t0)
			valid = verr == nil
		}
		none := typ == frameNone && len(payload) == 0 // answered with evidence, no verdict
		if none {
			if _, ok := hs.Verified(client.ID()); ok && err == nil {
				t.Fatal("the responder holds a verdict on a peer that presented no evidence")
			}
			valid = true
		}
		switch {
		case err != nil:
			if typ == frameEvidence && len(payload) <= 64<<10 {
				t.Fatalf("evidence frame answered by %v, want an answer", err)
			}
		case rt == frameEvidence && !valid:
			t.Fatalf("responder accepted %q", payload)
		case rt == frameReject && valid:
			t.Fatalf("responder rejected valid evidence: %s", rp)
		case rt != frameEvidence && rt != frameReject:
			t.Fatalf("responder answered frame type %d", rt)
		}
	})
}
