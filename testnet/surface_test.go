package testnet_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/cocoon-mesh/cocoon/inference/backend/openai/openaitest"
	"github.com/cocoon-mesh/cocoon/node"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/testnet"
)

// surfaceNet is a network in front of a fixture engine of one dialect:
// its models announced as the engine lists them, "embed" for embeddings.
func surfaceNet(t *testing.T, d openaitest.Dialect, opts ...testnet.Modify) (*openaitest.Engine, *node.Node) {
	t.Helper()
	e := openaitest.Start(t, d)
	h := testnet.New(t)
	h.AddWorker(append([]testnet.Modify{func(c *config.Config) {
		c.Worker.Backend = "openai"
		c.Worker.OpenAI.URL = e.BaseURL()
		c.Worker.OpenAI.EmbeddingModels = []string{openaitest.ModelEmbed}
	}}, opts...)...)
	h.AddProxy()
	return e, h.AddClient()
}

// comparable is what an app reconstructs of an answer, less what the mesh
// changes (the model name, which Ollama resolves to name:latest) and usage
// fields beyond OpenAI's (SGLang repeats reasoning_tokens at the top).
func comparable(a openaitest.Answer) openaitest.Answer {
	a.Model = ""
	if a.Usage != nil {
		u := make(map[string]any)
		for _, k := range []string{"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "completion_tokens_details"} {
			if v, ok := a.Usage[k]; ok {
				u[k] = v
			}
		}
		a.Usage = u
	}
	return a
}

// TestOpenAISurface: for engines answering in the shapes of vLLM, SGLang,
// llama.cpp server and Ollama, the same request asked of the engine and
// of the mesh (client -> proxy -> worker, sealed) gives the app the same
// reconstructed answer, streamed and whole: content, reasoning, refusals,
// tool calls (one, and two in parallel), logprobs, finish reasons, n = 2
// choices and usage with its details.
func TestOpenAISurface(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network per engine dialect")
	}
	cases := []struct {
		model string
		extra map[string]any
	}{
		{openaitest.ModelPlain, nil},
		{openaitest.ModelTools, map[string]any{"tools": weatherTools, "tool_choice": "auto"}},
		{openaitest.ModelToolsParallel, map[string]any{"tools": weatherTools, "parallel_tool_calls": true}},
		{openaitest.ModelReasoning, nil},
		{openaitest.ModelLogprobs, map[string]any{"logprobs": true, "top_logprobs": 2}},
		{openaitest.ModelRefusal, nil},
		{openaitest.ModelCached, nil},
	}
	for _, d := range openaitest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e, client := surfaceNet(t, d)
			mesh := testnet.BaseURL(client)
			for _, tc := range cases {
				for _, n := range []int{1, 2} {
					name := fmt.Sprintf("%s n=%d", tc.model, n)
					req := openaitest.ChatRequest(tc.model, n, tc.extra)
					direct, _ := openaitest.Whole(t, e.BaseURL(), "/chat/completions", req)
					got, _ := openaitest.Whole(t, mesh, "/chat/completions", req)
					if !reflect.DeepEqual(comparable(got), comparable(direct)) {
						t.Errorf("%s, whole: through the mesh\n%+v\nstraight from the engine\n%+v", name, got, direct)
					}
					if len(got.Choices) != n {
						t.Errorf("%s, whole: %d choices", name, len(got.Choices))
					}
					req["stream_options"] = map[string]any{"include_usage": true}
					direct, _ = openaitest.Stream(t, e.BaseURL(), "/chat/completions", req)
					got, _ = openaitest.Stream(t, mesh, "/chat/completions", req)
					if !reflect.DeepEqual(comparable(got), comparable(direct)) {
						t.Errorf("%s, streamed: through the mesh\n%+v\nstraight from the engine\n%+v", name, got, direct)
					}
				}
			}
			// Legacy completions, with their own logprobs shape.
			req := map[string]any{"model": openaitest.ModelLogprobs, "prompt": "Say something", "logprobs": 2, "n": 2}
			direct, _ := openaitest.Whole(t, e.BaseURL(), "/completions", req)
			got, _ := openaitest.Whole(t, mesh, "/completions", req)
			if !reflect.DeepEqual(comparable(got), comparable(direct)) {
				t.Errorf("completion, whole: through the mesh\n%+v\nstraight from the engine\n%+v", got, direct)
			}
			direct, _ = openaitest.Stream(t, e.BaseURL(), "/completions", req)
			got, _ = openaitest.Stream(t, mesh, "/completions", req)
			if !reflect.DeepEqual(comparable(got), comparable(direct)) {
				t.Errorf("completion, streamed: through the mesh\n%+v\nstraight from the engine\n%+v", got, direct)
			}
		})
	}
}

