package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestWriteTinyLlamaMetadata(t *testing.T) {
	f := readModel(t, 1)

	tests := []struct {
		key  string
		want any
	}{
		{"general.architecture", "llama"},
		{"general.name", "tiny-llama"},
		{"general.file_type", uint32(0)},
		{"general.alignment", uint32(32)},
		{"llama.context_length", uint32(256)},
		{"llama.embedding_length", uint32(64)},
		{"llama.block_count", uint32(2)},
		{"llama.feed_forward_length", uint32(128)},
		{"llama.attention.head_count", uint32(4)},
		{"llama.attention.head_count_kv", uint32(4)},
		{"llama.rope.dimension_count", uint32(16)},
		{"llama.attention.layer_norm_rms_epsilon", float32(1e-5)},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.bos_token_id", uint32(1)},
		{"tokenizer.ggml.eos_token_id", uint32(2)},
		{"tokenizer.ggml.unknown_token_id", uint32(0)},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := f.kv[tt.key]
			if !ok {
				t.Fatalf("key %q missing", tt.key)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s = %#v, want %#v", tt.key, got, tt.want)
			}
		})
	}
	if got, want := len(f.kv), len(tests)+3; got != want {
		t.Errorf("%d keys, want %d", got, want)
	}
}

func TestWriteTinyLlamaVocabulary(t *testing.T) {
	f := readModel(t, 1)
	tokens, _ := f.kv["tokenizer.ggml.tokens"].([]any)
	scores, _ := f.kv["tokenizer.ggml.scores"].([]any)
	types, _ := f.kv["tokenizer.ggml.token_type"].([]any)
	if len(tokens) != 277 || len(scores) != 277 || len(types) != 277 {
		t.Fatalf("%d tokens, %d scores, %d types; want 277 each", len(tokens), len(scores), len(types))
	}

	tests := []struct {
		id    int
		token string
		typ   int32
	}{
		{0, "<unk>", 2},
		{1, "<s>", 3},
		{2, "</s>", 3},
		{3, "<0x00>", 6},
		{3 + 'A', "<0x41>", 6},
		{258, "<0xFF>", 6},
		{259, "\u2581the", 1},
		{276, "\u2581as", 1},
	}
	for _, tt := range tests {
		if tokens[tt.id] != tt.token || types[tt.id] != tt.typ {
			t.Errorf("token %d = %q type %v, want %q type %d", tt.id, tokens[tt.id], types[tt.id], tt.token, tt.typ)
		}
	}
	seen := map[any]bool{}
	for _, tok := range tokens {
		if seen[tok] {
			t.Errorf("token %q repeats", tok)
		}
		seen[tok] = true
	}
}

func TestWriteTinyLlamaTensors(t *testing.T) {
	f := readModel(t, 1)

	want := []tensorInfo{{name: "token_embd.weight", dims: []uint64{64, 277}}}
	for i := range 2 {
		p := fmt.Sprintf("blk.%d.", i)
		want = append(want,
			tensorInfo{name: p + "attn_norm.weight", dims: []uint64{64}},
			tensorInfo{name: p + "attn_q.weight", dims: []uint64{64, 64}},
			tensorInfo{name: p + "attn_k.weight", dims: []uint64{64, 64}},
			tensorInfo{name: p + "attn_v.weight", dims: []uint64{64, 64}},
			tensorInfo{name: p + "attn_output.weight", dims: []uint64{64, 64}},
			tensorInfo{name: p + "ffn_norm.weight", dims: []uint64{64}},
			tensorInfo{name: p + "ffn_gate.weight", dims: []uint64{64, 128}},
			tensorInfo{name: p + "ffn_up.weight", dims: []uint64{64, 128}},
			tensorInfo{name: p + "ffn_down.weight", dims: []uint64{128, 64}},
		)
	}
	want = append(want,
		tensorInfo{name: "output_norm.weight", dims: []uint64{64}},
		tensorInfo{name: "output.weight", dims: []uint64{64, 277}},
	)
	if len(f.tensors) != len(want) {
		t.Fatalf("%d tensors, want %d", len(f.tensors), len(want))
	}

	if f.dataStart%32 != 0 {
		t.Errorf("tensor data starts at %d, not aligned to 32", f.dataStart)
	}
	var end uint64
	for i, ti := range f.tensors {
		w := want[i]
		if ti.name != w.name || !slices.Equal(ti.dims, w.dims) || ti.typ != 0 {
			t.Errorf("tensor %d = %s %v type %d, want %s %v type 0 (F32)", i, ti.name, ti.dims, ti.typ, w.name, w.dims)
		}
		if ti.offset%32 != 0 {
			t.Errorf("%s: offset %d not aligned to 32", ti.name, ti.offset)
		}
		if ti.offset < end {
			t.Errorf("%s: offset %d overlaps the previous tensor ending at %d", ti.name, ti.offset, end)
		}
		end = ti.offset + 4*ti.elements()
		values := f.values(ti)
		if uint64(len(values)) != ti.elements() {
			t.Fatalf("%s: file ends inside the tensor", ti.name)
		}
		checkValues(t, ti.name, values)
	}
	if size := uint64(len(f.raw)); f.dataStart+end > size {
		t.Errorf("tensor data ends at %d, past the file's %d bytes", f.dataStart+end, size)
	}
	if size := len(f.raw); size < 470_000 || size > 490_000 {
		t.Errorf("model is %d bytes, want about 480 KB", size)
	}
}

