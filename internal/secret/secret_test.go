package secret_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/internal/secret"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte // file already at path, mode 0644
	}{
		{"new file in new directory", nil},
		{"replaces an existing file", []byte("old secret")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a", "b")
			path := filepath.Join(dir, "secret")
			if tt.existing != nil {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, tt.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := secret.Write(path, []byte("new secret")); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "new secret" {
				t.Fatalf("content %q", got)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, want 0600", st.Mode().Perm())
			}
			if tt.existing == nil {
				dst, err := os.Stat(dir)
				if err != nil {
					t.Fatal(err)
				}
				if dst.Mode().Perm() != 0o700 {
					t.Fatalf("directory mode %v, want 0700", dst.Mode().Perm())
				}
			}
			assertNoTempFiles(t, dir)
		})
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// The target is a non-empty directory: the rename fails after the
	// temporary file was written.
	path := filepath.Join(dir, "secret")
	if err := os.MkdirAll(filepath.Join(path, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := secret.Write(path, []byte("x")); err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	assertNoTempFiles(t, dir)
}

func TestRead(t *testing.T) {
	tests := []struct {
		name     string
		mode     os.FileMode // 0: no file
		want     string      // "": no error
		notExist bool        // the error wraps fs.ErrNotExist
	}{
		{"owner only", 0o600, "", false},
		{"owner read-only", 0o400, "", false},
		{"readable by others", 0o644, "has mode -rw-r--r--: run chmod 600 on it", false},
		{"readable by group", 0o640, "has mode -rw-r-----: run chmod 600", false},
		{"writable by others", 0o602, "run chmod 600", false},
		{"missing", 0, "reading test key: open ", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			if tt.mode != 0 {
				if err := os.WriteFile(path, []byte("content"), tt.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil { // umask may have narrowed it
					t.Fatal(err)
				}
			}
			got, err := secret.Read(path, "test key")
			if tt.want == "" {
				if err != nil || string(got) != "content" {
					t.Fatalf("Read = %q, %v; want the content", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Read error %v, want one naming %s and containing %q", err, path, tt.want)
			}
			if errors.Is(err, fs.ErrNotExist) != tt.notExist {
				t.Fatalf("errors.Is(%v, fs.ErrNotExist) = %v, want %v", err, !tt.notExist, tt.notExist)
			}
			if got != nil {
				t.Fatalf("Read returned %q with its error", got)
			}
		})
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
