// Package logtest provides the loggers of the project's tests: one that
// writes to the test's output, one that discards, and a buffer a test can
// read and wait on. Only tests import it.
package logtest

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
)

// Discard is a logger that drops every record.
var Discard = slog.New(slog.DiscardHandler)

// New returns a logger that writes text records at Debug and above to
// tb's output, shown with the test's other output (on failure, or with -v).
// It must not be used after the test has completed.
func New(tb testing.TB) *slog.Logger { return NewAt(tb, slog.LevelDebug) }

// NewAt is New for records at level and above only: for tests whose
// nodes are too talkative at Debug.
func NewAt(tb testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: level}))
}

// Buffer collects what is written to it, for a test to read while a
// logger (or any writer) writes. It is safe for concurrent use; the zero
// value is an empty buffer.
type Buffer struct {
	mu      sync.Mutex // guards b and written
	b       bytes.Buffer
	written chan struct{} // closed by the next Write; nil until someone waits
}

// Write appends p and wakes every WaitFor.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitFor waits until cond holds for what was written, checking it now
// and after each Write. It returns the text cond held for, or, once ctx
// ends first, the text so far and ctx's error.
func (b *Buffer) WaitFor(ctx context.Context, cond func(text string) bool) (string, error) {
	for {
		b.mu.Lock()
		text := b.b.String()
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		if cond(text) {
			return text, nil
		}
		select {
		case <-written:
		case <-ctx.Done():
			return text, ctx.Err()
		}
	}
}
