package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// net/http writes a response through a 4 KiB buffer and chunked framing,
// so the last part of an answer (often the whole answer: a fast engine
// has it ready at once) leaves in three system calls or more: the buffer
// filled, the rest of the body, then the closing chunk after the handler
// returns. Each wakes the app's reader. A corked connection holds what is
// written from the moment the handler writes the answer's last part until
// the server is done with the response (its ConnState leaves Active), and
// sends it in one write. Streamed parts before the last are not corked:
// they go out as they come.

// corkConn is a connection of the API server that can be corked. Its
// writes, cork and uncork all come from the connection's goroutine (the
// server's, which runs the handler); Close may come from another (the
// server's Close), and must not wait on a write to a slow app, so no lock
// is held while writing.
type corkConn struct {
	net.Conn

	mu     sync.Mutex // guards corked and buf
	corked bool
	buf    []byte
}

// maxCork bounds what a corked connection holds: past it, it is sent.
const maxCork = 256 << 10

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.corked && len(c.buf)+len(p) <= maxCork {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	corked := c.corked
	c.mu.Unlock()
	if corked { // full: what it held goes first
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// cork holds writes until uncork.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork sends what was held, in one write, and stops holding.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	c.corked = false
	c.mu.Unlock()
	return c.flush()
}

// flush sends what is held.
func (c *corkConn) flush() error {
	c.mu.Lock()
	buf := c.buf
	c.buf = nil
	c.mu.Unlock()
	if len(buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(buf)
	if cap(buf) <= 64<<10 { // one large answer does not pin its buffer
		c.mu.Lock()
		if c.buf == nil {
			c.buf = buf[:0]
		}
		c.mu.Unlock()
	}
	return err
}

// CloseWrite sends what is held, then half-closes the connection if it
// can: net/http half-closes before closing a connection it will not reuse.
func (c *corkConn) CloseWrite() error {
	err := c.uncork()
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		if e := cw.CloseWrite(); err == nil {
			err = e
		}
	}
	return err
}

// Close sends what is held, for at most closeFlush, and closes.
func (c *corkConn) Close() error {
	c.mu.Lock()
	buf := c.buf
	c.buf, c.corked = nil, false
	c.mu.Unlock()
	if len(buf) > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
		c.Conn.Write(buf) // a failure is the close's own
	}
	return c.Conn.Close()
}

// closeFlush bounds how long Close waits to send what a connection held.
const closeFlush = time.Second

// corkListener makes its connections corkable.
type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

// Listener wraps the API server's listener so that a response's last part
// leaves in one write (cork.go): serve NewHTTPServer's server on it.
func Listener(ln net.Listener) net.Listener { return corkListener{ln} }

type corkKey struct{}

// corkContext is NewHTTPServer's ConnContext: a request finds its
// connection, if it is corkable.
func corkContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*corkConn); ok {
		return context.WithValue(ctx, corkKey{}, cc)
	}
	return ctx
}

// corkState is NewHTTPServer's ConnState: once the server is done with a
// response (idle, closed or hijacked), what it held goes out.
func corkState(c net.Conn, st http.ConnState) {
	if cc, ok := c.(*corkConn); ok && st != http.StateNew && st != http.StateActive {
		if err := cc.uncork(); err != nil {
			cc.Conn.Close() // the app is gone: the server's next read ends
		}
	}
}

// corkLast corks r's connection, if it is corkable: what the handler
// writes from now on is the response's last part.
func corkLast(r *http.Request) {
	if cc, ok := r.Context().Value(corkKey{}).(*corkConn); ok {
		cc.cork()
	}
}
