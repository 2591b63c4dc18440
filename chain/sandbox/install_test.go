package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeNPM writes an npm stand-in that runs script (sh) and returns its path.
func fakeNPM(t *testing.T, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "npm")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func testSidecar(t *testing.T) sidecar {
	t.Helper()
	sc, err := loadSidecar()
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestPrepareConcurrently(t *testing.T) {
	sc := testSidecar(t)
	// Each install takes a moment, so the installs overlap and all but one
	// lose the rename.
	npm := fakeNPM(t, `test "$1" = ci || exit 2; sleep 0.2; mkdir node_modules && echo "$PWD" > node_modules/installed-in`)
	dir := filepath.Join(t.TempDir(), "cache", "sandbox-x")

	const n = 4
	scripts := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			scripts[i], errs[i] = prepare(context.Background(), dir, npm, sc, slog.New(slog.DiscardHandler))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("prepare %d: %v", i, errs[i])
		}
		if scripts[i] != scripts[0] {
			t.Fatalf("prepare %d returned %s, prepare 0 %s", i, scripts[i], scripts[0])
		}
	}
	got, err := os.ReadFile(scripts[0])
	if err != nil || string(got) != string(sc.script) {
		t.Fatalf("script %s: %v, or differs from the embedded one", scripts[0], err)
	}
	if !installed(dir, sc) {
		t.Fatal("dir holds no install")
	}
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("temporary directories left behind: %v", names)
	}
}

func TestPrepareInstallsOnce(t *testing.T) {
	sc := testSidecar(t)
	dir := filepath.Join(t.TempDir(), "sandbox-x")
	log := slog.New(slog.DiscardHandler)
	if Installed(Config{Dir: dir}) {
		t.Fatal("Installed before the install: make run would not say it installs")
	}
	if _, err := prepare(context.Background(), dir, fakeNPM(t, "mkdir node_modules"), sc, log); err != nil {
		t.Fatal(err)
	}
	if !Installed(Config{Dir: dir}) {
		t.Fatal("not Installed after the install: make run would say it installs on every run")
	}
	// No npm is needed the second time.
	if _, err := prepare(context.Background(), dir, "/nonexistent/npm", sc, log); err != nil {
		t.Fatalf("second prepare: %v", err)
	}
}

func TestPrepareErrors(t *testing.T) {
	sc := testSidecar(t)
	log := slog.New(slog.DiscardHandler)

	t.Run("npm fails", func(t *testing.T) {
		npm := fakeNPM(t, "echo 'npm ERR! code E404' >&2; exit 1")
		_, err := prepare(context.Background(), filepath.Join(t.TempDir(), "s"), npm, sc, log)
		if err == nil || !strings.Contains(err.Error(), "npm ERR! code E404") || !strings.Contains(err.Error(), "npm ci") {
			t.Fatalf("err = %v, want npm's output quoted", err)
		}
	})
	t.Run("no npm", func(t *testing.T) {
		_, err := prepare(context.Background(), filepath.Join(t.TempDir(), "s"), "/nonexistent/npm", sc, log)
		if !errors.Is(err, ErrNoNode) {
			t.Fatalf("err = %v, want ErrNoNode", err)
		}
	})
	t.Run("dir holds something else", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := prepare(context.Background(), dir, fakeNPM(t, "mkdir node_modules"), sc, log)
		if err == nil || !strings.Contains(err.Error(), "remove it") {
			t.Fatalf("err = %v, want one that says what to do", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := prepare(ctx, filepath.Join(t.TempDir(), "s"), fakeNPM(t, "sleep 10"), sc, log)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestStartWithoutNode(t *testing.T) {
	s := New(Config{Node: "/nonexistent/node", Dir: t.TempDir()}, nil)
	defer s.Close()
	err := s.Start(context.Background())
	if !errors.Is(err, ErrNoNode) || !strings.Contains(err.Error(), "apt-get install nodejs") {
		t.Fatalf("err = %v, want ErrNoNode saying how to install it", err)
	}
}
