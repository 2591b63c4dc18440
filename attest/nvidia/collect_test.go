//go:build cgo

package nvidia_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/cocoon-mesh/cocoon/attest/nvidia"
)

// gpu is one mock GPU's attestation identity.
type gpu struct {
	chain [][]byte
	key   *ecdsa.PrivateKey
}

// dgx is go-nvml's mock DGX H100 (8 GPUs) with its confidential-computing
// functions set: it reports sys, and each GPU hands out its chain and
// signs a report over the nonce it is asked for, as long as CC is on (with
// CC off, as on the H200 measured here, both calls fail).
func dgx(t *testing.T, p *pki, sys nvidia.System) (*server.Server, []gpu) {
	t.Helper()
	s := dgxh100.New()
	s.SystemGetConfComputeCapabilitiesFunc = func() (nvml.ConfComputeSystemCaps, nvml.Return) {
		return nvml.ConfComputeSystemCaps{CpuCaps: sys.CPUCaps, GpusCaps: sys.GPUsCaps}, nvml.SUCCESS
	}
	s.SystemGetConfComputeStateFunc = func() (nvml.ConfComputeSystemState, nvml.Return) {
		return nvml.ConfComputeSystemState{Environment: sys.Environment, CcFeature: sys.Feature, DevToolsMode: sys.DevTools}, nvml.SUCCESS
	}
	s.SystemGetConfComputeGpusReadyStateFunc = func() (uint32, nvml.Return) { return sys.Ready, nvml.SUCCESS }
	gpus := make([]gpu, len(s.Devices))
	for i, d := range s.Devices {
		chain, key := p.leaf(t, "GH100 test GPU")
		gpus[i] = gpu{chain, key}
		dev := d.(*server.Device)
		dev.GetConfComputeGpuCertificateFunc = func() (nvml.ConfComputeGpuCertificate, nvml.Return) {
			var c nvml.ConfComputeGpuCertificate
			if sys.Feature != nvml.CC_SYSTEM_FEATURE_ENABLED {
				return c, nvml.ERROR_NOT_SUPPORTED
			}
			c.AttestationCertChainSize = uint32(copy(c.AttestationCertChain[:], chainPEM(chain)))
			return c, nvml.SUCCESS
		}
		dev.GetConfComputeGpuAttestationReportFunc = func(r *nvml.ConfComputeGpuAttestationReport) nvml.Return {
			if sys.Feature != nvml.CC_SYSTEM_FEATURE_ENABLED {
				return nvml.ERROR_NOT_SUPPORTED
			}
			r.AttestationReportSize = uint32(copy(r.AttestationReport[:], makeReport(t, key, r.Nonce)))
			return nvml.SUCCESS
		}
	}
	return s, gpus
}

