package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeRunScript runs scripts/run.sh, what `make run` runs, with the
// real cocoon and chat binaries, as a person at a terminal would: after
// start-up it sends a request of its own and sees its payment appear in
// the script's output while the script runs, then presses Ctrl-C (SIGINT
// to the whole process group) and sees the final totals and the shutdown.
func TestMakeRunScript(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binaries and starts a whole testnet through scripts/run.sh")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not on PATH: scripts/run.sh is a bash script")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: make run's testnet runs the sandbox chain in Node.js")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for pkg, name := range map[string]string{"./cmd/cocoon": "cocoon", "./examples/chat": "chat"} {
		build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(bin, name), pkg)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	addr := freeAddr(t)

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, filepath.Join(root, "scripts", "run.sh"))
	cmd.Env = append(os.Environ(), "COCOON_API_ADDR="+addr, "COCOON_BIN_DIR="+bin, "TMPDIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, as a terminal's job
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	var seen []string
	// await reads the script's output up to a line containing want.
	await := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the script ended before %q:\n%s", want, strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				if strings.Contains(l, want) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q in the script's output:\n%s", want, strings.Join(seen, "\n"))
			}
		}
	}
	await("testnet: dashboard of client 1: http://127.0.0.1:")
	await("== the network's log follows")

	// A request of the test's own, after start-up: its payment must reach
	// the terminal while the network runs.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/chat/completions",
		strings.NewReader(`{"model":"sim-small","messages":[{"role":"user","content":"hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat completion: %s", resp.Status)
	}
	await("testnet: payments: clients spent ")

	// Ctrl-C: the terminal signals the whole foreground group.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	stopped := len(seen)
	await("testnet: shutting down")
	await("make run: stopped")
	for range lines { // the rest, so that Wait can finish
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the script exited with %v after Ctrl-C, want 0:\n%s", err, strings.Join(seen, "\n"))
	}
	var totals bool
	for _, l := range seen[stopped:] {
		totals = totals || strings.HasPrefix(l, "testnet: payments: clients spent ")
	}
	if !totals {
		t.Errorf("no final totals after Ctrl-C:\n%s", strings.Join(seen, "\n"))
	}
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
