package p2p

import (
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// yamux writes every frame to the secured connection by itself: one
// encryption and one system call per frame (go-yamux's write coalescing is
// disabled, libp2p issue #644). A request opens, fills and closes a stream
// at every hop, so most frames are a dozen bytes. coalescingMuxer puts a
// coalescingConn under yamux: frames queue in a buffer while one write is
// in flight and go out together in the next, so the batch grows with the
// load and a lone frame waits for nothing. Bytes on the wire are
// unchanged; this is not a protocol change.
type coalescingMuxer struct {
	inner network.Multiplexer
}

func (m coalescingMuxer) NewConn(c net.Conn, isServer bool, scope network.PeerScope) (network.MuxedConn, error) {
	return m.inner.NewConn(newCoalescingConn(c), isServer, scope)
}

// maxPending bounds the bytes queued behind the write in flight; a writer
// past it waits (backpressure), as it would on the socket. At most about
// twice this is held: the batch being written and the queue behind it.
const maxPending = 1 << 20

// closeFlushTimeout bounds how long Close waits for queued bytes to leave.
const closeFlushTimeout = 2 * time.Second

type coalescingConn struct {
	net.Conn
	mu       sync.Mutex // guards pending, spare, err, closing
	queued   *sync.Cond // signalled when pending grows or closing is set
	drained  *sync.Cond // signalled when a write completes or fails
	pending  []byte
	spare    []byte
	err      error
	closing  bool
	done     chan struct{} // closed when the writer goroutine ends
	closeErr error
	once     sync.Once
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, done: make(chan struct{})}
	cc.queued = sync.NewCond(&cc.mu)
	cc.drained = sync.NewCond(&cc.mu)
	go cc.writeLoop()
	return cc
}

// Write queues b. An error of an earlier write is returned here, so a
// failed connection is noticed one write late, as with a socket buffer.
func (c *coalescingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.pending) > 0 && len(c.pending)+len(b) > maxPending {
		c.drained.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.closing {
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, b...)
	c.queued.Signal()
	return len(b), nil
}

func (c *coalescingConn) writeLoop() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.pending) == 0 && !c.closing && c.err == nil {
			c.queued.Wait()
		}
		if len(c.pending) == 0 || c.err != nil {
			c.mu.Unlock()
			return
		}
		buf := c.pending
		c.pending, c.spare = c.spare[:0], nil
		c.drained.Broadcast() // the queue is empty again: waiting writers may fill it
		c.mu.Unlock()

		_, err := c.Conn.Write(buf)

		c.mu.Lock()
		if cap(buf) <= 4*maxPending {
			c.spare = buf[:0]
		}
		if err != nil {
			c.err = err
		}
		c.drained.Broadcast()
		c.mu.Unlock()
	}
}

// Close sends what is queued (for at most closeFlushTimeout) and closes
// the connection.
func (c *coalescingConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.queued.Signal()
		c.drained.Broadcast()
		c.mu.Unlock()
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		<-c.done
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}
