package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"regexp"
	"sync"
	"time"

	"github.com/cocoon-mesh/cocoon/chain"
)

// ErrNotStarted is returned by every method called before Start succeeded or
// after Close. Retrying helps only once Start has succeeded.
var ErrNotStarted = errors.New("sandbox: not started")

const (
	// startTimeout bounds how long Start waits for the sidecar's listening
	// line when ctx allows longer. Loading the emulator takes a second or two.
	startTimeout = 60 * time.Second
	// stopGrace is how long Close waits for the sidecar to exit after closing
	// its stdin before killing it.
	stopGrace = 5 * time.Second
	// maxRequest is the sidecar's cap on a request body.
	maxRequest = 1 << 20
	// maxResponse caps a response body read from the sidecar.
	maxResponse = 64 << 20
	// stderrTail is how much of the sidecar's stderr an error quotes.
	stderrTail = 4096
)

var _ chain.Chain = (*Sandbox)(nil)

// Config configures a Sandbox. The zero value works when node and npm are on
// PATH.
type Config struct {
	// Dir is where the sidecar and its npm packages are installed. Empty
	// means sandbox-<hash of package-lock.json> under cocoon/ in the user's
	// cache directory.
	Dir string
	// Node and NPM are the executables to run; empty means "node" and "npm"
	// looked up on PATH.
	Node, NPM string
}

// Sandbox is a chain.Chain on a local TVM emulator. It is safe for concurrent
// use; the emulator runs requests one at a time.
type Sandbox struct {
	cfg       Config
	log       *slog.Logger
	transport *http.Transport
	client    *http.Client

	closing chan struct{} // closed by Close

	mu      sync.Mutex // guards base, token, proc, closed, txs, changed
	base    string     // the sidecar's URL, once started
	token   string     // what every request to the sidecar carries, once started
	proc    *process
	closed  bool
	txs     map[txKey]chain.Transaction // every transaction seen, by account and inbound message
	changed chan struct{}               // closed and replaced whenever txs grows
}

// txKey finds a transaction by its account and its inbound message's hash.
type txKey struct {
	addr string // raw "wc:hex"
	msg  [32]byte
}

// New returns a Sandbox that starts nothing until Start. A nil log discards.
func New(cfg Config, log *slog.Logger) *Sandbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	return &Sandbox{
		cfg:       cfg,
		log:       log.With("component", "sandbox"),
		transport: transport,
		client:    &http.Client{Transport: transport},
		closing:   make(chan struct{}),
		txs:       make(map[txKey]chain.Transaction),
		changed:   make(chan struct{}),
	}
}

// Start installs the sidecar if needed (the first time, npm ci takes about
// ten seconds), starts it and returns once it listens. ctx bounds the
// preparation and the start, not the sidecar's life: Close ends that.
func (s *Sandbox) Start(ctx context.Context) error {
	s.mu.Lock()
	started, closed := s.proc != nil, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return errors.New("sandbox: Start after Close")
	case started:
		return errors.New("sandbox: already started")
	}

	node, err := lookPath(s.cfg.Node, "node")
	if err != nil {
		return err
	}
	sc, err := loadSidecar()
	if err != nil {
		return err
	}
	dir := s.cfg.Dir
	if dir == "" {
		if dir, err = defaultDir(sc); err != nil {
			return err
		}
	}
	script, err := prepare(ctx, dir, s.cfg.NPM, sc, s.log)
	if err != nil {
		return err
	}
	token := newToken()
	p, addr, err := startProcess(ctx, node, script, dir, token, s.log)
	if err != nil {
		return err
	}

	s.mu.Lock()
	if s.closed || s.proc != nil {
		s.mu.Unlock()
		p.stop()
		return errors.New("sandbox: closed or started while starting")
	}
	s.proc, s.base, s.token = p, "http://"+addr, token
	s.mu.Unlock()
	s.log.Info("sidecar started", "addr", addr, "dir", dir)
	return nil
}

// Attach returns a Sandbox that uses the sidecar another Sandbox started,
// at url with token (its URL and Token), for another process on the same
// machine: tests that run a node in a child process. It starts and stops
// nothing; the one that started the sidecar owns it.
func Attach(url, token string, log *slog.Logger) *Sandbox {
	s := New(Config{}, log)
	s.base, s.token = url, token
	s.proc = &process{done: make(chan struct{}), attached: true}
	return s
}

// URL is the sidecar's URL, empty before Start.
func (s *Sandbox) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base
}

// Token is the secret every request to the sidecar carries, empty before
// Start; with URL it lets another process Attach.
func (s *Sandbox) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// Close stops the sidecar and waits for it to exit. Calls in flight fail. It
// returns the sidecar's exit error, if it did not exit cleanly.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	close(s.closing)

	var err error
	if p != nil && !p.attached {
		err = p.stop()
	}
	s.transport.CloseIdleConnections()
	return err
}

// current returns the sidecar's URL, token and process, or ErrNotStarted.
func (s *Sandbox) current() (base, token string, p *process, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return "", "", nil, ErrNotStarted
	}
	return s.base, s.token, s.proc, nil
}

