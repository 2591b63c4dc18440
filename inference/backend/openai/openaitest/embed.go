package openaitest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// DefaultDimensions is the size of an embedding when the request does not
// ask for dimensions.
const DefaultDimensions = 8

// maxDimensions caps the dimensions a request may ask for.
const maxDimensions = 4096

// serveEmbeddings answers POST /v1/embeddings.
func (e *Engine) serveEmbeddings(w http.ResponseWriter, req *request) error {
	model, echo, err := e.resolve(req.Model)
	if err != nil {
		return err
	}
	if model != ModelEmbed {
		return badRequest("model %s does not support embeddings", req.Model)
	}
	texts, tokens, err := parseInputs(req.Input)
	if err != nil {
		return badRequest("invalid input: %v", err)
	}
	dims := DefaultDimensions
	if req.Dimensions != nil {
		if dims = *req.Dimensions; dims < 1 || dims > maxDimensions {
			return badRequest("dimensions must be 1..%d", maxDimensions)
		}
	}
	if f := req.EncodingFormat; f != "" && f != "float" && f != "base64" {
		return badRequest("unknown encoding_format %q", f)
	}
	data := make([]object, 0, len(texts))
	for i, text := range texts {
		vec := Embedding(text, dims)
		var v any = vec
		if req.EncodingFormat == "base64" {
			v = encodeFloat32s(vec)
		}
		data = append(data, object{{"object", "embedding"}, {"index", i}, {"embedding", v}})
	}
	u := object{{"prompt_tokens", tokens}, {"total_tokens", tokens}}
	var o object
	switch e.dialect {
	case VLLM, SGLang:
		u = append(u, field{"completion_tokens", 0}, field{"prompt_tokens_details", nil})
		o = object{{"id", e.newID("embd-")}, {"object", "list"}, {"created", created}}
	default:
		o = object{{"object", "list"}}
	}
	o = append(o, field{"data", data}, field{"model", echo}, field{"usage", u})
	writeJSON(w, http.StatusOK, o)
	return nil
}

// parseInputs reads an embedding input or completion prompt: a string, an
// array of strings, an array of token ids or an array of such arrays. It
// returns the texts to embed, one per input (token arrays written as
// "tokens:1,2,3"), and their size in tokens.
func parseInputs(raw json.RawMessage) (texts []string, tokens int, err error) {
	var (
		v    any
		ss   []string
		idss [][]int
	)
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return nil, 0, errors.New("missing")
	}
	bad := errors.New("want a string, strings, token ids or arrays of token ids")
	switch x := v.(type) {
	case string:
		ss = []string{x}
	case []any:
		if len(x) == 0 {
			return nil, 0, errors.New("empty array")
		}
		var ids []int
		switch x[0].(type) {
		case string:
			err = json.Unmarshal(raw, &ss)
		case float64:
			err = json.Unmarshal(raw, &ids)
			idss = [][]int{ids}
		case []any:
			err = json.Unmarshal(raw, &idss)
		default:
			err = bad
		}
		if err != nil {
			return nil, 0, bad
		}
	default:
		return nil, 0, bad
	}
	for _, s := range ss {
		texts = append(texts, s)
		tokens += countWords(s)
	}
	for _, ids := range idss {
		if len(ids) == 0 {
			return nil, 0, errors.New("empty token array")
		}
		parts := make([]string, len(ids))
		for i, id := range ids {
			parts[i] = strconv.Itoa(id)
		}
		texts = append(texts, "tokens:"+strings.Join(parts, ","))
		tokens += len(ids)
	}
	return texts, tokens, nil
}

// Embedding is the vector the engine answers for text: dims values in
// [-1, 1] with six decimals, derived from SHA-256 of the text. Token
// inputs are embedded as the text "tokens:1,2,3".
func Embedding(text string, dims int) []float64 {
	vec := make([]float64, dims)
	var h [sha256.Size]byte
	for j := range vec {
		if j%8 == 0 {
			h = sha256.Sum256(fmt.Appendf(nil, "%s#%d", text, j/8))
		}
		u := binary.BigEndian.Uint32(h[(j%8)*4:])
		f := float64(u)/(1<<32)*2 - 1
		vec[j] = math.Round(f*1e6) / 1e6
	}
	return vec
}

// encodeFloat32s is vec as base64 of little-endian float32s, as OpenAI
// answers encoding_format "base64".
func encodeFloat32s(vec []float64) string {
	b := make([]byte, 4*len(vec))
	for i, f := range vec {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(f)))
	}
	return base64.StdEncoding.EncodeToString(b)
}
