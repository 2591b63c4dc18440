package nvidia

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/attest"
)

// Collecting wraps a TEE issuer (TDX) so that its evidence also carries
// the machine's GPU evidence, made over Nonce of the same binding. GPU
// evidence that cannot be gathered fails the issue: a node configured to
// present its GPUs does not quietly present less.
type Collecting struct {
	Inner     attest.Issuer
	Collector *Collector
}

// Issue issues the inner evidence, then adds the GPU evidence, made over
// the nonce of the inner evidence's binding (which covers sealKey too).
func (c Collecting) Issue(ctx context.Context, pub crypto.PubKey, expiry time.Time, sealKey []byte) (*attest.Evidence, error) {
	ev, err := c.Inner.Issue(ctx, pub, expiry, sealKey)
	if err != nil {
		return nil, err
	}
	if len(ev.ReportData) != 64 {
		return nil, fmt.Errorf("gpu evidence: inner evidence carries %d bytes of report data, want the 64-byte binding", len(ev.ReportData))
	}
	gpu, err := c.Collector.Collect(ctx, Nonce([64]byte(ev.ReportData)))
	if err != nil {
		return nil, fmt.Errorf("gpu evidence: %w", err)
	}
	if ev.GPU, err = Encode(gpu); err != nil {
		return nil, fmt.Errorf("gpu evidence: %w", err)
	}
	return ev, nil
}

// Upgrading wraps a TEE validator (TDX): evidence it accepts at TierTEE
// that also carries GPU evidence the Verifier accepts, over the nonce of
// the same (already checked) binding, earns TierTEEGPU. GPU evidence that
// fails leaves the verdict at TierTEE, and says why in the log: the TEE is
// still proved, the GPUs are not.
type Upgrading struct {
	Inner    attest.Validator
	Verifier *Verifier
	Log      *slog.Logger
}

// Validate runs the inner validator, then checks the GPU evidence.
func (u Upgrading) Validate(ctx context.Context, ev *attest.Evidence, pub crypto.PubKey, now time.Time) (attest.Verdict, error) {
	v, err := u.Inner.Validate(ctx, ev, pub, now)
	if err != nil || len(ev.GPU) == 0 || v.Tier != attest.TierTEE {
		return v, err
	}
	// The inner validator checked that ReportData is this peer's binding,
	// sealing key included, so GPU reports made for another peer or
	// another sealing key fail the nonce.
	if len(ev.ReportData) != 64 {
		return v, nil
	}
	res, gerr := u.Verifier.Verify(ev.GPU, Nonce([64]byte(ev.ReportData)), now)
	if gerr != nil || !res.OK() {
		if u.Log != nil {
			u.Log.Info("gpu evidence not accepted; tier tee", "err", gerr)
		}
		return v, nil
	}
	v.Tier = attest.TierTEEGPU
	return v, nil
}
