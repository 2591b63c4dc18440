package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
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
			// Each writer owns a channel; together they make b.N Puts.
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := range bc.writers {
				wg.Go(func() {
					for s := uint64(1); left.Add(-1) >= 0; s++ {
						if err := bc.put(ctx, l, id(w), ledger.State{Seqno: s, Sent: s, Signed: signed}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
			if st := l.Stats(); st.Commits > 0 {
				b.ReportMetric(float64(st.Puts)/float64(st.Commits), "puts/commit")
			}
		})
	}
}
