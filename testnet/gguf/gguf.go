// Package gguf writes a randomly initialised tiny llama model in the GGUF v3
// format, small enough (about 480 KB) to generate in tests and load into a
// real engine such as ollama. Its output is gibberish, but at temperature 0 it
// is deterministic, so tests can assert exact texts and token counts.
//
// The model: 2 blocks, embedding 64, feed-forward 128, 4 heads and 4 KV heads
// (head size 16, all rotated), context 256, a SentencePiece ("llama")
// vocabulary of 277 tokens (<unk>, <s>, </s>, the 256 byte tokens and a few
// whole words), all tensors F32.
package gguf

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
)

// ContextLength is the model's context length in tokens.
const ContextLength = 256

// Model dimensions.
const (
	embedding   = 64
	blocks      = 2
	feedForward = 128
	heads       = 4
	kvHeads     = 4
	headSize    = embedding / heads
)

// alignment is the GGUF default; general.alignment states it anyway.
const alignment = 32

// Special token ids.
const (
	unknownToken = 0
	bosToken     = 1
	eosToken     = 2
)

// words are the whole-word pieces after the byte tokens.
var words = [...]string{
	"the", "a", "hello", "world", "is", "of", "and", "to", "in",
	"it", "you", "that", "was", "for", "on", "are", "with", "as",
}

// VocabSize is the number of tokens: three specials, 256 bytes and the words.
const VocabSize = 3 + 256 + len(words)

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
const (
	tokenNormal  int32 = 1
	tokenUnknown int32 = 2
	tokenControl int32 = 3
	tokenByte    int32 = 6
)

// GGUF metadata value types.
const (
	typeUint32  uint32 = 4
	typeInt32   uint32 = 5
	typeFloat32 uint32 = 6
	typeString  uint32 = 8
	typeArray   uint32 = 9
)

// ggmlF32 is the ggml tensor type of every tensor.
const ggmlF32 uint32 = 0

// fileTypeAllF32 is general.file_type for a model whose tensors are all F32.
const fileTypeAllF32 uint32 = 0

// initScale is the standard deviation of the random weights.
const initScale = 0.02

type metadata struct {
	key   string
	value any // uint32, float32, string, []string, []float32 or []int32
}

type tensor struct {
	name string
	dims []uint64 // innermost first, as ggml's ne
	ones bool     // a norm: all ones instead of random
}

// WriteTinyLlamaFile writes the model of WriteTinyLlama to path.
func WriteTinyLlamaFile(path string, seed int64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating model file: %w", err)
	}
	if err := WriteTinyLlama(f, seed); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing model file: %w", err)
	}
	return nil
}

// WriteTinyLlama writes a tiny llama model to w. Its weights are drawn from a
// generator seeded with seed: the same seed always gives the same bytes.
func WriteTinyLlama(w io.Writer, seed int64) error {
	md := modelMetadata()
	ts := modelTensors()

	var b []byte
	b = append(b, "GGUF"...)
	b = binary.LittleEndian.AppendUint32(b, 3)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(ts)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(md)))
	for _, m := range md {
		b = appendString(b, m.key)
		b = appendValue(b, m.value)
	}
	var offset uint64
	for _, t := range ts {
		b = appendString(b, t.name)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.dims)))
		for _, d := range t.dims {
			b = binary.LittleEndian.AppendUint64(b, d)
		}
		b = binary.LittleEndian.AppendUint32(b, ggmlF32)
		b = binary.LittleEndian.AppendUint64(b, offset)
		offset = align(offset + 4*t.elements())
	}
	b = pad(b)

	rng := rand.New(rand.NewPCG(uint64(seed), 0x6767756674696e79)) // "ggustiny"
	for _, t := range ts {
		for range t.elements() {
			v := float32(1)
			if !t.ones {
				v = float32(rng.NormFloat64() * initScale)
			}
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		b = pad(b)
	}

	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing model: %w", err)
	}
	return nil
}