// checkValues checks that norms are ones and the rest small random numbers.
func checkValues(t *testing.T, name string, values []float32) {
	t.Helper()
	if strings.HasSuffix(name, "norm.weight") {
		for _, v := range values {
			if v != 1 {
				t.Errorf("%s: value %v, want all ones", name, v)
				return
			}
		}
		return
	}
	var sum, sq float64
	for _, v := range values {
		if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 0.2 {
			t.Errorf("%s: value %v out of range", name, v)
			return
		}
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(len(values))
	mean, std := sum/n, math.Sqrt(sq/n)
	if math.Abs(mean) > 0.005 || std < 0.015 || std > 0.025 {
		t.Errorf("%s: mean %.4f, std %.4f; want about 0 and 0.02", name, mean, std)
	}
}

func TestWriteTinyLlamaDeterministic(t *testing.T) {
	write := func(seed int64) []byte {
		var b bytes.Buffer
		if err := WriteTinyLlama(&b, seed); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a, b, c := write(7), write(7), write(8)
	if !bytes.Equal(a, b) {
		t.Error("the same seed gave different bytes")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave the same bytes")
	}
	if len(a) != len(c) {
		t.Errorf("sizes %d and %d differ between seeds", len(a), len(c))
	}
}

func TestWriteTinyLlamaFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := WriteTinyLlamaFile(path, 3); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := WriteTinyLlama(&want, 3); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Error("file differs from WriteTinyLlama's output")
	}

	if err := WriteTinyLlamaFile(filepath.Join(t.TempDir(), "missing", "tiny.gguf"), 3); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestWriteTinyLlamaWriteError(t *testing.T) {
	errBroken := errors.New("broken")
	if err := WriteTinyLlama(failingWriter{errBroken}, 1); !errors.Is(err, errBroken) {
		t.Errorf("err = %v, want %v", err, errBroken)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// A minimal GGUF reader, independent of the writer.

type file struct {
	raw       []byte
	kv        map[string]any
	tensors   []tensorInfo
	dataStart uint64
}

type tensorInfo struct {
	name   string
	dims   []uint64
	typ    uint32
	offset uint64
}

func (ti tensorInfo) elements() uint64 {
	n := uint64(1)
	for _, d := range ti.dims {
		n *= d
	}
	return n
}

func (f *file) values(ti tensorInfo) []float32 {
	start := f.dataStart + ti.offset
	var vs []float32
	for i := range ti.elements() {
		p := start + 4*i
		if p+4 > uint64(len(f.raw)) {
			break
		}
		vs = append(vs, math.Float32frombits(binary.LittleEndian.Uint32(f.raw[p:])))
	}
	return vs
}

func readModel(t *testing.T, seed int64) *file {
	t.Helper()
	var b bytes.Buffer
	if err := WriteTinyLlama(&b, seed); err != nil {
		t.Fatal(err)
	}
	f, err := parse(b.Bytes())
	if err != nil {
		t.Fatalf("parsing the model: %v", err)
	}
	return f
}

type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil {
		return make([]byte, n)
	}
	if n < 0 || r.pos+n > len(r.b) {
		r.err = fmt.Errorf("truncated at %d", r.pos)
		return make([]byte, max(n, 0))
	}
	p := r.b[r.pos : r.pos+n]
	r.pos += n
	return p
}

func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }

func (r *reader) str() string {
	n := r.u64()
	if n > 1<<20 {
		r.err = fmt.Errorf("string of %d bytes", n)
		return ""
	}
	return string(r.next(int(n)))
}

func (r *reader) value(typ uint32) any {
	switch typ {
	case 4:
		return r.u32()
	case 5:
		return int32(r.u32())
	case 6:
		return math.Float32frombits(r.u32())
	case 8:
		return r.str()
	case 9:
		elem, n := r.u32(), r.u64()
		if n > 1<<20 {
			r.err = fmt.Errorf("array of %d elements", n)
			return nil
		}
		vs := make([]any, 0, n)
		for range n {
			vs = append(vs, r.value(elem))
		}
		return vs
	default:
		if r.err == nil {
			r.err = fmt.Errorf("unexpected value type %d", typ)
		}
		return nil
	}
}

func parse(b []byte) (*file, error) {
	r := &reader{b: b}
	if magic := string(r.next(4)); magic != "GGUF" {
		return nil, fmt.Errorf("magic %q", magic)
	}
	if v := r.u32(); v != 3 {
		return nil, fmt.Errorf("version %d", v)
	}
	nt, nkv := r.u64(), r.u64()
	f := &file{raw: b, kv: map[string]any{}}
	for range nkv {
		k := r.str()
		if _, dup := f.kv[k]; dup {
			return nil, fmt.Errorf("key %q repeats", k)
		}
		f.kv[k] = r.value(r.u32())
	}
	for range nt {
		ti := tensorInfo{name: r.str()}
		nd := r.u32()
		for range nd {
			ti.dims = append(ti.dims, r.u64())
		}
		ti.typ, ti.offset = r.u32(), r.u64()
		f.tensors = append(f.tensors, ti)
	}
	if r.err != nil {
		return nil, r.err
	}
	f.dataStart = (uint64(r.pos) + 31) / 32 * 32
	return f, nil
}