var weatherTools = []map[string]any{{
	"type": "function",
	"function": map[string]any{
		"name":       "get_weather",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	},
}}

// TestOpenAISurfaceInTheClear: a client node that sends in the clear
// (node.WithoutSealing, the benchmarks' baseline) gets the same answers:
// engine events travel as Event frames, which the proxy relays and hashes
// for the receipt.
func TestOpenAISurfaceInTheClear(t *testing.T) {
	e := openaitest.Start(t, openaitest.LlamaCpp)
	h := testnet.New(t)
	h.AddWorker(func(c *config.Config) {
		c.Worker.Backend = "openai"
		c.Worker.OpenAI.URL = e.BaseURL()
	})
	h.AddProxy()
	client := h.AddNode(config.RoleClient, []node.Option{node.WithoutSealing()})
	for _, model := range []string{openaitest.ModelToolsParallel, openaitest.ModelReasoning, openaitest.ModelLogprobs} {
		req := openaitest.ChatRequest(model, 2, map[string]any{"logprobs": true, "top_logprobs": 1, "stream_options": map[string]any{"include_usage": true}})
		direct, _ := openaitest.Stream(t, e.BaseURL(), "/chat/completions", req)
		got, _ := openaitest.Stream(t, testnet.BaseURL(client), "/chat/completions", req)
		if !reflect.DeepEqual(comparable(got), comparable(direct)) {
			t.Errorf("%s, streamed in the clear: through the mesh\n%+v\nstraight from the engine\n%+v", model, got, direct)
		}
		delete(req, "stream_options")
		direct, _ = openaitest.Whole(t, e.BaseURL(), "/chat/completions", req)
		got, _ = openaitest.Whole(t, testnet.BaseURL(client), "/chat/completions", req)
		if !reflect.DeepEqual(comparable(got), comparable(direct)) {
			t.Errorf("%s, whole in the clear: through the mesh\n%+v\nstraight from the engine\n%+v", model, got, direct)
		}
	}
}

