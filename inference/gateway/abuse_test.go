package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// TestProxyLiesAboutCost: the proxy sets an answer's cost, and the client
// pays it; the worker's part must be what the worker's signed receipt
// bills (its tokens at its price), or the answer is withheld as
// receipt_invalid and nothing is paid. The tokens themselves are compared
// with the receipt by TestReceiptCheck.
func TestProxyLiesAboutCost(t *testing.T) {
	workerKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	workerID, _ := peer.IDFromPrivateKey(workerKey)
	price := payments.Price{Prompt: 1_000_000_000, Completion: 3_000_000_000}
	tokens := payments.Tokens{Prompt: 1, Completion: 2}
	bill, err := payments.Cost(tokens, price, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := bill.Worker // 7,000 nanoTON
	tests := []struct {
		name   string
		cost   *payments.Bill
		stream bool
		ok     bool
		cap    int64 // the network's fee cap in ppm; 0: none known
	}{
		{"honest", &payments.Bill{Worker: w, Fee: 140, Total: w + 140}, false, true, 0},
		{"honest, streamed", &payments.Bill{Worker: w, Fee: 140, Total: w + 140}, true, true, 0},
		{"no cost named", nil, false, true, 0},
		{"worker part inflated tenfold", &payments.Bill{Worker: 10 * w, Fee: 140, Total: 10*w + 140}, false, false, 0},
		{"worker part one nanoTON over", &payments.Bill{Worker: w + 1, Fee: 140, Total: w + 141}, false, false, 0},
		{"worker part under the receipt", &payments.Bill{Worker: w - 1, Fee: 140, Total: w + 139}, false, false, 0},
		{"total above worker plus fee", &payments.Bill{Worker: w, Fee: 140, Total: w + 1_000_000}, false, false, 0},
		{"negative fee", &payments.Bill{Worker: w, Fee: -1, Total: w - 1}, false, false, 0},
		{"inflated, streamed", &payments.Bill{Worker: 10 * w, Fee: 140, Total: 10*w + 140}, true, false, 0},
		{"fee at the network's cap", &payments.Bill{Worker: w, Fee: 140, Total: w + 140}, false, true, 20_000},
		{"fee a nanoTON over the network's cap", &payments.Bill{Worker: w, Fee: 141, Total: w + 141}, false, false, 20_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &fakeUpstream{events: make(chan inference.Event, 2), closed: make(chan struct{}), opened: make(chan *inference.Request, 1)}
			payer := &fakePayer{}
			fees := feeCap(tt.cap)
			if tt.cap == 0 {
				fees = -1
			}
			srv := httptestServer(t, New(Config{}, up, payer, fees, slog.New(slog.DiscardHandler)))
			body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
			if tt.stream {
				body = `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
			}
			type result struct {
				status int
				raw    string
			}
			done := make(chan result, 1)
			go func() {
				resp, err := http.Post(srv+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					done <- result{raw: err.Error()}
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- result{resp.StatusCode, string(raw)}
			}()
			req := <-up.opened
			signed, err := payments.Sign(&payments.Receipt{RequestID: req.ID, RequestHash: payments.Hash(req.Body),
				ResponseHash: payments.Hash([]byte("the answer")), Model: "m", Tokens: tokens, Price: price,
				Worker: workerID, Proxy: workerID}, workerKey)
			if err != nil {
				t.Fatal(err)
			}
			up.events <- inference.Event{Type: inference.FrameChunk, Text: []byte("the answer")}
			up.events <- inference.Event{Type: inference.FrameEnd, End: &inference.End{Usage: inference.Usage{Tokens: payments.Tokens{Prompt: 1, Completion: 2}},
				Worker: workerID.String(), Tier: "dev", Receipt: signed, Cost: tt.cost}}
			res := <-done
			paid := payer.payments()
			refused := strings.Contains(res.raw, "receipt_invalid")
			switch {
			case tt.ok && (res.status != 200 || refused):
				t.Fatalf("got %d %s, want the answer", res.status, res.raw)
			case tt.ok && tt.cost != nil && (len(paid) != 1 || paid[0] != fmt.Sprintf("%s:%d", string(fakeProxy), tt.cost.Total)):
				t.Fatalf("paid %v, want %d once", paid, tt.cost.Total)
			case !tt.ok && !tt.stream && (res.status != 502 || !refused || strings.Contains(res.raw, "the answer\"")):
				t.Fatalf("got %d %s, want 502 receipt_invalid without the answer", res.status, res.raw)
			case !tt.ok && tt.stream && (!refused || strings.Contains(res.raw, "[DONE]")):
				t.Fatalf("got %s, want the stream to end in receipt_invalid, not [DONE]", res.raw)
			case !tt.ok && len(paid) != 0:
				t.Fatalf("paid %v for a refused answer", paid)
			}
		})
	}
}

// httptestServer serves h through NewHTTPServer, the server a client node
// runs, on a free loopback port; it returns the base URL.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, h, ln)
	return "http://" + ln.Addr().String()
}

// serveOn serves h through NewHTTPServer on Listener(ln) until the test
// ends.
func serveOn(t *testing.T, h http.Handler, ln net.Listener) {
	t.Helper()
	srv := NewHTTPServer(h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(Listener(ln))
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

// TestSlowBody: an app that sends its headers and then trickles the body
// (slowloris on the body, which ReadHeaderTimeout does not cover) gets 408
// once Config.BodyTimeout has passed, and its connection is closed, while
// other apps are served meanwhile; the deadline is lifted once the body is
// in, so an answer that takes longer than it still arrives.
func TestSlowBody(t *testing.T) {
	const timeout = 300 * time.Millisecond
	up := &slowUpstream{delay: 3 * timeout}
	addr := strings.TrimPrefix(httptestServer(t, New(Config{BodyTimeout: timeout}, up, nil, nil, slog.New(slog.DiscardHandler))), "http://")

	const conns = 20
	type closed struct {
		status string
		after  time.Duration
	}
	results := make(chan closed, conns)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var open []net.Conn
	defer func() {
		close(stop)
		for _, c := range open {
			c.Close()
		}
		wg.Wait()
	}()
	start := time.Now()
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		body := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", 900) + `"}]}`
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		wg.Go(func() { // one body byte every 20 ms: 18 s for the whole body
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < len(body); i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{body[i]}); err != nil {
					return
				}
			}
		})
		wg.Go(func() {
			status, _ := bufio.NewReader(c).ReadString('\n')
			io.Copy(io.Discard, c) // until the server closes
			results <- closed{strings.TrimSpace(status), time.Since(start)}
		})
	}

	// Another app is answered while the trickling ones are held, and its
	// answer, which takes longer than the body deadline, is not cut.
	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), "slow answer") {
		t.Fatalf("a normal request during the attack: %d %s", resp.StatusCode, raw)
	}

	var slowest time.Duration
	deadline := time.After(10 * time.Second)
	for range conns {
		select {
		case r := <-results:
			if !strings.Contains(r.status, " 408 ") {
				t.Errorf("a trickled body got %q, want 408", r.status)
			}
			slowest = max(slowest, r.after)
		case <-deadline:
			t.Fatalf("connections trickling their bodies were still open after 10 s (body timeout %s)", timeout)
		}
	}
	t.Logf("%d connections trickling a body: all answered 408 and closed within %s (body timeout %s)", conns, slowest.Round(time.Millisecond), timeout)
}

// slowUpstream answers every request with one chunk and an End, after
// delay.
type slowUpstream struct{ delay time.Duration }

func (u *slowUpstream) Catalog(ctx context.Context) (*inference.Catalog, error) {
	return &inference.Catalog{Models: []inference.Model{{ID: "m"}}}, nil
}

func (u *slowUpstream) Open(ctx context.Context, _ *inference.Request) (Response, error) {
	t := time.NewTimer(u.delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
	}
	return &slowResponse{events: []inference.Event{
		{Type: inference.FrameChunk, Text: []byte("slow answer")},
		{Type: inference.FrameEnd, End: &inference.End{FinishReason: "stop"}},
	}}, nil
}

type slowResponse struct{ events []inference.Event }

func (r *slowResponse) Next() (inference.Event, error) {
	if len(r.events) == 0 {
		return inference.Event{}, io.ErrUnexpectedEOF
	}
	ev := r.events[0]
	r.events = r.events[1:]
	return ev, nil
}

func (r *slowResponse) Buffered() bool { return len(r.events) > 0 }
func (r *slowResponse) Close()         {}
