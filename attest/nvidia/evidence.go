package nvidia

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Nonce is the 32-byte nonce a GPU attestation report is made over for a
// binding (attest.Binding): SHA-256 of the 64-byte binding. The binding
// already carries its own domain tag, so no further tag is added. The
// collector passes it to the GPU, which places it in the SPDM
// GET_MEASUREMENTS request it signs; the verifier recomputes it from the
// binding of the peer it is talking to.
func Nonce(binding [64]byte) [32]byte { return sha256.Sum256(binding[:]) }

// Evidence is the NVIDIA confidential-computing evidence of one machine,
// as carried (encoded) in attest.Evidence.GPU.
type Evidence struct {
	System System
	GPUs   []GPU
}

// System is the machine-wide confidential-computing state as NVML reports
// it; NVML has no per-GPU CC mode, so it applies to every GPU. Values are
// NVML's (nvml.CC_SYSTEM_*); the collector stores them unchanged.
type System struct {
	CPUCaps     uint32 // CC_SYSTEM_CPU_CAPS_*: none, AMD SEV, Intel TDX, ...
	GPUsCaps    uint32 // CC_SYSTEM_GPUS_CC_CAPABLE or _NOT_CAPABLE
	Environment uint32 // CC_SYSTEM_ENVIRONMENT_UNAVAILABLE, _SIM or _PROD
	Feature     uint32 // CC_SYSTEM_FEATURE_ENABLED or _DISABLED: CC on or off
	DevTools    uint32 // CC_SYSTEM_DEVTOOLS_MODE_ON or _OFF
	Ready       uint32 // CC_ACCEPTING_CLIENT_REQUESTS_TRUE or _FALSE
	// Err is what NVML said when one of the calls above failed (their
	// values are then zero), empty when all succeeded.
	Err string
}

// NVML's values for the System fields (copied from nvml.h so that this
// file builds without cgo).
const (
	gpusCCCapable   = 1 // CC_SYSTEM_GPUS_CC_CAPABLE
	environmentSim  = 1 // CC_SYSTEM_ENVIRONMENT_SIM
	environmentProd = 2 // CC_SYSTEM_ENVIRONMENT_PROD
	featureEnabled  = 1 // CC_SYSTEM_FEATURE_ENABLED
	devToolsOn      = 1 // CC_SYSTEM_DEVTOOLS_MODE_ON
	acceptingWork   = 1 // CC_ACCEPTING_CLIENT_REQUESTS_TRUE
)

// CCOn reports whether the CC feature is enabled.
func (s System) CCOn() bool { return s.Feature == featureEnabled }

// String summarises s the way gpucheck prints it, e.g. "CC capable, CC off".
func (s System) String() string {
	capable := "CC not capable"
	if s.GPUsCaps == gpusCCCapable {
		capable = "CC capable"
	}
	state := "CC off"
	if s.CCOn() {
		state = "CC on"
		if s.DevTools == devToolsOn {
			state = "CC on (devtools)"
		}
	}
	env := map[uint32]string{0: "unavailable", environmentSim: "sim", environmentProd: "prod"}[s.Environment]
	if env == "" {
		env = fmt.Sprintf("environment(%d)", s.Environment)
	}
	ready := "not ready"
	if s.Ready == acceptingWork {
		ready = "ready"
	}
	out := fmt.Sprintf("%s, %s, environment %s, %s", capable, state, env, ready)
	if s.Err != "" {
		out += " (" + s.Err + ")"
	}
	return out
}

// GPU is the evidence of one GPU.
type GPU struct {
	UUID string
	Name string
	// Chain is the GPU's attestation certificate chain, DER, leaf first,
	// as NVML returns it (nvmlConfComputeGpuCertificate_t's
	// attestationCertChain, converted from PEM); its leaf key signs Report.
	Chain [][]byte
	// Report is the attestation report exactly as NVML returns it: the
	// SPDM 1.1 GET_MEASUREMENTS request (which holds the nonce) followed by
	// the signed MEASUREMENTS response.
	Report []byte
	// CertErr and ReportErr are what NVML said when fetching the chain or
	// the report failed (the field is then empty).
	CertErr   string
	ReportErr string
}

