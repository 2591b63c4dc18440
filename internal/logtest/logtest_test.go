package logtest_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/internal/logtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoggers(t *testing.T) {
	if logtest.Discard.Enabled(t.Context(), slog.LevelError) {
		t.Error("Discard takes records")
	}
	if !logtest.New(t).Enabled(t.Context(), slog.LevelDebug) {
		t.Error("New drops Debug records")
	}
	warn := logtest.NewAt(t, slog.LevelWarn)
	if warn.Enabled(t.Context(), slog.LevelInfo) || !warn.Enabled(t.Context(), slog.LevelWarn) {
		t.Error("NewAt(Warn) does not log from Warn up")
	}
	logtest.New(t).Debug("shown with the test's output", "key", "value")
}

func TestBufferWaitFor(t *testing.T) {
	var b logtest.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("starting")
	ready := func(s string) bool { return strings.Contains(s, "msg=ready") }

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if text, err := b.WaitFor(ctx, ready); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(text, "msg=starting") {
		t.Fatalf("WaitFor before the line = %q, %v; want the text so far and the deadline", text, err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := b.WaitFor(t.Context(), ready)
		done <- err
	}()
	log.Info("working")
	log.Info("ready")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitFor missed the line it waited for")
	}
	if text, err := b.WaitFor(t.Context(), ready); err != nil || !strings.HasSuffix(text, "msg=ready\n") || b.String() != text {
		t.Fatalf("WaitFor after the line = %q, %v; String() = %q", text, err, b.String())
	}
}
