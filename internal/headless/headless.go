// Package headless runs a page in headless Chromium for the tests of the
// node's web dashboard: the DOM once its scripts ran, or a screenshot.
package headless

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// names are the binaries Find looks for, in order.
var names = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Find returns the path of a Chromium binary on PATH, or "" if there is
// none.
func Find() string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// Browser runs one headless Chromium per call.
type Browser struct {
	Bin string
	// Budget is the virtual time a page gets to run its scripts before
	// Chromium reads it: timers fire as if that much time had passed,
	// without waiting for it. 5 s if zero.
	Budget time.Duration
}

// DOM returns the page at url as its scripts left it.
func (b Browser) DOM(ctx context.Context, url string) (string, error) {
	out, err := b.run(ctx, "--dump-dom", url)
	return string(out), err
}

// Screenshot writes a PNG of the page at url, width by height pixels, to
// file.
func (b Browser) Screenshot(ctx context.Context, url, file string, width, height int) error {
	_, err := b.run(ctx, "--screenshot="+file, "--window-size="+strconv.Itoa(width)+","+strconv.Itoa(height),
		"--hide-scrollbars", url)
	return err
}

func (b Browser) run(ctx context.Context, args ...string) ([]byte, error) {
	profile, err := os.MkdirTemp("", "cocoon-headless-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	budget := b.Budget
	if budget <= 0 {
		budget = 5 * time.Second
	}
	cmd := exec.CommandContext(ctx, b.Bin, append([]string{
		"--headless=new", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--user-data-dir=" + profile,
		"--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10),
	}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", b.Bin, err, tail(stderr.Bytes(), 2000))
	}
	return stdout.Bytes(), nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
