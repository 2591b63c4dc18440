package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/node/config"
)

// TestAPIConnectionCap: with client.max_connections 2, two idle
// connections hold the API; a third request waits until one closes, then
// is answered.
func TestAPIConnectionCap(t *testing.T) {
	cfg := config.Default(config.RoleClient)
	cfg.DataDir = t.TempDir()
	cfg.Client.APIAddr = "127.0.0.1:0"
	cfg.Client.MaxConnections = 2
	cfg.Admin.Addr = ""
	// A proxy that is never there: the API answers 503 no_proxy, which is
	// all this test needs.
	cfg.Client.Proxies = []string{"/ip4/127.0.0.1/tcp/9/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"}
	n, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", n.APIAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	answered := make(chan int, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get("http://" + n.APIAddr() + "/v1/models")
		if err != nil {
			answered <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	select {
	case code := <-answered:
		t.Fatalf("a third connection was served (%d) while two held the cap", code)
	case <-time.After(300 * time.Millisecond): // the absence of an answer: nothing signals it
	}
	held[0].Close()
	select {
	case code := <-answered:
		if code <= 0 {
			t.Fatalf("the waiting request failed once a connection closed")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting request was not served after a connection closed")
	}
}
