package openai

import (
	"context"
	"encoding/json"
	"io"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// embeddingPiece is how much of an embedding answer one chunk carries.
const embeddingPiece = 128 << 10

// embedding posts an embedding request to the engine and emits its answer,
// the JSON object as the engine wrote it, in pieces of text: the client
// node reassembles it, and names the model the app asked for in it. The
// usage is the engine's prompt_tokens, or, when it reports none, an
// estimate from the input (Usage.Counted).
func (b *Backend) embedding(ctx context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
	body, err := engineBody(req.Body, b.engineModel(req.Model), false)
	if err != nil {
		return inference.Result{}, err
	}
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := b.post(ctx, reqCtx, req, "/embeddings", body, "application/json")
	if err != nil {
		return inference.Result{}, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, inference.MaxEmbeddingAnswer+1))
	if err != nil {
		if ctx.Err() != nil {
			return inference.Result{}, ctx.Err()
		}
		return inference.Result{}, inference.Errorf(inference.CodeEngine, "reading the engine's embeddings: %v", err)
	}
	if len(answer) > inference.MaxEmbeddingAnswer {
		return inference.Result{}, inference.Errorf(inference.CodeEngine, "the engine's embeddings exceed %d bytes", inference.MaxEmbeddingAnswer)
	}
	var parsed struct {
		Data  []json.RawMessage `json:"data"`
		Usage *struct {
			PromptTokens int64 `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(answer, &parsed); err != nil || parsed.Data == nil {
		return inference.Result{}, inference.Errorf(inference.CodeEngine, "the engine answered embeddings that are not an object with data")
	}
	for len(answer) > 0 {
		n := min(len(answer), embeddingPiece)
		if err := emit(inference.Chunk{Text: string(answer[:n]), Pending: n < len(answer)}); err != nil {
			return inference.Result{}, err
		}
		answer = answer[n:]
	}
	if parsed.Usage != nil && parsed.Usage.PromptTokens > 0 {
		return inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: parsed.Usage.PromptTokens}}}, nil
	}
	return inference.Result{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: estimatePromptTokens(req.Body)}, Counted: true}}, nil
}
