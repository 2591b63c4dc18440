package testnet_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/testnet"
	"github.com/cocoon-mesh/cocoon/testnet/gguf"
	"github.com/cocoon-mesh/cocoon/testnet/ollama"
)

// TestRealEngine runs requests through client -> proxy -> worker(openai)
// -> a real ollama serving a tiny randomly initialised llama, and checks
// that text and token counts are exactly the engine's own.
func TestRealEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real engine")
	}
	bin, err := ollama.FindBinary(os.Getenv)
	if err != nil {
		t.Skipf("%v (make test builds it)", err)
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.gguf")
	if err := gguf.WriteTinyLlamaFile(model, 6); err != nil {
		t.Fatal(err)
	}
	srv, err := ollama.Start(t.Context(), ollama.Config{Bin: bin, Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.CreateModel(t.Context(), "tiny", model); err != nil {
		t.Fatal(err)
	}

	// What the engine says when asked directly.
	direct := streamChat(t, srv.OpenAIBase())
	if direct.usage.CompletionTokens == 0 {
		t.Fatalf("the engine reported no completion tokens: %+v", direct)
	}

	// The same weights as an embedding model.
	if err := srv.CreateModel(t.Context(), "tiny-embed", model); err != nil {
		t.Fatal(err)
	}

	h := testnet.New(t)
	h.AddWorker(func(c *config.Config) {
		c.Worker.Backend = "openai"
		c.Worker.OpenAI.URL = srv.OpenAIBase()
		// No models named: the worker announces what ollama lists,
		// "tiny:latest", and the bare "tiny" apps use, which ollama
		// answers to.
		c.Worker.OpenAI.EmbeddingModels = []string{"tiny-embed"}
	})
	h.AddProxy()
	client := h.AddClient()

	mesh := streamChat(t, testnet.BaseURL(client))
	if mesh.text != direct.text {
		t.Errorf("through the mesh the text is %q, directly %q", mesh.text, direct.text)
	}
	if mesh.usage != direct.usage {
		t.Errorf("through the mesh usage is %+v, the engine's own is %+v", mesh.usage, direct.usage)
	}
	if mesh.counted || mesh.simulated {
		t.Errorf("usage counted by worker = %v, simulated = %v: want the engine's report of a real engine", mesh.counted, mesh.simulated)
	}

	c := sdk(client)
	whole, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model:       "tiny",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if whole.Choices[0].Message.Content != direct.text {
		t.Errorf("non-streamed text %q, engine's %q", whole.Choices[0].Message.Content, direct.text)
	}
	if whole.Usage.PromptTokens != direct.usage.PromptTokens || whole.Usage.CompletionTokens != direct.usage.CompletionTokens {
		t.Errorf("non-streamed usage %+v, engine's %+v", whole.Usage, direct.usage)
	}

	// Embeddings through the mesh are the engine's own.
	embed := func(c openai.Client) *openai.CreateEmbeddingResponse {
		t.Helper()
		r, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
			Model: "tiny-embed",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello", "world"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	engine := embed(openai.NewClient(option.WithBaseURL(srv.OpenAIBase()), option.WithAPIKey("unused"), option.WithMaxRetries(0)))
	meshed := embed(c)
	if len(meshed.Data) != 2 || len(meshed.Data[0].Embedding) == 0 {
		t.Fatalf("embeddings through the mesh: %+v", meshed.Data)
	}
	for i := range meshed.Data {
		if !slices.Equal(meshed.Data[i].Embedding, engine.Data[i].Embedding) {
			t.Errorf("embedding %d through the mesh differs from the engine's", i)
		}
	}
	if meshed.Usage.PromptTokens != engine.Usage.PromptTokens {
		t.Errorf("embedding usage %+v through the mesh, the engine's %+v", meshed.Usage, engine.Usage)
	}
}

type chatResult struct {
	text      string
	usage     struct{ PromptTokens, CompletionTokens, TotalTokens int64 }
	counted   bool
	simulated bool
}

// streamChat posts a deterministic streaming request and collects the
// answer from the raw SSE, the way any OpenAI client would see it.
func streamChat(t *testing.T, base string) chatResult {
	t.Helper()
	body := `{"model":"tiny","stream":true,"stream_options":{"include_usage":true},"temperature":0,"max_tokens":8,"messages":[{"role":"user","content":"hello"}]}`
	resp, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d", base, resp.StatusCode)
	}
	var out chatResult
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			break
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
				TotalTokens      int64 `json:"total_tokens"`
			} `json:"usage"`
			Cocoon *struct {
				Counted   bool `json:"usage_counted_by_worker"`
				Simulated bool `json:"simulated"`
			} `json:"cocoon"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("%s: event %q: %v", base, data, err)
		}
		for _, c := range ev.Choices {
			text.WriteString(c.Delta.Content)
		}
		if ev.Usage != nil {
			out.usage.PromptTokens, out.usage.CompletionTokens, out.usage.TotalTokens = ev.Usage.PromptTokens, ev.Usage.CompletionTokens, ev.Usage.TotalTokens
		}
		if ev.Cocoon != nil {
			out.counted, out.simulated = ev.Cocoon.Counted, ev.Cocoon.Simulated
		}
	}
	if !done {
		t.Fatalf("%s: stream ended without [DONE] (%v)", base, sc.Err())
	}
	out.text = text.String()
	return out
}
