package seal_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
)

// The benchmarked exchange: a 2 KiB request and an answer of 50 chunks of
// 128 B, both sides (client seals, worker opens and answers, client opens).
var (
	benchBody  = bytes.Repeat([]byte("x"), 2048)
	benchChunk = bytes.Repeat([]byte("y"), 128)
)

const benchChunks = 50

// BenchmarkSealFirst is the first request to a worker: the client makes a
// session (one encapsulation) and the worker decapsulates.
func BenchmarkSealFirst(b *testing.B) {
	for _, kem := range kemCases {
		b.Run(kem.String(), func(b *testing.B) {
			clock := clocktest.New(t0)
			w := newBenchWorker(b, clock, "worker-0", kem)
			c := seal.NewClient(nil, clock.Now)
			var wire int
			for b.Loop() {
				// Each session stays cached 2*RequestLifetime after its use;
				// move on so the cache makes room rather than refusing.
				clock.Advance(2*seal.RequestLifetime + time.Millisecond)
				s, err := seal.NewSession(w.pub, w.self)
				if err != nil {
					b.Fatal(err)
				}
				wire = exchange(b, c, []*seal.Session{s}, w)
			}
			b.ReportMetric(float64(wire), "req-bytes")
		})
	}
}

// BenchmarkSealSteady is a request in a session already made, with one
// and with three candidate workers: symmetric crypto only.
func BenchmarkSealSteady(b *testing.B) {
	for _, kem := range kemCases {
		for _, n := range []int{1, 3} {
			b.Run(fmt.Sprintf("%v/candidates=%d", kem, n), func(b *testing.B) {
				clock := clocktest.New(t0)
				var ws []*worker
				var sessions []*seal.Session
				for i := range n {
					ws = append(ws, newBenchWorker(b, clock, fmt.Sprint("worker-", i), kem))
					sessions = append(sessions, ws[i].session(b))
				}
				c := seal.NewClient(nil, clock.Now)
				var wire int
				for b.Loop() {
					wire = exchange(b, c, sessions, ws[0])
				}
				b.ReportMetric(float64(wire), "req-bytes")
			})
		}
	}
}

func newBenchWorker(b *testing.B, clock *clocktest.Clock, peer string, kem seal.KEM) *worker {
	ring, err := seal.NewKeyring(nil, clock.Now, seal.WithKEM(kem))
	if err != nil {
		b.Fatal(err)
	}
	w := &worker{ring: ring, self: seal.Binding{Network: testNetwork, Peer: peer}}
	w.rotate(b, t0.AddDate(10, 0, 0))
	return w
}

// exchange runs one request through the wire format and w, and returns
// the sealed request's size on the wire.
func exchange(b *testing.B, c *seal.Client, sessions []*seal.Session, w *worker) int {
	sr, o, err := c.SealRequest(sessions, "bench-request", benchBody)
	if err != nil {
		b.Fatal(err)
	}
	wire, err := seal.AppendSealedRequest(nil, sr)
	if err != nil {
		b.Fatal(err)
	}
	got, err := seal.DecodeSealedRequest(wire)
	if err != nil {
		b.Fatal(err)
	}
	body, rs, err := w.ring.OpenRequest(got, w.self)
	if err != nil || len(body) != len(benchBody) {
		b.Fatal(err)
	}
	for range benchChunks {
		rec, err := rs.Seal(benchChunk)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := o.Open(rec); err != nil {
			b.Fatal(err)
		}
	}
	end, err := rs.End()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := o.Open(end); err != io.EOF {
		b.Fatal(err)
	}
	if err := o.Done(); err != nil {
		b.Fatal(err)
	}
	return len(wire)
}
