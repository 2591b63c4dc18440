package p2ptest

import (
	"fmt"
	"net"
	"sync"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// SilentAddr listens on a loopback port that accepts connections and never
// answers: a dial to it hangs until its caller gives up, as one to a fake
// record's address does. It is closed at the test's cleanup.
func SilentAddr(tb testing.TB) ma.Multiaddr {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	a, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port))
	if err != nil {
		tb.Fatal(err)
	}
	return a
}