// Limits of the encoding, checked before anything is allocated.
const (
	// MaxSize bounds an encoded Evidence. One Hopper GPU takes about
	// 7.5 KB, eight about 47 KB (a 4 KB report and 1.5 KB of certificates
	// of its own each; the certificates they share are stored once).
	MaxSize      = 256 << 10
	MaxGPUs      = 16
	MaxChain     = 8    // certificates in one GPU's chain
	MaxCerts     = 64   // distinct certificates in one Evidence
	MaxCertBytes = 4096 // one DER certificate
	MaxReport    = 8192 // NVML's CC_GPU_ATTESTATION_REPORT_SIZE
	maxString    = 255
)

// ErrFormat means GPU evidence could not be decoded: truncated, too
// large, an unknown version, or garbage. Retrying the same bytes cannot
// help.
var ErrFormat = errors.New("malformed nvidia evidence")

var magic = [4]byte{'N', 'V', 'C', 'C'}

// version is the encoding version; Decode rejects any other.
const version = 1

// Encode writes ev in the versioned binary form that goes into
// attest.Evidence.GPU:
//
//	"NVCC" | version u8 = 1
//	system: cpu caps, gpus caps, environment, feature, devtools, ready (u32 each) | err (str)
//	certificate count u8, each: length u16 | DER         (distinct certificates, stored once)
//	GPU count u8, each: uuid (str) | name (str)
//	    | chain length u8, each: index u8 into the certificates
//	    | report length u16 | report | cert err (str) | report err (str)
//
// Integers are big-endian; a str is a u8 length and its bytes. Encode
// fails when ev exceeds a limit (MaxGPUs, MaxChain, MaxCertBytes,
// MaxReport, MaxSize, 255-byte strings).
func Encode(ev *Evidence) ([]byte, error) {
	if len(ev.GPUs) > MaxGPUs {
		return nil, fmt.Errorf("encoding nvidia evidence: %d GPUs, at most %d", len(ev.GPUs), MaxGPUs)
	}
	var certs [][]byte
	index := map[string]int{}
	for i, g := range ev.GPUs {
		if len(g.Chain) > MaxChain {
			return nil, fmt.Errorf("encoding nvidia evidence: gpu %d: %d certificates, at most %d", i, len(g.Chain), MaxChain)
		}
		if len(g.Report) > MaxReport {
			return nil, fmt.Errorf("encoding nvidia evidence: gpu %d: report of %d bytes, at most %d", i, len(g.Report), MaxReport)
		}
		for _, c := range g.Chain {
			if len(c) == 0 || len(c) > MaxCertBytes {
				return nil, fmt.Errorf("encoding nvidia evidence: gpu %d: certificate of %d bytes, want 1 to %d", i, len(c), MaxCertBytes)
			}
			if _, ok := index[string(c)]; !ok {
				index[string(c)] = len(certs)
				certs = append(certs, c)
			}
		}
	}
	if len(certs) > MaxCerts {
		return nil, fmt.Errorf("encoding nvidia evidence: %d distinct certificates, at most %d", len(certs), MaxCerts)
	}
	var b bytes.Buffer
	b.Write(magic[:])
	b.WriteByte(version)
	s := ev.System
	for _, v := range []uint32{s.CPUCaps, s.GPUsCaps, s.Environment, s.Feature, s.DevTools, s.Ready} {
		b.Write(binary.BigEndian.AppendUint32(nil, v))
	}
	if err := putString(&b, "system error", s.Err); err != nil {
		return nil, err
	}
	b.WriteByte(byte(len(certs)))
	for _, c := range certs {
		b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(c))))
		b.Write(c)
	}
	b.WriteByte(byte(len(ev.GPUs)))
	for _, g := range ev.GPUs {
		for _, f := range []struct{ name, s string }{{"uuid", g.UUID}, {"name", g.Name}} {
			if err := putString(&b, f.name, f.s); err != nil {
				return nil, err
			}
		}
		b.WriteByte(byte(len(g.Chain)))
		for _, c := range g.Chain {
			b.WriteByte(byte(index[string(c)]))
		}
		b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(g.Report))))
		b.Write(g.Report)
		for _, f := range []struct{ name, s string }{{"certificate error", g.CertErr}, {"report error", g.ReportErr}} {
			if err := putString(&b, f.name, f.s); err != nil {
				return nil, err
			}
		}
	}
	if b.Len() > MaxSize {
		return nil, fmt.Errorf("encoding nvidia evidence: %d bytes, at most %d", b.Len(), MaxSize)
	}
	return b.Bytes(), nil
}

