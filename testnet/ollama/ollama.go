// Package ollama runs a real ollama server for tests and benchmarks: an
// offline, CPU-only `ollama serve` on a free loopback port, with its own model
// directory, into which a GGUF file (such as the gguf package's tiny llama)
// can be registered as a model and then served through ollama's
// OpenAI-compatible endpoints.
//
// The binary is ollama v0.6.5 built from the Go module proxy (`make ollama`);
// FindBinary says where it lives.
package ollama

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Version is the ollama release the harness runs. Built with `go install`,
// without release flags, the binary reports its version as 0.0.0.
const Version = "v0.6.5"

// ErrNotFound means the ollama binary is not built; building it (`make
// ollama`) or setting COCOON_OLLAMA fixes it, retrying does not.
var ErrNotFound = errors.New("ollama binary not found")

const (
	// startTimeout bounds how long Start waits for the server to answer.
	startTimeout = 60 * time.Second
	// pollInterval is how often Start asks whether the server answers.
	pollInterval = 50 * time.Millisecond
	// stopGrace is how long Close waits after SIGTERM before killing.
	stopGrace = 5 * time.Second
)

// FindBinary returns the path of the ollama binary: $COCOON_OLLAMA if set,
// else cocoon/ollama-v0.6.5/ollama in the user's cache directory
// ($XDG_CACHE_HOME, or $HOME/.cache). The error wraps ErrNotFound when the
// file does not exist.
func FindBinary(getenv func(string) string) (string, error) {
	path := getenv("COCOON_OLLAMA")
	if path == "" {
		cache := getenv("XDG_CACHE_HOME")
		if cache == "" {
			home := getenv("HOME")
			if home == "" {
				return "", fmt.Errorf("%w: neither COCOON_OLLAMA, XDG_CACHE_HOME nor HOME is set; build it with `make ollama`", ErrNotFound)
			}
			cache = filepath.Join(home, ".cache")
		}
		path = filepath.Join(cache, "cocoon", "ollama-"+Version, "ollama")
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w at %s: build it with `make ollama` or set COCOON_OLLAMA", ErrNotFound, path)
	}
	if err != nil {
		return "", fmt.Errorf("finding ollama: %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("ollama at %s is not an executable file", path)
	}
	return path, nil
}

// Config says which binary to run and where it keeps its state.
type Config struct {
	// Bin is the path of the ollama binary (see FindBinary).
	Bin string
	// Dir is the server's working directory: its HOME, its models under
	// Dir/models and its output in Dir/ollama.log.
	Dir string
}

// Server is a running `ollama serve`. On SIGTERM it unloads its models,
// stopping the runner processes it started.
type Server struct {
	url    string
	log    *slog.Logger
	client *http.Client
	pid    int

	stop     chan struct{} // closed to ask the supervisor to stop the server
	stopOnce sync.Once
	done     chan struct{} // closed when the server has exited and been reaped
	exitErr  error         // why the server exited; set before done is closed
}

// Start runs `ollama serve` on a free 127.0.0.1 port and waits until it
// answers. The server runs until Close is called or ctx is cancelled.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.Bin == "" {
		return nil, errors.New("ollama config: Bin is empty")
	}
	if cfg.Dir == "" {
		return nil, errors.New("ollama config: Dir is empty")
	}
	models, tmp := filepath.Join(cfg.Dir, "models"), filepath.Join(cfg.Dir, "tmp")
	for _, d := range []string{models, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating ollama directory: %w", err)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(cfg.Dir, "ollama.log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening ollama log: %w", err)
	}
	defer out.Close() // the child holds its own descriptor

	cmd := exec.Command(cfg.Bin, "serve")
	cmd.Dir = cfg.Dir
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own, so that Close can reach the runner
	// processes it starts, and a terminal's Ctrl-C reaches it only through ctx.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = []string{
		"OLLAMA_HOST=" + host,
		"OLLAMA_MODELS=" + models,
		"HOME=" + cfg.Dir,
		"TMPDIR=" + tmp,
		"OLLAMA_NOPRUNE=1",
		"OLLAMA_KEEP_ALIVE=-1", // keep a loaded model: no reloads inside a benchmark
		// CPU only: an invalid device id hides every GPU.
		"CUDA_VISIBLE_DEVICES=-1",
		"HIP_VISIBLE_DEVICES=-1",
		"ROCR_VISIBLE_DEVICES=-1",
	}
	log = log.With("component", "ollama")
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting ollama: %w", err)
	}

	s := &Server{
		url:    "http://" + host,
		log:    log,
		client: &http.Client{Transport: &http.Transport{}}, // no proxy from the environment
		pid:    cmd.Process.Pid,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go s.supervise(ctx, cmd)

	version, err := s.waitReady(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	log.Info("ollama started", "url", s.url, "version", version, "pid", s.pid, "took", time.Since(begin))
	return s, nil
}

// URL returns the server's base URL, http://127.0.0.1:<port>.
func (s *Server) URL() string { return s.url }

// OpenAIBase returns the base URL of the OpenAI-compatible API, URL()+"/v1".
func (s *Server) OpenAIBase() string { return s.url + "/v1" }

// Close stops the server: SIGTERM, then SIGKILL to its process group if it
// has not exited within a few seconds. It waits for the process and returns
// an error if the server had already exited on its own or had to be killed.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	s.client.CloseIdleConnections()
	return s.exitErr
}