// collect gathers and encodes the evidence of s for nonce.
func collect(t *testing.T, s *server.Server, nonce [32]byte) []byte {
	t.Helper()
	ev, err := nvidia.NewCollectorWithLibrary(s).Collect(context.Background(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := nvidia.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

// TestAccepted: CC on, ready, each GPU's report over the peer's nonce and
// signed by a key chaining to the (throwaway) root.
func TestAccepted(t *testing.T) {
	p := newPKI(t, "test")
	s, _ := dgx(t, p, ccOn)
	nonce := nonceFor(t, 1)
	blob := collect(t, s, nonce)
	t.Logf("8 GPUs: %d-byte blob", len(blob))
	res, err := p.verifier(t).Verify(blob, nonce, now)
	if err != nil || !res.OK() {
		t.Fatalf("Verify = %+v, %v; want accepted", res, err)
	}
	if len(res.GPUs) != 8 {
		t.Fatalf("%d GPU results, want 8", len(res.GPUs))
	}
	for i, g := range res.GPUs {
		if !g.Report || !g.Nonce || !g.Chain || !g.Signature || g.Err != nil || g.UUID == "" || g.Name != "NVIDIA H100 80GB HBM3" {
			t.Errorf("gpu %d: %+v, want all passed", i, g)
		}
	}
}

// TestRejected covers each reason to refuse GPU evidence.
func TestRejected(t *testing.T) {
	p := newPKI(t, "test")
	other := newPKI(t, "other")
	nonce := nonceFor(t, 1)
	with := func(f func(*nvidia.System)) nvidia.System { s := ccOn; f(&s); return s }
	for _, tc := range []struct {
		name   string
		sys    nvidia.System
		tweak  func(t *testing.T, s *server.Server, gpus []gpu) // change the mock before collecting
		verify func(t *testing.T) *nvidia.Verifier
		nonce  [32]byte  // the verifier's expected nonce; nonce when zero
		at     time.Time // verification time; now when zero
		want   []error
		says   string // the error text includes this
		check  func(t *testing.T, r nvidia.Result)
	}{{
		name: "cc off", sys: with(func(s *nvidia.System) { s.Feature = 0; s.Ready = 0 }),
		want: []error{nvidia.ErrCCOff, nvidia.ErrNoReport, nvidia.ErrChain}, says: "CC off",
		check: func(t *testing.T, r nvidia.Result) {
			if !r.Capable || r.CCOn || r.GPUs[0].Report {
				t.Errorf("result %+v, want capable, CC off, no report", r)
			}
		},
	}, {
		name: "devtools", sys: with(func(s *nvidia.System) { s.DevTools = 1 }), want: []error{nvidia.ErrDevTools},
	}, {
		name: "simulated", sys: with(func(s *nvidia.System) { s.Environment = 1 }), want: []error{nvidia.ErrSimulated},
	}, {
		name: "not ready", sys: with(func(s *nvidia.System) { s.Ready = 0 }), want: []error{nvidia.ErrNotReady},
		check: func(t *testing.T, r nvidia.Result) {
			if r.Ready || !r.CCOn || r.GPUs[0].Err != nil {
				t.Errorf("result %+v, want only the ready state failing", r)
			}
		},
	}, {
		name: "not capable", sys: with(func(s *nvidia.System) { s.GPUsCaps = 0 }), want: []error{nvidia.ErrNotCapable},
	}, {
		name: "nonce of another peer", sys: ccOn, nonce: nonceFor(t, 2), want: []error{nvidia.ErrNonce},
		check: func(t *testing.T, r nvidia.Result) {
			if g := r.GPUs[0]; g.Nonce || !g.Signature || !g.Chain {
				t.Errorf("gpu 0 %+v, want only the nonce failing", g)
			}
		},
	}, {
		name: "chain to another root", sys: ccOn, verify: other.verifier, want: []error{nvidia.ErrChain},
	}, {
		name: "production root", sys: ccOn, want: []error{nvidia.ErrChain},
		verify: func(t *testing.T) *nvidia.Verifier { v, err := nvidia.NewVerifier(); must(t, err); return v },
	}, {
		name: "chain expired", sys: ccOn, at: now.Add(2 * 365 * 24 * time.Hour), want: []error{nvidia.ErrChain},
	}, {
		name: "missing report", sys: ccOn, want: []error{nvidia.ErrNoReport},
		tweak: func(t *testing.T, s *server.Server, _ []gpu) {
			s.Devices[3].(*server.Device).GetConfComputeGpuAttestationReportFunc = func(*nvml.ConfComputeGpuAttestationReport) nvml.Return {
				return nvml.ERROR_UNKNOWN
			}
		},
		check: func(t *testing.T, r nvidia.Result) {
			for i, g := range r.GPUs {
				if (i == 3) != (g.Err != nil) || (i == 3 && (g.Report || !g.Chain)) {
					t.Errorf("gpu %d: %+v, want only gpu 3 failing, for its report", i, g)
				}
			}
		},
	}, {
		name: "missing chain", sys: ccOn, want: []error{nvidia.ErrChain},
		tweak: func(t *testing.T, s *server.Server, _ []gpu) {
			s.Devices[0].(*server.Device).GetConfComputeGpuCertificateFunc = func() (nvml.ConfComputeGpuCertificate, nvml.Return) {
				return nvml.ConfComputeGpuCertificate{}, nvml.ERROR_UNKNOWN
			}
		},
	}, {
		name: "report signed by another gpu", sys: ccOn, want: []error{nvidia.ErrSignature},
		tweak: func(t *testing.T, s *server.Server, gpus []gpu) {
			s.Devices[0].(*server.Device).GetConfComputeGpuAttestationReportFunc = func(r *nvml.ConfComputeGpuAttestationReport) nvml.Return {
				r.AttestationReportSize = uint32(copy(r.AttestationReport[:], makeReport(t, gpus[1].key, r.Nonce)))
				return nvml.SUCCESS
			}
		},
	}, {
		name: "tampered report", sys: ccOn, want: []error{nvidia.ErrSignature},
		tweak: func(t *testing.T, s *server.Server, gpus []gpu) {
			s.Devices[0].(*server.Device).GetConfComputeGpuAttestationReportFunc = func(r *nvml.ConfComputeGpuAttestationReport) nvml.Return {
				b := makeReport(t, gpus[0].key, r.Nonce)
				b[37+20] ^= 1 // a measurement value
				r.AttestationReportSize = uint32(copy(r.AttestationReport[:], b))
				return nvml.SUCCESS
			}
		},
	}, {
		name: "garbage report", sys: ccOn, want: []error{nvidia.ErrReport},
		tweak: func(t *testing.T, s *server.Server, gpus []gpu) {
			s.Devices[0].(*server.Device).GetConfComputeGpuAttestationReportFunc = func(r *nvml.ConfComputeGpuAttestationReport) nvml.Return {
				r.AttestationReportSize = uint32(copy(r.AttestationReport[:], "not an SPDM transcript, just some bytes"))
				return nvml.SUCCESS
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s, gpus := dgx(t, p, tc.sys)
			if tc.tweak != nil {
				tc.tweak(t, s, gpus)
			}
			blob := collect(t, s, nonce)
			v := p.verifier(t)
			if tc.verify != nil {
				v = tc.verify(t)
			}
			want, at := tc.nonce, tc.at
			if want == ([32]byte{}) {
				want = nonce
			}
			if at.IsZero() {
				at = now
			}
			res, err := v.Verify(blob, want, at)
			if err == nil || res.OK() {
				t.Fatalf("accepted: %+v", res)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v\nwant it to wrap %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %v, want it to say %q", err, tc.says)
			}
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
}

// TestCollectCCOffRecordsNVML: with CC off (the H200 here) Collect still
// succeeds and records what NVML said, so the verifier can say "CC off".
func TestCollectCCOffRecordsNVML(t *testing.T) {
	s, _ := dgx(t, newPKI(t, "test"), with0())
	ev, err := nvidia.NewCollectorWithLibrary(s).Collect(context.Background(), nonceFor(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.System.String(); !strings.HasPrefix(got, "CC capable, CC off") {
		t.Errorf("system %q, want it to start with \"CC capable, CC off\"", got)
	}
	if g := ev.GPUs[0]; g.Report != nil || g.Chain != nil || g.ReportErr == "" || g.CertErr == "" {
		t.Errorf("gpu 0: %+v, want no report, no chain, and NVML's errors", g)
	}
}

func with0() nvidia.System { s := ccOn; s.Feature, s.Ready = 0, 0; return s }

func TestCollectSystemCallsFail(t *testing.T) {
	s, _ := dgx(t, newPKI(t, "test"), ccOn)
	s.SystemGetConfComputeStateFunc = func() (nvml.ConfComputeSystemState, nvml.Return) {
		return nvml.ConfComputeSystemState{}, nvml.ERROR_NOT_SUPPORTED
	}
	ev, err := nvidia.NewCollectorWithLibrary(s).Collect(context.Background(), nonceFor(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.System.Err, "state") {
		t.Errorf("system error %q, want it to name the state call", ev.System.Err)
	}
	v := newPKI(t, "x").verifier(t)
	if _, err := v.VerifyEvidence(ev, nonceFor(t, 1), now); !errors.Is(err, nvidia.ErrCCOff) {
		t.Errorf("err = %v, want ErrCCOff", err)
	}
}

func TestCollectCanceled(t *testing.T) {
	s, _ := dgx(t, newPKI(t, "test"), ccOn)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := nvidia.NewCollectorWithLibrary(s).Collect(ctx, nonceFor(t, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestCollectNoGPU(t *testing.T) {
	s, _ := dgx(t, newPKI(t, "test"), ccOn)
	s.Devices = nil
	if _, err := nvidia.NewCollectorWithLibrary(s).Collect(context.Background(), nonceFor(t, 1)); !errors.Is(err, nvidia.ErrNoGPU) {
		t.Fatalf("err = %v, want ErrNoGPU", err)
	}
}

// TestCollectRealNVML uses this machine's NVML: without a driver, Collect
// fails with ErrNoNVML; with one (the GPU machine), it collects.
func TestCollectRealNVML(t *testing.T) {
	ev, err := nvidia.NewCollector().Collect(context.Background(), nonceFor(t, 1))
	switch {
	case errors.Is(err, nvidia.ErrNoNVML):
		t.Logf("no NVIDIA driver here: %v", err)
	case err != nil:
		t.Fatalf("err = %v, want nil or ErrNoNVML", err)
	default:
		t.Logf("collected from %d GPUs: %s", len(ev.GPUs), ev.System)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
