// Package secret reads and writes the files that hold a node's secrets
// (its identity key, its wallet seed, its admin URL): readable by their
// owner only, written atomically, and refused when others may read them.
package secret

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write writes b to path with mode 0600, creating the directory (0700)
// if needed. It writes a temporary file, syncs it and renames it over
// path, so a crash never leaves a half-written secret.
func Write(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Read returns the contents of the secret at path, which errors name as
// what ("identity key"). A file readable or writable by group or others
// is refused rather than silently trusted. A missing file gives an error
// wrapping fs.ErrNotExist, so that a caller can create the secret.
func Read(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	st, err := f.Stat() // the file read, even if path was replaced since
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", what, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s %s has mode %v: run chmod 600 on it", what, path, st.Mode().Perm())
	}
	return b, nil
}