// supervise waits for the server to exit, stopping it when asked to or when
// ctx is cancelled.
func (s *Server) supervise(ctx context.Context, cmd *exec.Cmd) {
	defer close(s.done)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	select {
	case err := <-exited:
		if err == nil {
			err = errors.New("exit status 0")
		}
		s.exitErr = fmt.Errorf("ollama exited unexpectedly: %w", err)
		s.log.Error("ollama exited unexpectedly", "err", err)
		return
	case <-s.stop:
	case <-ctx.Done():
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.log.Warn("signalling ollama", "err", err)
	}
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM {
			err = nil // it did not catch SIGTERM, but it stopped
		}
		if err != nil {
			s.exitErr = fmt.Errorf("ollama stopped: %w", err)
		}
	case <-grace.C:
		// The group, runners included, while its leader is not yet reaped.
		syscall.Kill(-s.pid, syscall.SIGKILL)
		<-exited
		s.exitErr = fmt.Errorf("ollama did not stop within %v of SIGTERM; killed", stopGrace)
	}
	s.log.Debug("ollama stopped", "err", s.exitErr)
}

// waitReady polls the server until it answers, it exits, ctx ends or
// startTimeout passes. It returns the version the server reports.
func (s *Server) waitReady(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		version, err := s.version(ctx)
		if err == nil {
			return version, nil
		}
		select {
		case <-s.done:
			return "", fmt.Errorf("waiting for ollama to answer: %w", s.exitErr)
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for ollama to answer: %w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (s *Server) version(ctx context.Context) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	if err := s.do(ctx, http.MethodGet, "/api/version", nil, "", &v); err != nil {
		return "", err
	}
	return v.Version, nil
}

// CreateModel registers the GGUF file at ggufPath as model name: it uploads
// the file as a blob and creates the model from it. Requests then name the
// model as name, or name:latest.
func (s *Server) CreateModel(ctx context.Context, name, ggufPath string) error {
	begin := time.Now()
	digest, err := fileDigest(ggufPath)
	if err != nil {
		return err
	}
	f, err := os.Open(ggufPath)
	if err != nil {
		return fmt.Errorf("opening model: %w", err)
	}
	defer f.Close()
	if err := s.do(ctx, http.MethodPost, "/api/blobs/"+digest, f, "application/octet-stream", nil); err != nil {
		return fmt.Errorf("uploading model %s: %w", name, err)
	}

	stream := false
	req := struct {
		Model  string            `json:"model"`
		Files  map[string]string `json:"files"`
		Stream *bool             `json:"stream"`
	}{name, map[string]string{"model.gguf": digest}, &stream}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding create request: %w", err)
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	if err := s.do(ctx, http.MethodPost, "/api/create", bytes.NewReader(body), "application/json", &resp); err != nil {
		return fmt.Errorf("creating model %s: %w", name, err)
	}
	if resp.Error != "" || resp.Status != "success" {
		return fmt.Errorf("creating model %s: status %q, error %q", name, resp.Status, resp.Error)
	}
	s.log.Info("model created", "model", name, "digest", digest, "took", time.Since(begin))
	return nil
}

// do sends a request to the server and decodes a JSON answer into out, if
// out is not nil. A status other than 2xx is an error carrying ollama's
// error message.
func (s *Server) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding answer: %w", err)
	}
	return nil
}

// fileDigest returns "sha256:<hex>" of the file at path, ollama's blob name.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("opening model: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing model: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
}
