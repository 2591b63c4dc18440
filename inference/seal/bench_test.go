package seal_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
	"github.com/cocoon-mesh/cocoon/internal/procstat"
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
			cpu := procstat.SelfCPU()
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
			report(b, cpu, wire)
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
				cpu := procstat.SelfCPU()
				for b.Loop() {
					wire = exchange(b, c, sessions, ws[0])
				}
				report(b, cpu, wire)
			})
		}
	}
}

// report adds the process's CPU time per exchange since cpu (which, unlike
// ns/op, other processes on the machine do not inflate) and the sealed
// request's size.
func report(b *testing.B, cpu time.Duration, wire int) {
	if used := procstat.SelfCPU() - cpu; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	if wire > 0 {
		b.ReportMetric(float64(wire), "req-bytes")
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
	sr, o, err := c.SealRequest(sessions, "bench-request", routing, benchBody)
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
	body, rs, err := w.ring.OpenRequest(got, w.self, routing)
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

// BenchmarkChunk is one 128 B answer chunk, sealed by the worker and
// opened by the client.
func BenchmarkChunk(b *testing.B) {
	clock := clocktest.New(t0)
	w := newBenchWorker(b, clock, "worker-0", seal.X25519)
	sr, o := mustSeal(b, seal.NewClient(nil, clock.Now), "r", nil, w.session(b))
	_, rs, err := w.ring.OpenRequest(sr, w.self, routing)
	if err != nil {
		b.Fatal(err)
	}
	cpu := procstat.SelfCPU()
	for b.Loop() {
		rec, err := rs.Seal(benchChunk)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := o.Open(rec); err != nil {
			b.Fatal(err)
		}
	}
	report(b, cpu, 0)
}

// BenchmarkNewSession is the client's part of a first request: parsing the
// worker's key and encapsulating.
func BenchmarkNewSession(b *testing.B) {
	for _, kem := range kemCases {
		b.Run(kem.String(), func(b *testing.B) {
			w := newBenchWorker(b, clocktest.New(t0), "worker-0", kem)
			cpu := procstat.SelfCPU()
			for b.Loop() {
				if _, err := seal.NewSession(w.pub, w.self); err != nil {
					b.Fatal(err)
				}
			}
			report(b, cpu, 0)
		})
	}
}

// BenchmarkOpenFirst is the worker's part of a first request: the
// decapsulation a cache miss costs, and opening the 2 KiB body. It is what
// every request would cost a worker that kept no sessions.
func BenchmarkOpenFirst(b *testing.B) {
	for _, kem := range kemCases {
		b.Run(kem.String(), func(b *testing.B) {
			clock := clocktest.New(t0)
			w := newBenchWorker(b, clock, "worker-0", kem)
			c := seal.NewClient(nil, clock.Now)
			// Requests are sealed in batches with the timer stopped, as
			// stopping it costs more than what is measured.
			for done := 0; done < b.N; {
				b.StopTimer()
				batch := make([]*seal.SealedRequest, min(b.N-done, 256))
				clock.Advance(2*seal.RequestLifetime + time.Millisecond)
				for i := range batch {
					batch[i], _ = mustSeal(b, c, "bench-request", benchBody, w.session(b))
				}
				b.StartTimer()
				for _, sr := range batch {
					if _, _, err := w.ring.OpenRequest(sr, w.self, routing); err != nil {
						b.Fatal(err)
					}
				}
				done += len(batch)
			}
		})
	}
}