// TestRequestFieldsReachEngine: every field an app sends reaches the
// engine as the app sent it; the worker sets only what streaming needs.
func TestRequestFieldsReachEngine(t *testing.T) {
	e, client := surfaceNet(t, openaitest.VLLM)
	fields := map[string]any{
		"tools":               weatherTools,
		"tool_choice":         map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}},
		"parallel_tool_calls": false,
		"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{
			"name": "weather", "strict": true,
			"schema": map[string]any{"type": "object", "properties": map[string]any{"sunny": map[string]any{"type": "boolean"}}},
		}},
		"seed":                  42,
		"stop":                  []string{"\n\n", "END"},
		"logprobs":              true,
		"top_logprobs":          3,
		"logit_bias":            map[string]any{"1734": -100},
		"user":                  "app-user-7",
		"temperature":           0.2,
		"max_completion_tokens": 64,
		"metadata":              map[string]any{"trace": "abc"},
		"chat_template_kwargs":  map[string]any{"enable_thinking": false},
	}
	req := openaitest.ChatRequest(openaitest.ModelTools, 2, fields)
	openaitest.Whole(t, testnet.BaseURL(client), "/chat/completions", req)
	got := e.Requests("/chat/completions")
	if len(got) != 1 {
		t.Fatalf("the engine got %d requests, want 1", len(got))
	}
	for k, v := range req {
		want, _ := json.Marshal(v)
		var a, b any
		json.Unmarshal(want, &a)
		json.Unmarshal(got[0][k], &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("the engine got %s = %s, the app sent %s", k, got[0][k], want)
		}
	}
	if string(got[0]["stream"]) != "true" {
		t.Errorf("the engine got stream = %s, want true (the worker streams every answer)", got[0]["stream"])
	}

	// What the client does not judge, the engine does, in its own words.
	bad := openaitest.ChatRequest(openaitest.ModelPlain, 9, map[string]any{"temperature": 2.5})
	_, direct := openaitest.Post(t, e.BaseURL(), "/chat/completions", bad)
	resp, body := openaitest.Post(t, testnet.BaseURL(client), "/chat/completions", bad)
	var de, me struct {
		Message string `json:"message"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	json.Unmarshal(direct, &de)
	json.Unmarshal(body, &me)
	if resp.StatusCode != http.StatusBadRequest || de.Message == "" || me.Error.Message != de.Message {
		t.Errorf("a request the engine refuses: %d %s through the mesh; the engine said %s", resp.StatusCode, body, direct)
	}
}

// TestEmbeddingsThroughMesh: embeddings through the mesh are the engine's,
// for a string and for a list, floats and base64; usage is the engine's
// prompt tokens; a request for an endpoint the model is not served for is
// a 400 naming the model, not a 503.
func TestEmbeddingsThroughMesh(t *testing.T) {
	e, client := surfaceNet(t, openaitest.Ollama)
	mesh := testnet.BaseURL(client)
	for _, req := range []map[string]any{
		{"model": openaitest.ModelEmbed, "input": "The food was delicious"},
		{"model": openaitest.ModelEmbed, "input": []string{"one", "two", "three"}, "dimensions": 4},
		{"model": openaitest.ModelEmbed, "input": "base", "encoding_format": "base64"},
	} {
		_, direct := openaitest.Post(t, e.BaseURL(), "/embeddings", req)
		resp, got := openaitest.Post(t, mesh, "/embeddings", req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%v: status %d: %s", req, resp.StatusCode, got)
		}
		var d, g struct {
			Object string            `json:"object"`
			Data   []json.RawMessage `json:"data"`
			Model  string            `json:"model"`
			Usage  struct {
				PromptTokens int64 `json:"prompt_tokens"`
				TotalTokens  int64 `json:"total_tokens"`
			} `json:"usage"`
			Cocoon *struct {
				Worker string `json:"worker"`
			} `json:"cocoon"`
		}
		if err := json.Unmarshal(direct, &d); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g.Data, d.Data) || g.Object != "list" || g.Usage != d.Usage {
			t.Errorf("%v: through the mesh\n%s\nstraight from the engine\n%s", req, got, direct)
		}
		if g.Model != openaitest.ModelEmbed || g.Cocoon == nil || g.Cocoon.Worker == "" {
			t.Errorf("%v: model %q, cocoon %+v; want the model asked for and the worker that served", req, g.Model, g.Cocoon)
		}
	}
	for _, tt := range []struct {
		path string
		body map[string]any
	}{
		{"/embeddings", map[string]any{"model": openaitest.ModelPlain, "input": "x"}},
		{"/chat/completions", openaitest.ChatRequest(openaitest.ModelEmbed, 1, nil)},
	} {
		resp, body := openaitest.Post(t, mesh, tt.path, tt.body)
		var e struct {
			Error struct {
				Message string `json:"message"`
				Param   string `json:"param"`
			} `json:"error"`
		}
		json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Error.Param != "model" {
			t.Errorf("%s for %v: %d %s; want 400 naming the model", tt.path, tt.body["model"], resp.StatusCode, body)
		}
	}
}

// receiptOf is the worker's receipt in a whole answer's cocoon
// extension, its signature verified.
func receiptOf(t *testing.T, body []byte) *payments.Receipt {
	t.Helper()
	var a struct {
		Cocoon struct {
			Worker  string `json:"worker"`
			Receipt []byte `json:"receipt"`
		} `json:"cocoon"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	worker, err := peer.Decode(a.Cocoon.Worker)
	if err != nil {
		t.Fatalf("worker %q: %v", a.Cocoon.Worker, err)
	}
	r, err := payments.Verify(a.Cocoon.Receipt, worker)
	if err != nil {
		t.Fatalf("receipt: %v", err)
	}
	return r
}

