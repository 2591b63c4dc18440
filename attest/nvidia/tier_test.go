//go:build cgo

package nvidia_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/attest/nvidia"
)

// fakeTEE stands in for the TDX issuer and validator: dev evidence (the
// binding alone) relabelled, accepted at TierTEE.
type fakeTEE struct{}

func (fakeTEE) Issue(ctx context.Context, pub crypto.PubKey, expiry time.Time, sealKey []byte) (*attest.Evidence, error) {
	return dev.Issuer{}.Issue(ctx, pub, expiry, sealKey)
}

func (fakeTEE) Validate(ctx context.Context, ev *attest.Evidence, pub crypto.PubKey, now time.Time) (attest.Verdict, error) {
	v, err := dev.Validator{}.Validate(ctx, &attest.Evidence{Kind: dev.Kind, Expiry: ev.Expiry, ReportData: ev.ReportData, SealKey: ev.SealKey}, pub, now)
	if err != nil {
		return attest.Verdict{}, err
	}
	v.Tier = attest.TierTEE
	return v, nil
}

func TestTierUpgrade(t *testing.T) {
	key := func(seed byte) crypto.PrivKey {
		k, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	p := newPKI(t, "test")
	up := nvidia.Upgrading{Inner: fakeTEE{}, Verifier: p.verifier(t)}
	expiry := now.Add(time.Hour)
	sealKey, otherSealKey := []byte("sealing key"), []byte("another sealing key")
	issueSealed := func(sys nvidia.System, k crypto.PrivKey, seal []byte) *attest.Evidence {
		s, _ := dgx(t, p, sys)
		ev, err := nvidia.Collecting{Inner: fakeTEE{}, Collector: nvidia.NewCollectorWithLibrary(s)}.Issue(context.Background(), k.GetPublic(), expiry, seal)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.SealKey, seal) {
			t.Fatalf("evidence carries sealing key %x, want %x", ev.SealKey, seal)
		}
		return ev
	}
	issue := func(sys nvidia.System, k crypto.PrivKey) *attest.Evidence { return issueSealed(sys, k, nil) }
	a, b := key(1), key(2)
	ccOff := ccOn
	ccOff.Feature = nvml.CC_SYSTEM_FEATURE_DISABLED
	for _, tc := range []struct {
		name string
		ev   *attest.Evidence
		pub  crypto.PubKey
		tier attest.Tier
		err  error
	}{
		{"gpus in cc mode", issue(ccOn, a), a.GetPublic(), attest.TierTEEGPU, nil},
		{"cc off: tee at most", issue(ccOff, a), a.GetPublic(), attest.TierTEE, nil},
		{"no gpu evidence", func() *attest.Evidence { ev := issue(ccOn, a); ev.GPU = nil; return ev }(), a.GetPublic(), attest.TierTEE, nil},
		{"gpu evidence of another peer", func() *attest.Evidence {
			ev := issue(ccOn, a)
			ev.GPU = issue(ccOn, b).GPU
			return ev
		}(), a.GetPublic(), attest.TierTEE, nil},
		{"replayed by another peer", issue(ccOn, a), b.GetPublic(), 0, attest.ErrBinding},
		{"gpus in cc mode with a sealing key", issueSealed(ccOn, a, sealKey), a.GetPublic(), attest.TierTEEGPU, nil},
		{"gpu evidence of another sealing key", func() *attest.Evidence {
			ev := issueSealed(ccOn, a, sealKey)
			ev.GPU = issueSealed(ccOn, a, otherSealKey).GPU
			return ev
		}(), a.GetPublic(), attest.TierTEE, nil},
		{"gpu evidence without the sealing key", func() *attest.Evidence {
			ev := issueSealed(ccOn, a, sealKey)
			ev.GPU = issue(ccOn, a).GPU
			return ev
		}(), a.GetPublic(), attest.TierTEE, nil},
		{"sealing key swapped", func() *attest.Evidence {
			ev := issueSealed(ccOn, a, sealKey)
			ev.SealKey = otherSealKey
			return ev
		}(), a.GetPublic(), 0, attest.ErrBinding},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := up.Validate(context.Background(), tc.ev, tc.pub, now)
			if !errors.Is(err, tc.err) || v.Tier != tc.tier {
				t.Fatalf("verdict %v, err %v; want tier %v, err %v", v.Tier, err, tc.tier, tc.err)
			}
			if err == nil && !bytes.Equal(v.SealKey, tc.ev.SealKey) {
				t.Fatalf("verdict carries sealing key %x, the evidence %x", v.SealKey, tc.ev.SealKey)
			}
		})
	}
}
