package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cocoon-mesh/cocoon/payments/ledger"
)

// benchDir is where the benchmarks write: COCOON_BENCH_DIR, to measure a
// particular disk, or a temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("COCOON_BENCH_DIR"); d != "" {
		d, err := os.MkdirTemp(d, "ledger-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	return b.TempDir()
}

// BenchmarkPut measures durable Puts, each synced before it returns: one
// writer pays a sync per Put; 64 writers share syncs through group commit.
// "bolt-batch" is bbolt's own DB.Batch for comparison.
func BenchmarkPut(b *testing.B) {
	type putFunc func(context.Context, *ledger.Ledger, ledger.ID, ledger.State) error
	committer := func(ctx context.Context, l *ledger.Ledger, id ledger.ID, st ledger.State) error {
		return l.Put(ctx, id, st)
	}
	for _, bc := range []struct {
		name    string
		writers int
		put     putFunc
	}{
		{"committer/writers=1", 1, committer},
		{"committer/writers=64", 64, committer},
		{"bolt-batch/writers=1", 1, ledger.PutBoltBatch},
		{"bolt-batch/writers=64", 64, ledger.PutBoltBatch},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := ledger.Open(filepath.Join(benchDir(b), "ledger.db"), ledger.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			signed := make([]byte, 200) // about a signed channel state
			var next atomic.Int64
			// RunParallel starts parallelism x GOMAXPROCS goroutines.
			procs := runtime.GOMAXPROCS(0)
			if bc.writers%procs != 0 {
				b.Skipf("%d writers don't divide among %d procs", bc.writers, procs)
			}
			b.SetParallelism(bc.writers / procs)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ch := id(int(next.Add(1)))
				var s uint64
				for pb.Next() {
					s++
					if err := bc.put(ctx, l, ch, ledger.State{Seqno: s, Sent: s, Signed: signed}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}
