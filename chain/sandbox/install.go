package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cocoon-mesh/cocoon/contracts"
)

// ErrNoNode means node or npm is not installed where Config says (by default,
// on PATH). Retrying helps only once it is installed.
var ErrNoNode = errors.New("sandbox: Node.js not found")

// outputTail is how much of npm's output an error quotes.
const outputTail = 2048

// sidecar is the embedded sidecar's files.
type sidecar struct {
	script, pkg, lock []byte
}

func loadSidecar() (sidecar, error) {
	var sc sidecar
	files := contracts.SidecarFiles()
	for name, dst := range map[string]*[]byte{
		"sandbox.mjs":       &sc.script,
		"package.json":      &sc.pkg,
		"package-lock.json": &sc.lock,
	} {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return sidecar{}, fmt.Errorf("sandbox: reading the embedded %s: %w", name, err)
		}
		*dst = b
	}
	return sc, nil
}

// shortHash names a version of some content in file names.
func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// defaultDir returns where the sidecar is installed when Config.Dir is empty.
func defaultDir(sc sidecar) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("sandbox: no cache directory for the sidecar (set Config.Dir): %w", err)
	}
	return filepath.Join(cache, "cocoon", "sandbox-"+shortHash(sc.lock)), nil
}

// lookPath finds the executable name, or what configured names instead.
func lookPath(configured, name string) (string, error) {
	if configured == "" {
		configured = name
	}
	path, err := exec.LookPath(configured)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v; the sandbox chain runs the TVM emulator in Node.js 18 or later (Debian: apt-get install nodejs npm)", ErrNoNode, configured, err)
	}
	return path, nil
}

// prepare makes dir hold the sidecar's npm packages, installing them if
// needed, writes the sidecar script there and returns the script's path.
func prepare(ctx context.Context, dir, npm string, sc sidecar, log *slog.Logger) (string, error) {
	if !installed(dir, sc) {
		npmPath, err := lookPath(npm, "npm")
		if err != nil {
			return "", err
		}
		if err := install(ctx, dir, npmPath, sc, log); err != nil {
			return "", err
		}
	}
	// Scripts are named by content, so processes running different versions
	// share one install without overwriting each other's script.
	script := filepath.Join(dir, "sandbox-"+shortHash(sc.script)+".mjs")
	if have, err := os.ReadFile(script); err == nil && bytes.Equal(have, sc.script) {
		return script, nil
	}
	if err := writeFileAtomic(script, sc.script); err != nil {
		return "", fmt.Errorf("sandbox: writing the sidecar script: %w", err)
	}
	return script, nil
}

// Installed reports whether the sidecar's npm packages are already
// installed where cfg says, so that Start will not run npm ci first (the
// one long wait, for people to be told about).
func Installed(cfg Config) bool {
	sc, err := loadSidecar()
	if err != nil {
		return false
	}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = defaultDir(sc); err != nil {
			return false
		}
	}
	return installed(dir, sc)
}

// installed reports whether dir holds node_modules installed from the
// embedded lock file.
func installed(dir string, sc sidecar) bool {
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil || !bytes.Equal(lock, sc.lock) {
		return false
	}
	fi, err := os.Stat(filepath.Join(dir, "node_modules"))
	return err == nil && fi.IsDir()
}

// install runs npm ci in a temporary sibling of dir and renames it to dir.
// When another process renamed its own install there first, that one is used.
func install(ctx context.Context, dir, npm string, sc sidecar, log *slog.Logger) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("sandbox: creating %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("sandbox: creating a directory to install into: %w", err)
	}
	defer os.RemoveAll(tmp) // gone already after a successful rename
	for name, b := range map[string][]byte{"package.json": sc.pkg, "package-lock.json": sc.lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return fmt.Errorf("sandbox: writing %s: %w", name, err)
		}
	}

	log.Info("installing sandbox npm packages (once)", "dir", dir)
	start := time.Now()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = tmp
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("sandbox: installing npm packages: %w", ctx.Err())
		}
		return fmt.Errorf("sandbox: npm ci in %s: %w\n%s", tmp, err, tail(out, outputTail))
	}

	if err := os.Rename(tmp, dir); err != nil {
		if installed(dir, sc) {
			log.Debug("another process installed the sandbox npm packages first", "dir", dir)
			return nil
		}
		return fmt.Errorf("sandbox: moving the installed packages into %s (remove it if it holds something else): %w", dir, err)
	}
	log.Info("installed sandbox npm packages", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// writeFileAtomic writes b to path through a temporary file and a rename, so
// that a concurrent reader sees either nothing or all of it.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// tail returns the last n bytes of b, marked when cut.
func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) <= n {
		return string(b)
	}
	return "..." + string(b[len(b)-n:])
}
