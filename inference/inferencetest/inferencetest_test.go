package inferencetest_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/inferencetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collect runs one request through b and returns the texts it emitted.
func collect(ctx context.Context, b *inferencetest.Backend, req *inference.Request) ([]string, inference.Result, error) {
	var texts []string
	res, err := b.Generate(ctx, req, func(c inference.Chunk) error {
		texts = append(texts, c.Text)
		return nil
	})
	return texts, res, err
}

func TestScript(t *testing.T) {
	done := inference.Result{FinishReason: "stop"}
	boom := errors.New("engine on fire")
	tests := []struct {
		name    string
		b       *inferencetest.Backend
		texts   []string
		result  inference.Result
		wantErr error
	}{
		{"nothing", &inferencetest.Backend{}, nil, inference.Result{}, nil},
		{"chunks then the result", &inferencetest.Backend{Chunks: []string{"a", "b"}, Result: done}, []string{"a", "b"}, done, nil},
		{"chunks then the error", &inferencetest.Backend{Chunks: []string{"a"}, Result: done, Err: boom}, []string{"a"}, inference.Result{}, boom},
		{"func", &inferencetest.Backend{Chunks: []string{"a"}, Func: func(_ context.Context, req *inference.Request, emit func(inference.Chunk) error) (inference.Result, error) {
			return done, emit(inference.Chunk{Text: string(req.Body)})
		}}, []string{"body"}, done, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			texts, res, err := collect(t.Context(), tt.b, &inference.Request{ID: "r", Body: []byte("body")})
			if !slices.Equal(texts, tt.texts) || res != tt.result || !errors.Is(err, tt.wantErr) {
				t.Fatalf("emitted %q, returned %+v, %v; want %q, %+v, %v", texts, res, err, tt.texts, tt.result, tt.wantErr)
			}
			if n := tt.b.Calls(); n != 1 {
				t.Fatalf("Calls() = %d, want 1", n)
			}
			if reqs := tt.b.Requests(); len(reqs) != 1 || reqs[0].ID != "r" || string(reqs[0].Body) != "body" {
				t.Fatalf("Requests() = %+v", reqs)
			}
		})
	}
}

func TestEmitError(t *testing.T) {
	gone := errors.New("stream reset")
	b := &inferencetest.Backend{Chunks: []string{"a", "b"}}
	n := 0
	_, err := b.Generate(t.Context(), &inference.Request{}, func(inference.Chunk) error { n++; return gone })
	if !errors.Is(err, gone) || n != 1 {
		t.Fatalf("emit failed: %d chunks tried, returned %v; want 1 and emit's error", n, err)
	}
}

// TestGate: a held request waits for the gate, or ends with its context.
func TestGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{}, 2)
		gate := make(chan struct{})
		b := &inferencetest.Backend{Started: started, Gate: gate, Chunks: []string{"a"}}

		ctx, cancel := context.WithCancel(t.Context())
		ended := make(chan error, 1)
		go func() {
			_, _, err := collect(ctx, b, &inference.Request{})
			ended <- err
		}()
		<-started
		cancel()
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("a held request whose context ended returned %v", err)
		}

		var texts []string
		go func() {
			var err error
			texts, _, err = collect(t.Context(), b, &inference.Request{})
			ended <- err
		}()
		<-started
		synctest.Wait() // the request is held at the gate, or it passed
		select {
		case err := <-ended:
			t.Fatalf("a request passed the gate before it opened: %v", err)
		default:
		}
		close(gate)
		if err := <-ended; err != nil || !slices.Equal(texts, []string{"a"}) {
			t.Fatalf("after the gate opened: emitted %q, returned %v", texts, err)
		}
	})
}

func TestModels(t *testing.T) {
	b := &inferencetest.Backend{Served: inferencetest.Models("a", "b")}
	ms, err := b.Models(t.Context())
	if err != nil || len(ms) != 2 || !reflect.DeepEqual(ms, []inference.Model{{ID: "a"}, {ID: "b"}}) {
		t.Fatalf("Models() = %+v, %v", ms, err)
	}
}
