// Command chat sends one streaming chat request to a Cocoon client node
// with the official OpenAI Go SDK and prints the answer as it arrives,
// then its usage. `make run` uses it; it is also the shortest example of
// talking to Cocoon from Go.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	base := fs.String("base-url", "http://127.0.0.1:10000/v1", "the client node's OpenAI API")
	model := fs.String("model", "sim-small", "model to ask")
	maxTokens := fs.Int64("max-tokens", 24, "answer length limit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prompt := strings.Join(fs.Args(), " ")
	if prompt == "" {
		prompt = "Hello, mesh!"
	}
	client := openai.NewClient(option.WithBaseURL(*base), option.WithAPIKey("none"), option.WithMaxRetries(0))
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:         *model,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens:     openai.Int(*maxTokens),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	defer stream.Close()
	fmt.Fprintf(stdout, "> %s\n", prompt)
	var usage *openai.CompletionUsage
	for stream.Next() {
		c := stream.Current()
		for _, ch := range c.Choices {
			fmt.Fprint(stdout, ch.Delta.Content)
		}
		if c.Usage.TotalTokens > 0 {
			u := c.Usage
			usage = &u
		}
	}
	fmt.Fprintln(stdout)
	if err := stream.Err(); err != nil {
		return err
	}
	if usage == nil {
		return fmt.Errorf("the answer carried no usage")
	}
	fmt.Fprintf(stdout, "usage: prompt_tokens=%d completion_tokens=%d total_tokens=%d\n",
		usage.PromptTokens, usage.CompletionTokens, usage.TotalTokens)
	return nil
}