func modelMetadata() []metadata {
	tokens := make([]string, 0, VocabSize)
	scores := make([]float32, 0, VocabSize)
	types := make([]int32, 0, VocabSize)
	add := func(text string, score float32, typ int32) {
		tokens = append(tokens, text)
		scores = append(scores, score)
		types = append(types, typ)
	}
	add("<unk>", 0, tokenUnknown)
	add("<s>", 0, tokenControl)
	add("</s>", 0, tokenControl)
	for i := range 256 {
		add(fmt.Sprintf("<0x%02X>", i), 0, tokenByte)
	}
	for i, w := range words {
		add("\u2581"+w, -float32(i+1), tokenNormal)
	}

	return []metadata{
		{"general.architecture", "llama"},
		{"general.name", "tiny-llama"},
		{"general.file_type", fileTypeAllF32},
		{"general.alignment", uint32(alignment)},
		{"llama.context_length", uint32(ContextLength)},
		{"llama.embedding_length", uint32(embedding)},
		{"llama.block_count", uint32(blocks)},
		{"llama.feed_forward_length", uint32(feedForward)},
		{"llama.attention.head_count", uint32(heads)},
		{"llama.attention.head_count_kv", uint32(kvHeads)},
		{"llama.rope.dimension_count", uint32(headSize)},
		{"llama.attention.layer_norm_rms_epsilon", float32(1e-5)},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.bos_token_id", uint32(bosToken)},
		{"tokenizer.ggml.eos_token_id", uint32(eosToken)},
		{"tokenizer.ggml.unknown_token_id", uint32(unknownToken)},
	}
}

// modelTensors lists the tensors in llama.cpp's order, with its shapes: a
// weight of ne=[in, out] maps in inputs to out outputs.
func modelTensors() []tensor {
	ts := []tensor{{name: "token_embd.weight", dims: []uint64{embedding, uint64(VocabSize)}}}
	for i := range blocks {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			tensor{name: p + "attn_norm.weight", dims: []uint64{embedding}, ones: true},
			tensor{name: p + "attn_q.weight", dims: []uint64{embedding, heads * headSize}},
			tensor{name: p + "attn_k.weight", dims: []uint64{embedding, kvHeads * headSize}},
			tensor{name: p + "attn_v.weight", dims: []uint64{embedding, kvHeads * headSize}},
			tensor{name: p + "attn_output.weight", dims: []uint64{heads * headSize, embedding}},
			tensor{name: p + "ffn_norm.weight", dims: []uint64{embedding}, ones: true},
			tensor{name: p + "ffn_gate.weight", dims: []uint64{embedding, feedForward}},
			tensor{name: p + "ffn_up.weight", dims: []uint64{embedding, feedForward}},
			tensor{name: p + "ffn_down.weight", dims: []uint64{feedForward, embedding}},
		)
	}
	return append(ts,
		tensor{name: "output_norm.weight", dims: []uint64{embedding}, ones: true},
		tensor{name: "output.weight", dims: []uint64{embedding, uint64(VocabSize)}},
	)
}

func (t tensor) elements() uint64 {
	n := uint64(1)
	for _, d := range t.dims {
		n *= d
	}
	return n
}

func align(n uint64) uint64 {
	return (n + alignment - 1) / alignment * alignment
}

func pad(b []byte) []byte {
	for len(b)%alignment != 0 {
		b = append(b, 0)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// appendValue appends a typed metadata value. It panics on a type it does
// not know: the metadata is fixed in this package.
func appendValue(b []byte, v any) []byte {
	le := binary.LittleEndian
	switch v := v.(type) {
	case uint32:
		b = le.AppendUint32(b, typeUint32)
		return le.AppendUint32(b, v)
	case float32:
		b = le.AppendUint32(b, typeFloat32)
		return le.AppendUint32(b, math.Float32bits(v))
	case string:
		b = le.AppendUint32(b, typeString)
		return appendString(b, v)
	case []string:
		b = appendArrayHeader(b, typeString, len(v))
		for _, s := range v {
			b = appendString(b, s)
		}
		return b
	case []float32:
		b = appendArrayHeader(b, typeFloat32, len(v))
		for _, f := range v {
			b = le.AppendUint32(b, math.Float32bits(f))
		}
		return b
	case []int32:
		b = appendArrayHeader(b, typeInt32, len(v))
		for _, n := range v {
			b = le.AppendUint32(b, uint32(n))
		}
		return b
	default:
		panic(fmt.Sprintf("gguf: unsupported metadata type %T", v))
	}
}

func appendArrayHeader(b []byte, elem uint32, n int) []byte {
	b = binary.LittleEndian.AppendUint32(b, typeArray)
	b = binary.LittleEndian.AppendUint32(b, elem)
	return binary.LittleEndian.AppendUint64(b, uint64(n))
}