// apiError is an error reply from the sidecar.
type apiError struct {
	Path     string `json:"-"`
	Status   int    `json:"-"`
	Message  string `json:"error"`
	ExitCode *int   `json:"exitCode"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("sandbox: %s: %s (HTTP %d)", e.Path, e.Message, e.Status)
}

// call posts req as JSON to the sidecar's path and decodes the reply into
// resp. An error reply is an *apiError.
func (s *Sandbox) call(ctx context.Context, path string, req, resp any) error {
	base, token, p, err := s.current()
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("sandbox: %s: encoding the request: %w", path, err)
	}
	if len(body) > maxRequest {
		return fmt.Errorf("sandbox: %s: request of %d bytes is over the sidecar's limit of %d", path, len(body), maxRequest)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sandbox: %s: %w", path, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+token)
	hres, err := s.client.Do(hreq)
	if err != nil {
		if exited := p.exited(); exited != nil {
			return fmt.Errorf("sandbox: %s: %w", path, exited)
		}
		return fmt.Errorf("sandbox: %s: %w", path, err)
	}
	defer hres.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hres.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("sandbox: %s: reading the reply: %w", path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("sandbox: %s: reply over %d bytes", path, maxResponse)
	}
	if hres.StatusCode != http.StatusOK {
		e := &apiError{Path: path, Status: hres.StatusCode}
		if err := json.Unmarshal(data, e); err != nil || e.Message == "" {
			e.Message = tail(data, 512)
		}
		return e
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return fmt.Errorf("sandbox: %s: decoding the reply: %w", path, err)
	}
	return nil
}

// process is a running sidecar.
type process struct {
	// attached: another process runs it (Attach); it has no cmd and is
	// never stopped from here.
	attached bool
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	done     chan struct{} // closed once it exited and its output is drained
	err      error         // how it exited; read after done

	mu     sync.Mutex // guards stderr
	stderr []byte     // the tail of its stderr
}

var listening = regexp.MustCompile(`^listening (127\.0\.0\.1:[0-9]{1,5})$`)

// newToken is a fresh random token for the sidecar: 32 bytes, hex.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// startProcess runs node script in dir, gives it token as the first line
// of its stdin (argv and the environment are readable by other local
// users in /proc; the pipe is not), and waits for its listening line,
// returning the address it listens on.
func startProcess(ctx context.Context, node, script, dir, token string, log *slog.Logger) (*process, string, error) {
	cmd := exec.Command(node, script)
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", fmt.Errorf("sandbox: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", fmt.Errorf("sandbox: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", fmt.Errorf("sandbox: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("sandbox: starting %s %s: %w", node, script, err)
	}
	p := &process{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	// The pipe's buffer holds the line even before the sidecar reads it.
	if _, err := io.WriteString(stdin, token+"\n"); err != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		return nil, "", fmt.Errorf("sandbox: giving the sidecar its token: %w", err)
	}

	// Both pumps read to EOF, which comes when the process exits; then Wait
	// reaps it. done closes after all three.
	first := make(chan string, 1)
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() {
		defer pumps.Done()
		sc := bufio.NewScanner(stdout)
		for n := 0; sc.Scan(); n++ {
			if n == 0 {
				first <- sc.Text()
				continue
			}
			log.Debug("sidecar stdout", "line", sc.Text())
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		defer pumps.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.addStderr(sc.Bytes())
			log.Debug("sidecar stderr", "line", sc.Text())
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		pumps.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case line := <-first:
		m := listening.FindStringSubmatch(line)
		if m == nil {
			p.stop()
			return nil, "", fmt.Errorf("sandbox: sidecar said %q, want \"listening 127.0.0.1:PORT\"", line)
		}
		return p, m[1], nil
	case <-p.done:
		return nil, "", fmt.Errorf("sandbox: sidecar exited before it listened: %v%s", p.err, p.stderrTail())
	case <-ctx.Done():
		p.stop()
		return nil, "", fmt.Errorf("sandbox: starting the sidecar: %w", ctx.Err())
	case <-timer.C:
		p.stop()
		return nil, "", fmt.Errorf("sandbox: sidecar did not listen within %v%s", startTimeout, p.stderrTail())
	}
}

func (p *process) addStderr(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stderr = append(p.stderr, line...)
	p.stderr = append(p.stderr, '\n')
	if len(p.stderr) > 2*stderrTail {
		p.stderr = append([]byte(nil), p.stderr[len(p.stderr)-stderrTail:]...)
	}
}

// stderrTail returns the tail of stderr, set off for an error message, or "".
func (p *process) stderrTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(bytes.TrimSpace(p.stderr)) == 0 {
		return ""
	}
	return "; stderr:\n" + tail(p.stderr, stderrTail)
}

// exited returns an error saying how the process exited, or nil while it
// runs.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("sidecar exited: %v%s", p.err, p.stderrTail())
	default:
		return nil
	}
}

// stop closes the process's stdin, which makes it exit, kills it if it has
// not within stopGrace, and waits. It returns the exit error unless the exit
// was clean.
func (p *process) stop() error {
	p.stdin.Close()
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.cmd.Process.Kill()
		<-p.done
	}
	if p.err != nil {
		return fmt.Errorf("sandbox: sidecar exited: %w%s", p.err, p.stderrTail())
	}
	return nil
}
