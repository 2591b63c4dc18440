package nvidia_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/attest/nvidia"
)

// sampleNonce is the nonce NVIDIA's sample Hopper report was made over.
const sampleNonce = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"

// sample is NVIDIA's published Hopper report and chain (testdata/README.md)
// on a machine reporting CC on and ready.
func sample(t testing.TB) *nvidia.Evidence {
	t.Helper()
	h, err := os.ReadFile("testdata/nvtrust_hopper_report.hex")
	if err != nil {
		t.Fatal(err)
	}
	report, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.ReadFile("testdata/nvtrust_hopper_chain.pem")
	if err != nil {
		t.Fatal(err)
	}
	var chain [][]byte
	for blk, rest := pem.Decode(p); blk != nil; blk, rest = pem.Decode(rest) {
		chain = append(chain, blk.Bytes)
	}
	return &nvidia.Evidence{System: ccOn, GPUs: []nvidia.GPU{{UUID: "GPU-sample", Name: "NVIDIA H100", Chain: chain, Report: report}}}
}

func mustNonce(t testing.TB, s string) [32]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad nonce %q", s)
	}
	return [32]byte(b)
}

// TestNVIDIASample checks the production verifier, with the pinned NVIDIA
// root, on a real Hopper report and certificate chain.
func TestNVIDIASample(t *testing.T) {
	v, err := nvidia.NewVerifier()
	if err != nil {
		t.Fatal(err)
	}
	ev := sample(t)
	blob, err := nvidia.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Verify(blob, mustNonce(t, sampleNonce), now)
	if err != nil || !res.OK() {
		t.Fatalf("Verify = %+v, %v; want accepted", res, err)
	}
	g := res.GPUs[0]
	if !g.Report || !g.Nonce || !g.Chain || !g.Signature {
		t.Errorf("gpu result %+v, want all passed", g)
	}
	rep, err := nvidia.ParseReport(ev.GPUs[0].Report)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Measurements) != 64 {
		t.Errorf("%d measurements, want 64", len(rep.Measurements))
	}
	t.Logf("sample: %d-byte report, %d-byte blob", len(ev.GPUs[0].Report), len(blob))

	// The same report for another peer's nonce, and one tampered byte.
	if _, err := v.Verify(blob, nonceFor(t, 1), now); !errors.Is(err, nvidia.ErrNonce) {
		t.Errorf("other nonce: err = %v, want ErrNonce", err)
	}
	ev.GPUs[0].Report = bytes.Clone(ev.GPUs[0].Report)
	ev.GPUs[0].Report[len(ev.GPUs[0].Report)-nvidia.SignatureLen-1] ^= 1 // last byte of the opaque data
	if _, err := v.VerifyEvidence(ev, mustNonce(t, sampleNonce), now); !errors.Is(err, nvidia.ErrSignature) {
		t.Errorf("tampered: err = %v, want ErrSignature", err)
	}
}

// TestPinnedRoot checks the embedded root against its pin and that a
// root not matching its pin is refused.
func TestPinnedRoot(t *testing.T) {
	if _, err := nvidia.NewVerifier(); err != nil {
		t.Fatal(err)
	}
	p := newPKI(t, "test")
	var wrong [32]byte
	if _, err := nvidia.NewVerifierPinned(p.rootPEM(), wrong); err == nil {
		t.Fatal("a root not matching its pin was accepted")
	}
	// A verifier for a throwaway root refuses NVIDIA's real chain.
	if _, err := p.verifier(t).VerifyEvidence(sample(t), mustNonce(t, sampleNonce), now); !errors.Is(err, nvidia.ErrChain) {
		t.Fatalf("err = %v, want ErrChain", err)
	}
}

// TestProductionRejectsTestRoot checks that evidence chaining to a
// throwaway root fails the production verifier.
func TestProductionRejectsTestRoot(t *testing.T) {
	p := newPKI(t, "test")
	chain, key := p.leaf(t, "gpu0")
	nonce := nonceFor(t, 1)
	ev := &nvidia.Evidence{System: ccOn, GPUs: []nvidia.GPU{{UUID: "GPU-0", Chain: chain, Report: makeReport(t, key, nonce)}}}
	if _, err := p.verifier(t).VerifyEvidence(ev, nonce, now); err != nil {
		t.Fatalf("test verifier: %v", err)
	}
	v, err := nvidia.NewVerifier()
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyEvidence(ev, nonce, now)
	if !errors.Is(err, nvidia.ErrChain) || res.OK() || res.GPUs[0].Chain {
		t.Fatalf("production verifier: %+v, %v; want ErrChain", res, err)
	}
}

