package inference_test

import (
	"testing"

	"github.com/cocoon-mesh/cocoon/inference"
)

func TestCompletionCap(t *testing.T) {
	tests := []struct {
		name  string
		kind  inference.Kind
		body  string
		limit int64
		ok    bool
	}{
		{"max_tokens", inference.KindChat, `{"max_tokens":40}`, 40, true},
		{"max_completion_tokens", inference.KindChat, `{"max_completion_tokens":30}`, 30, true},
		{"the smaller of both", inference.KindChat, `{"max_tokens":40,"max_completion_tokens":30}`, 30, true},
		{"times n", inference.KindCompletion, `{"max_tokens":40,"n":3}`, 120, true},
		{"n of one", inference.KindChat, `{"max_tokens":40,"n":1}`, 40, true},
		{"no cap", inference.KindChat, `{"model":"m"}`, 0, false},
		{"null cap", inference.KindChat, `{"max_tokens":null}`, 0, false},
		{"embedding", inference.KindEmbedding, `{"max_tokens":40}`, 0, false},
		{"not JSON", inference.KindChat, `max_tokens`, 0, false},
		{"a cap that overflows with n", inference.KindChat, `{"max_tokens":1099511627776,"n":2}`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit, ok := inference.CompletionCap(tt.kind, []byte(tt.body))
			if limit != tt.limit || ok != tt.ok {
				t.Errorf("CompletionCap(%s) = %d, %t; want %d, %t", tt.body, limit, ok, tt.limit, tt.ok)
			}
		})
	}
}
