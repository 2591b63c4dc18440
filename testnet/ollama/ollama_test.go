package ollama

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/testnet/gguf"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFindBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "cache", "cocoon", "ollama-v0.6.5", "ollama")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	homeExe := filepath.Join(home, ".cache", "cocoon", "ollama-v0.6.5", "ollama")
	if err := os.MkdirAll(filepath.Dir(homeExe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(homeExe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		env      map[string]string
		want     string
		notFound bool // the error wraps ErrNotFound
		fails    bool // another error
	}{
		{name: "COCOON_OLLAMA", env: map[string]string{"COCOON_OLLAMA": exe, "HOME": home}, want: exe},
		{name: "COCOON_OLLAMA missing", env: map[string]string{"COCOON_OLLAMA": filepath.Join(dir, "nope"), "HOME": home}, notFound: true},
		{name: "XDG_CACHE_HOME", env: map[string]string{"XDG_CACHE_HOME": filepath.Join(dir, "cache"), "HOME": home}, want: exe},
		{name: "HOME", env: map[string]string{"HOME": home}, want: homeExe},
		{name: "not built", env: map[string]string{"HOME": dir}, notFound: true},
		{name: "no environment", env: nil, notFound: true},
		{name: "not executable", env: map[string]string{"COCOON_OLLAMA": plain}, fails: true},
		{name: "directory", env: map[string]string{"COCOON_OLLAMA": dir}, fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindBinary(func(k string) string { return tt.env[k] })
			switch {
			case tt.notFound:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
				if !strings.Contains(err.Error(), "make ollama") {
					t.Errorf("error %q does not say how to build ollama", err)
				}
			case tt.fails:
				if err == nil || errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want an error other than ErrNotFound", err)
				}
			case err != nil:
				t.Fatal(err)
			case got != tt.want:
				t.Errorf("FindBinary = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestStartFails(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no binary", Config{Dir: t.TempDir()}},
		{"no directory", Config{Bin: "/bin/true"}},
		{"missing binary", Config{Bin: filepath.Join(t.TempDir(), "ollama"), Dir: t.TempDir()}},
		{"exits at once", Config{Bin: "/bin/false", Dir: t.TempDir()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start(t.Context(), tt.cfg, logtest.New(t))
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
		})
	}
}

// TestServer runs the real ollama with the tiny llama: streaming and plain
// chat completions through the OpenAI API, deterministic at temperature 0.
func TestServer(t *testing.T) {
	bin, err := FindBinary(os.Getenv)
	if errors.Is(err, ErrNotFound) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.gguf")
	// With seed 6 every one of the 8 tokens answering "hello" is visible text;
	// with most seeds some are bytes of no complete character, sent as nothing.
	if err := gguf.WriteTinyLlamaFile(model, 6); err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	s, err := Start(t.Context(), Config{Bin: bin, Dir: dir}, logtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	started := time.Now()
	if err := s.CreateModel(t.Context(), "tiny", model); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	t.Logf("start %v, create %v", started.Sub(begin), created.Sub(started))

	if got, want := s.OpenAIBase(), s.URL()+"/v1"; got != want || !strings.HasPrefix(got, "http://127.0.0.1:") {
		t.Errorf("OpenAIBase = %q, want %q on 127.0.0.1", got, want)
	}

	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)

	var streamed []string
	for i := range 2 {
		begin := time.Now()
		r := chat(t, client, s.OpenAIBase(), true)
		t.Logf("streaming %d: %q in %d deltas, usage %+v, took %v", i, r.text, r.deltas, r.usage, time.Since(begin))
		if r.deltas == 0 {
			t.Error("no content delta")
		}
		checkUsage(t, r.usage)
		streamed = append(streamed, r.text)
	}
	if streamed[0] != streamed[1] {
		t.Errorf("streaming texts differ at temperature 0: %q, %q", streamed[0], streamed[1])
	}

	var plain []string
	for i := range 2 {
		r := chat(t, client, s.OpenAIBase(), false)
		t.Logf("plain %d: %q, usage %+v", i, r.text, r.usage)
		checkUsage(t, r.usage)
		plain = append(plain, r.text)
	}
	if plain[0] != plain[1] {
		t.Errorf("texts differ at temperature 0: %q, %q", plain[0], plain[1])
	}
	if plain[0] != streamed[0] {
		t.Errorf("plain text %q differs from streamed %q", plain[0], streamed[0])
	}
}

// TestServerStopsWithContext checks that cancelling Start's context stops
// the server.
func TestServerStopsWithContext(t *testing.T) {
	bin, err := FindBinary(os.Getenv)
	if errors.Is(err, ErrNotFound) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := Start(ctx, Config{Bin: bin, Dir: t.TempDir()}, logtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(s.URL())
	if err != nil {
		t.Fatalf("the server does not answer: %v", err)
	}
	resp.Body.Close()

	cancel()
	select {
	case <-s.done:
	case <-time.After(2 * stopGrace):
		t.Fatal("the server still runs after its context ended")
	}
	if resp, err := client.Get(s.URL()); err == nil {
		resp.Body.Close()
		t.Fatal("the server still answers after its context ended")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatResult struct {
	text   string
	deltas int
	usage  *usage
}

const maxTokens = 8

func checkUsage(t *testing.T, u *usage) {
	t.Helper()
	switch {
	case u == nil:
		t.Error("no usage")
	case u.CompletionTokens <= 0 || u.CompletionTokens > maxTokens:
		t.Errorf("completion_tokens = %d, want 1..%d", u.CompletionTokens, maxTokens)
	case u.PromptTokens <= 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens:
		t.Errorf("usage %+v does not add up", *u)
	}
}

// chat sends one chat completion request and reads the answer, as server-sent
// events if stream is set.
func chat(t *testing.T, client *http.Client, base string, stream bool) chatResult {
	t.Helper()
	req := map[string]any{
		"model":       "tiny",
		"messages":    []map[string]string{{"role": "user", "content": "hello"}},
		"temperature": 0,
		"max_tokens":  maxTokens,
		"stream":      stream,
	}
	if stream {
		req["stream_options"] = map[string]bool{"include_usage": true}
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hr, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %s", resp.Status, b)
	}

	if !stream {
		var c struct {
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
			Usage *usage `json:"usage"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
		if len(c.Choices) != 1 {
			t.Fatalf("%d choices, want 1", len(c.Choices))
		}
		return chatResult{text: c.Choices[0].Message.Content, usage: c.Usage}
	}

	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type = %q, want text/event-stream", ct)
	}
	var r chatResult
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			r.text = text.String()
			return r
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *usage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != "" {
				r.deltas++
				text.WriteString(ch.Delta.Content)
			}
		}
		if c.Usage != nil {
			r.usage = c.Usage
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatal("the stream ended without [DONE]")
	return r
}