func TestNonce(t *testing.T) {
	var b [64]byte
	for i := range b {
		b[i] = byte(i)
	}
	if got, want := nvidia.Nonce(b), sha256.Sum256(b[:]); got != want {
		t.Fatalf("Nonce = %x, want SHA-256 of the binding %x", got, want)
	}
	if nonceFor(t, 1) == nonceFor(t, 2) {
		t.Fatal("two peers got the same nonce")
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	p := newPKI(t, "test")
	ev := &nvidia.Evidence{System: ccOn}
	ev.System.Err = "state: something"
	for i := range 8 {
		chain, key := p.leaf(t, "gpu")
		ev.GPUs = append(ev.GPUs, nvidia.GPU{UUID: "GPU-" + string(rune('a'+i)), Name: "NVIDIA H100 80GB HBM3", Chain: chain, Report: makeReport(t, key, nonceFor(t, 1))})
	}
	ev.GPUs[7].Chain, ev.GPUs[7].Report, ev.GPUs[7].CertErr, ev.GPUs[7].ReportErr = nil, nil, "certificate: Not Supported", "report: Not Supported"
	blob, err := nvidia.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := nvidia.Decode(blob)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("round trip changed the evidence:\n got %+v\nwant %+v", got, ev)
	}
	var raw int
	for _, g := range ev.GPUs {
		for _, c := range g.Chain {
			raw += len(c)
		}
	}
	if len(blob) >= raw {
		t.Errorf("blob of %d bytes does not share certificates (%d bytes of them)", len(blob), raw)
	}
}

func TestEncodeLimits(t *testing.T) {
	for name, ev := range map[string]*nvidia.Evidence{
		"gpus":   {GPUs: make([]nvidia.GPU, nvidia.MaxGPUs+1)},
		"report": {GPUs: []nvidia.GPU{{Report: make([]byte, nvidia.MaxReport+1)}}},
		"chain":  {GPUs: []nvidia.GPU{{Chain: make([][]byte, nvidia.MaxChain+1)}}},
		"cert":   {GPUs: []nvidia.GPU{{Chain: [][]byte{make([]byte, nvidia.MaxCertBytes+1)}}}},
		"string": {GPUs: []nvidia.GPU{{UUID: strings.Repeat("x", 256)}}},
	} {
		if _, err := nvidia.Encode(ev); err == nil {
			t.Errorf("%s: Encode accepted evidence over the limit", name)
		}
	}
}

// TestDecodeRejects covers a blob too large, garbage, every truncation, a
// trailing byte and an unknown version.
func TestDecodeRejects(t *testing.T) {
	blob, err := nvidia.Encode(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"too large": make([]byte, nvidia.MaxSize+1),
		"garbage":   []byte("not evidence at all"),
		"empty":     nil,
		"trailing":  append(bytes.Clone(blob), 0),
		"version":   append(append([]byte("NVCC"), 2), blob[5:]...),
	}
	for n := range len(blob) {
		bad["truncated"+string(rune(n))] = blob[:n]
	}
	for name, b := range bad {
		if _, err := nvidia.Decode(b); !errors.Is(err, nvidia.ErrFormat) {
			t.Errorf("%q: err = %v, want ErrFormat", name, err)
		}
	}
	v, _ := nvidia.NewVerifier()
	if _, err := v.Verify(make([]byte, nvidia.MaxSize+1), [32]byte{}, now); !errors.Is(err, nvidia.ErrFormat) {
		t.Errorf("Verify of an oversized blob: err = %v, want ErrFormat", err)
	}
}

func TestParseReportRejects(t *testing.T) {
	good := sample(t).GPUs[0].Report
	for name, mut := range map[string]func([]byte) []byte{
		"short":       func(b []byte) []byte { return b[:40] },
		"version":     func(b []byte) []byte { b[0] = 0x12; return b },
		"code":        func(b []byte) []byte { b[37+1] = 0x61; return b },
		"record len":  func(b []byte) []byte { b[37+7] = 0xFF; return b },
		"no sig":      func(b []byte) []byte { return b[:len(b)-1] },
		"extra":       func(b []byte) []byte { return append(b, 0) },
		"block count": func(b []byte) []byte { b[37+4]--; return b },
	} {
		if _, err := nvidia.ParseReport(mut(bytes.Clone(good))); err == nil {
			t.Errorf("%s: ParseReport accepted a malformed report", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	blob, err := nvidia.Encode(sample(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add([]byte("NVCC\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := nvidia.Decode(b)
		if err != nil {
			if !errors.Is(err, nvidia.ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		again, err := nvidia.Encode(ev)
		if err != nil {
			t.Fatalf("decoded evidence does not encode: %v", err)
		}
		ev2, err := nvidia.Decode(again)
		if err != nil || !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("re-encoding changed the evidence: %v", err)
		}
	})
}

func FuzzParseReport(f *testing.F) {
	f.Add(sample(f).GPUs[0].Report)
	f.Add(make([]byte, 45))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := nvidia.ParseReport(b)
		if err != nil {
			return
		}
		if len(r.Signed)+len(r.Signature) != len(b) || len(r.Signature) != nvidia.SignatureLen {
			t.Fatalf("signed %d + signature %d != report %d", len(r.Signed), len(r.Signature), len(b))
		}
	})
}
