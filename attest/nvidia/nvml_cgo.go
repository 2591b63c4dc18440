//go:build cgo

package nvidia

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ErrNoNVML means this machine cannot collect NVIDIA evidence: the binary
// was built without cgo, or libnvidia-ml.so (the NVIDIA driver) is not
// installed. Retrying cannot help until the driver is installed.
var ErrNoNVML = errors.New("NVML unavailable: no NVIDIA driver (libnvidia-ml.so) or built without cgo")

// Collector gathers NVIDIA confidential-computing evidence through NVML.
type Collector struct {
	lib nvml.Interface
}

// NewCollector collects through the machine's NVML (libnvidia-ml.so.1,
// loaded at each Collect).
func NewCollector() *Collector { return &Collector{lib: nvml.New()} }

// NewCollectorWithLibrary collects through lib, e.g. one of go-nvml's mock
// servers (whose confidential-computing functions must be set).
func NewCollectorWithLibrary(lib nvml.Interface) *Collector { return &Collector{lib: lib} }

// Collect initialises NVML, reads the machine's CC capability, state and
// ready state, and for every GPU its attestation certificate chain and an
// attestation report over nonce (use Nonce of the binding), then shuts
// NVML down. A failing CC call is recorded in the evidence (System.Err,
// GPU.CertErr, GPU.ReportErr) rather than failing Collect, so that the
// verifier can say why (on a GPU with CC off the report and certificate
// calls fail). Collect fails with ErrNoNVML when NVML cannot be loaded,
// and fails when there are no GPUs. It makes one report per GPU (about a
// second on real hardware): call it once per validity window.
func (c *Collector) Collect(ctx context.Context, nonce [32]byte) (*Evidence, error) {
	if ret := c.lib.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			return nil, fmt.Errorf("%w: nvml init: %v", ErrNoNVML, ret)
		}
		return nil, fmt.Errorf("nvml init: %v", ret)
	}
	defer c.lib.Shutdown()

	ev := &Evidence{}
	s := &ev.System
	var serr []string
	if caps, ret := c.lib.SystemGetConfComputeCapabilities(); ret == nvml.SUCCESS {
		s.CPUCaps, s.GPUsCaps = caps.CpuCaps, caps.GpusCaps
	} else {
		serr = append(serr, "capabilities: "+ret.Error())
	}
	if st, ret := c.lib.SystemGetConfComputeState(); ret == nvml.SUCCESS {
		s.Environment, s.Feature, s.DevTools = st.Environment, st.CcFeature, st.DevToolsMode
	} else {
		serr = append(serr, "state: "+ret.Error())
	}
	if r, ret := c.lib.SystemGetConfComputeGpusReadyState(); ret == nvml.SUCCESS {
		s.Ready = r
	} else {
		serr = append(serr, "ready state: "+ret.Error())
	}
	s.Err = clip(strings.Join(serr, "; "))

	n, ret := c.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml device count: %v", ret)
	}
	if n == 0 {
		return nil, ErrNoGPU
	}
	if n > MaxGPUs {
		return nil, fmt.Errorf("%d GPUs, at most %d", n, MaxGPUs)
	}
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dev, ret := c.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml gpu %d: %v", i, ret)
		}
		ev.GPUs = append(ev.GPUs, collectGPU(dev, nonce))
	}
	return ev, nil
}

func collectGPU(dev nvml.Device, nonce [32]byte) GPU {
	var g GPU
	if u, ret := dev.GetUUID(); ret == nvml.SUCCESS {
		g.UUID = clip(u)
	}
	if name, ret := dev.GetName(); ret == nvml.SUCCESS {
		g.Name = clip(name)
	}
	cert, ret := dev.GetConfComputeGpuCertificate()
	switch {
	case ret != nvml.SUCCESS:
		g.CertErr = "certificate: " + ret.Error()
	case int(cert.AttestationCertChainSize) > len(cert.AttestationCertChain):
		g.CertErr = fmt.Sprintf("certificate: chain size %d", cert.AttestationCertChainSize)
	default:
		chain, err := splitChain(cert.AttestationCertChain[:cert.AttestationCertChainSize])
		if err != nil {
			g.CertErr = clip("certificate: " + err.Error())
		}
		g.Chain = chain
	}
	rep := nvml.ConfComputeGpuAttestationReport{Nonce: nonce}
	ret = dev.GetConfComputeGpuAttestationReport(&rep)
	switch {
	case ret != nvml.SUCCESS:
		g.ReportErr = "report: " + ret.Error()
	case rep.AttestationReportSize == 0 || int(rep.AttestationReportSize) > len(rep.AttestationReport):
		g.ReportErr = fmt.Sprintf("report: size %d", rep.AttestationReportSize)
	default:
		g.Report = append([]byte(nil), rep.AttestationReport[:rep.AttestationReportSize]...)
	}
	return g
}

// splitChain turns NVML's attestation certificate chain (PEM
// certificates, leaf first; concatenated DER is accepted too) into DER
// certificates, at most MaxChain.
func splitChain(b []byte) ([][]byte, error) {
	var out [][]byte
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, blk.Bytes)
		}
	}
	if len(out) == 0 {
		certs, err := x509.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor DER: %w", err)
		}
		for _, c := range certs {
			out = append(out, c.Raw)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty chain")
	}
	if len(out) > MaxChain {
		return nil, fmt.Errorf("%d certificates, at most %d", len(out), MaxChain)
	}
	for _, c := range out {
		if len(c) > MaxCertBytes {
			return nil, fmt.Errorf("certificate of %d bytes, at most %d", len(c), MaxCertBytes)
		}
	}
	return out, nil
}

// clip shortens s to what the encoding holds.
func clip(s string) string {
	if len(s) > maxString {
		return s[:maxString]
	}
	return s
}
