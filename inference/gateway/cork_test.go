package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// countingListener counts the writes to its connections.
type countingListener struct {
	net.Listener
	mu     sync.Mutex
	writes int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

func (l *countingListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.writes++
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

// serveCounted serves h through NewHTTPServer on Listener over a counting
// listener.
func serveCounted(t *testing.T, h http.Handler) (string, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	serveOn(t, h, cl)
	return ln.Addr().String(), cl
}

// TestCorkedLastPart: an answer's last part, written corked, leaves in one
// write, the chunked body's end included, and arrives whole; parts flushed
// before it leave at once; a connection the server closes sends what it
// held first.
func TestCorkedLastPart(t *testing.T) {
	answer := strings.Repeat("data: {\"x\":\"0123456789abcdef\"}\n\n", 500) // 17 KiB: several of net/http's 4 KiB buffers
	first := make(chan struct{})
	read := make(chan struct{})
	addr, cl := serveCounted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		if r.URL.Path == "/streamed" {
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			close(first)
			<-read // the app has the first part before the handler goes on
		}
		corkLast(r)
		io.WriteString(w, answer)
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	get := func(path, extra string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	before := cl.count()
	resp := get("/whole", "")
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != answer {
		t.Fatalf("corked answer: %d bytes, %v; want %d bytes", len(body), err, len(answer))
	}
	if n := cl.count() - before; n != 1 {
		t.Fatalf("a corked answer of %d bytes left in %d writes, want 1", len(answer), n)
	}

	before = cl.count()
	resp = get("/streamed", "")
	<-first
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("the first part, flushed before the last: %q, %v", line, err)
	}
	close(read)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.HasSuffix(rest, []byte(answer)) {
		t.Fatalf("the rest: %d bytes, %v", len(rest), err)
	}
	if n := cl.count() - before; n != 2 {
		t.Fatalf("a streamed answer left in %d writes, want 2: its first part and its corked last", n)
	}

	first, read = make(chan struct{}), make(chan struct{})
	resp = get("/whole", "Connection: close\r\n")
	if body, err = io.ReadAll(resp.Body); err != nil || string(body) != answer {
		t.Fatalf("corked answer on a closing connection: %d bytes, %v", len(body), err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the answer the server should close the connection: %v", err)
	}
}