// TestCachedTokensBilled: prompt tokens the engine served from its cache
// are billed at the worker's cached price: the receipt the app gets
// carries them, and its amount is the cached price's.
func TestCachedTokensBilled(t *testing.T) {
	price := payments.Price{Prompt: 1_000_000_000, Cached: 100_000_000, Completion: 2_000_000_000}
	_, client := surfaceNet(t, openaitest.VLLM, func(c *config.Config) { c.Worker.Price = price })
	resp, body := openaitest.Post(t, testnet.BaseURL(client), "/chat/completions", openaitest.ChatRequest(openaitest.ModelCached, 1, nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var a struct {
		Usage struct {
			PromptTokens        int64 `json:"prompt_tokens"`
			CompletionTokens    int64 `json:"completion_tokens"`
			PromptTokensDetails struct {
				CachedTokens int64 `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if a.Usage.PromptTokensDetails.CachedTokens == 0 {
		t.Fatalf("usage %+v: want cached tokens", a.Usage)
	}
	r := receiptOf(t, body)
	tokens := payments.Tokens{Prompt: a.Usage.PromptTokens, Cached: a.Usage.PromptTokensDetails.CachedTokens, Completion: a.Usage.CompletionTokens}
	if r.Tokens != tokens || r.Price != price {
		t.Fatalf("receipt bills %+v at %+v, want %+v at %+v", r.Tokens, r.Price, tokens, price)
	}
	got, err := r.Bill(0)
	if err != nil {
		t.Fatal(err)
	}
	uncached := payments.Tokens{Prompt: tokens.Prompt, Completion: tokens.Completion}
	full, _ := payments.Cost(uncached, price, 0)
	if got.Worker >= full.Worker {
		t.Errorf("the answer costs %d nanoTON with %d cached tokens, %d without: cached tokens are not cheaper", got.Worker, tokens.Cached, full.Worker)
	}
}

// TestSDKToolRoundTrip: the official openai-go SDK through the mesh, as an
// agent uses it: a streamed tool call read with the SDK's accumulator, the
// tool's result sent back, and the final answer; structured output with a
// JSON schema; embeddings.
func TestSDKToolRoundTrip(t *testing.T) {
	e, client := surfaceNet(t, openaitest.VLLM)
	c := sdk(client)
	ctx := t.Context()
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})}
	params := openai.ChatCompletionNewParams{
		Model:    openaitest.ModelTools,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")},
		Tools:    tools,
	}
	// The accumulator's events, through the mesh and straight from the
	// engine, must be the same.
	accumulate := func(c openai.Client) (openai.ChatCompletionAccumulator, []openai.FinishedChatCompletionToolCall) {
		stream := c.Chat.Completions.NewStreaming(ctx, params)
		var acc openai.ChatCompletionAccumulator
		var finished []openai.FinishedChatCompletionToolCall
		for stream.Next() {
			acc.AddChunk(stream.Current())
			if tc, ok := acc.JustFinishedToolCall(); ok {
				finished = append(finished, tc)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		return acc, finished
	}
	acc, finished := accumulate(c)
	_, direct := accumulate(openai.NewClient(option.WithBaseURL(e.BaseURL()), option.WithAPIKey("unused"), option.WithMaxRetries(0)))
	if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" || len(acc.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("accumulated %+v, want one tool call", acc.Choices)
	}
	if !reflect.DeepEqual(finished, direct) {
		t.Errorf("the accumulator finished tool calls %+v through the mesh, %+v straight from the engine", finished, direct)
	}
	call := acc.Choices[0].Message.ToolCalls[0]
	if call.Function.Name != "get_weather" || call.Function.Arguments != `{"city":"Paris"}` || call.ID == "" {
		t.Fatalf("tool call %+v", call)
	}

	params.Messages = append(params.Messages, acc.Choices[0].Message.ToParam(), openai.ToolMessage(`{"sky":"sunny"}`, call.ID))
	final, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if final.Choices[0].Message.Content != openaitest.ToolAnswerText || final.Choices[0].FinishReason != "stop" {
		t.Fatalf("final answer %+v", final.Choices[0])
	}
	sent := e.Requests("/chat/completions")
	var msgs []map[string]any
	json.Unmarshal(sent[len(sent)-1]["messages"], &msgs)
	if len(msgs) != 3 || msgs[1]["tool_calls"] == nil || msgs[2]["tool_call_id"] != call.ID {
		t.Errorf("the engine got messages %v, want the assistant's tool call and the tool's result", msgs)
	}

	schema := map[string]any{"type": "object", "properties": map[string]any{"sunny": map[string]any{"type": "boolean"}}, "required": []string{"sunny"}}
	structured, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    openaitest.ModelPlain,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Is it sunny?")},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "weather", Schema: schema, Strict: openai.Bool(true)},
		}},
	})
	if err != nil || structured.Choices[0].Message.Content == "" {
		t.Fatalf("structured output: %v, %+v", err, structured)
	}
	sent = e.Requests("/chat/completions")
	var format struct {
		Type       string `json:"type"`
		JSONSchema struct {
			Name   string         `json:"name"`
			Strict bool           `json:"strict"`
			Schema map[string]any `json:"schema"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(sent[len(sent)-1]["response_format"], &format); err != nil ||
		format.Type != "json_schema" || format.JSONSchema.Name != "weather" || !format.JSONSchema.Strict || format.JSONSchema.Schema["required"] == nil {
		t.Errorf("the engine got response_format %s", sent[len(sent)-1]["response_format"])
	}

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: openaitest.ModelEmbed,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 2 || len(emb.Data[0].Embedding) != openaitest.DefaultDimensions || emb.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings %+v", emb)
	}
	want := openaitest.Embedding("two", openaitest.DefaultDimensions)
	for i, v := range emb.Data[1].Embedding {
		if float32(v) != float32(want[i]) {
			t.Fatalf("embedding of %q: %v, want %v", "two", emb.Data[1].Embedding, want)
		}
	}
}
