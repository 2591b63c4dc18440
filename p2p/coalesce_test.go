package p2p

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeConn is a net.Conn whose writes a test controls: each Write waits
// for a token on gate (when gate is set) and then records what it got.
type fakeConn struct {
	net.Conn
	gate   chan struct{}
	mu     sync.Mutex // guards writes, err, closed
	writes [][]byte
	err    error
	closed bool
}

func (f *fakeConn) Write(b []byte) (int, error) {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.writes = append(f.writes, append([]byte(nil), b...))
	return len(b), nil
}

func (f *fakeConn) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

func (f *fakeConn) all() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Join(f.writes, nil)
}

func (f *fakeConn) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.writes)
}

// TestCoalescingBatches: frames written while a write is in flight leave
// together, in order, in the next write.
func TestCoalescingBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeConn{gate: make(chan struct{})}
		c := newCoalescingConn(f)
		c.Write([]byte("a")) // taken by the writer, which now waits on the gate
		synctest.Wait()
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n != 0 {
			t.Fatalf("the writer never took the first frame: %d bytes pending", n)
		}
		for _, s := range []string{"b", "c", "d"} {
			if _, err := c.Write([]byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		f.gate <- struct{}{} // "a" goes out
		f.gate <- struct{}{} // "bcd" goes out, in one write
		close(f.gate)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if got := string(f.all()); got != "abcd" {
			t.Fatalf("wrote %q, want abcd", got)
		}
		if n := f.count(); n != 2 {
			t.Fatalf("%d writes, want 2 (the three queued frames batched)", n)
		}
		if !f.closed {
			t.Fatal("Close did not close the connection")
		}
	})
}

// TestCoalescingConcurrentOrder: many writers, every byte arrives, each
// writer's frames in its order.
func TestCoalescingConcurrentOrder(t *testing.T) {
	f := &fakeConn{}
	c := newCoalescingConn(f)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c.Write([]byte{byte('a' + w), byte(i)})
			}
		})
	}
	wg.Wait()
	c.Close()
	got := f.all()
	if len(got) != 8*200*2 {
		t.Fatalf("%d bytes arrived, want %d", len(got), 8*200*2)
	}
	next := make(map[byte]int)
	for i := 0; i < len(got); i += 2 {
		w, n := got[i], int(got[i+1])
		if n != next[w] {
			t.Fatalf("writer %c: frame %d arrived when %d was due", w, n, next[w])
		}
		next[w]++
	}
}

// TestCoalescingError: once a write fails, later writes return the error.
func TestCoalescingError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		f := &fakeConn{err: boom}
		c := newCoalescingConn(f)
		c.Write([]byte("x"))
		synctest.Wait() // the writer has tried "x", and failed
		if _, err := c.Write([]byte("y")); !errors.Is(err, boom) {
			t.Fatalf("a failed connection kept taking writes: %v", err)
		}
		c.Close()
		if _, err := c.Write([]byte("z")); err == nil {
			t.Fatal("write after close succeeded")
		}
	})
}

// TestCoalescingBackpressure: a writer past maxPending waits for the
// connection instead of queueing without bound.
func TestCoalescingBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeConn{gate: make(chan struct{})}
		c := newCoalescingConn(f)
		big := bytes.Repeat([]byte("x"), maxPending)
		c.Write(big[:1]) // in flight, held at the gate
		c.Write(big)     // fills the queue
		blocked := make(chan struct{})
		go func() {
			c.Write([]byte("more")) // must wait
			close(blocked)
		}()
		synctest.Wait() // the writer, held at the gate, and the third Write are blocked, or it did not wait
		select {
		case <-blocked:
			t.Fatal("a write past maxPending did not wait")
		default:
		}
		close(f.gate) // let everything through
		select {
		case <-blocked:
		case <-time.After(5 * time.Second):
			t.Fatal("the waiting writer was never released")
		}
		c.Close()
		if n := len(f.all()); n != 1+maxPending+4 {
			t.Fatalf("%d bytes arrived, want %d", n, 1+maxPending+4)
		}
	})
}

var _ io.Writer = (*coalescingConn)(nil)