func putString(b *bytes.Buffer, name, s string) error {
	if len(s) > maxString {
		return fmt.Errorf("encoding nvidia evidence: %s of %d bytes, at most %d", name, len(s), maxString)
	}
	b.WriteByte(byte(len(s)))
	b.WriteString(s)
	return nil
}

// Decode parses evidence written by Encode. It checks len(b) against
// MaxSize before anything else and every length against its limit before
// using it; errors wrap ErrFormat. The returned slices do not alias b.
// Certificates shared between GPUs are shared slices: treat them as
// read-only.
func Decode(b []byte) (*Evidence, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFormat, len(b), MaxSize)
	}
	d := decoder{b: b}
	if m := d.next(4); m == nil || [4]byte(m) != magic {
		return nil, fmt.Errorf("%w: not nvidia evidence", ErrFormat)
	}
	if v := d.u8(); v != version {
		if d.err != nil {
			return nil, d.err
		}
		return nil, fmt.Errorf("%w: version %d, want %d", ErrFormat, v, version)
	}
	ev := &Evidence{}
	s := &ev.System
	for _, p := range []*uint32{&s.CPUCaps, &s.GPUsCaps, &s.Environment, &s.Feature, &s.DevTools, &s.Ready} {
		*p = d.u32()
	}
	s.Err = d.str()
	certs := make([][]byte, d.limit(int(d.u8()), MaxCerts, "certificates"))
	for i := range certs {
		certs[i] = d.bytes(d.limit(int(d.u16()), MaxCertBytes, "certificate bytes"))
		if d.err == nil && len(certs[i]) == 0 {
			d.fail("empty certificate")
		}
	}
	n := d.limit(int(d.u8()), MaxGPUs, "GPUs")
	for i := 0; i < n && d.err == nil; i++ {
		g := GPU{UUID: d.str(), Name: d.str()}
		chain := d.limit(int(d.u8()), MaxChain, "chain certificates")
		for j := 0; j < chain && d.err == nil; j++ {
			k := int(d.u8())
			if d.err == nil && k >= len(certs) {
				d.fail(fmt.Sprintf("certificate index %d of %d", k, len(certs)))
				break
			}
			if d.err == nil {
				g.Chain = append(g.Chain, certs[k])
			}
		}
		g.Report = d.bytes(d.limit(int(d.u16()), MaxReport, "report bytes"))
		g.CertErr = d.str()
		g.ReportErr = d.str()
		ev.GPUs = append(ev.GPUs, g)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrFormat, len(d.b))
	}
	return ev, nil
}

// decoder reads big-endian fields from b; after the first error every
// read returns zero values and err keeps the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrFormat, msg)
	}
}

func (d *decoder) next(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail("truncated")
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u8() uint8 {
	if p := d.next(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.next(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.next(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

// limit returns n, or 0 after recording an error when n exceeds max.
func (d *decoder) limit(n, max int, what string) int {
	if d.err != nil {
		return 0
	}
	if n > max {
		d.fail(fmt.Sprintf("%d %s, at most %d", n, what, max))
		return 0
	}
	return n
}

func (d *decoder) bytes(n int) []byte {
	p := d.next(n)
	if p == nil || n == 0 {
		return nil
	}
	return bytes.Clone(p)
}

func (d *decoder) str() string { return string(d.next(int(d.u8()))) }
