package ledger_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoon-mesh/cocoon/payments/ledger"
)

var crashRuns = flag.Int("crash.runs", 5, "how many times TestCrash kills a writer (the full proof is 20)")

// crashChildEnv, when set to a ledger path, makes TestCrash the child: it
// writes states to that ledger until it is killed.
const crashChildEnv = "COCOON_LEDGER_CRASH_CHILD"

const crashWriters = 8

// crashState is the only state writer w ever stores with seqno s, so the
// parent can tell a torn or mixed-up state from a good one.
func crashState(w int, s uint64) ledger.State {
	return ledger.State{Seqno: s, Sent: s * 1_000, Received: s * 7, Signed: fmt.Appendf(nil, "writer %d seqno %d", w, s)}
}

// TestCrash kills a process writing to the ledger with SIGKILL, again and
// again, at a random point, and checks after each kill that the ledger
// opens cleanly, holds every state the process acknowledged, and holds
// nothing beyond the one Put each writer may have had in flight.
func TestCrash(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	path := filepath.Join(t.TempDir(), "ledger.db")
	acked := make([]uint64, crashWriters) // highest acknowledged seqno per writer, over all runs
	for run := range *crashRuns {
		want := 1 + rng.IntN(400)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n, killed := 0, false
		for sc.Scan() {
			w, s, ok := parseAck(sc.Text())
			if !ok {
				continue
			}
			if s != acked[w]+1 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("run %d: writer %d acknowledged seqno %d after %d", run, w, s, acked[w])
			}
			acked[w] = s
			if n++; n == want && !killed {
				// Acks already in the pipe are read below, so every
				// acknowledged state counts.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("run %d: child ended after %d acks before the kill: %v", run, n, err)
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d: child ended with %v, not SIGKILL", run, err)
		}
		checkBolt(t, path)
		l, err := ledger.Open(path, ledger.Options{LockTimeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("run %d: reopening after kill: %v", run, err)
		}
		for w := range crashWriters {
			st, err := l.Get(id(w))
			if errors.Is(err, ledger.ErrNotFound) && acked[w] == 0 {
				continue
			}
			if err != nil {
				t.Fatalf("run %d: writer %d: %v", run, w, err)
			}
			if st.Seqno < acked[w] || st.Seqno > acked[w]+1 {
				t.Fatalf("run %d: writer %d stored seqno %d, acknowledged %d", run, w, st.Seqno, acked[w])
			}
			if fmt.Sprint(st) != fmt.Sprint(crashState(w, st.Seqno)) {
				t.Fatalf("run %d: writer %d stored %+v, want %+v", run, w, st, crashState(w, st.Seqno))
			}
			// An unacknowledged state that landed is the child's newest:
			// the next child continues from it.
			acked[w] = st.Seqno
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: killed after %d acks, %d read", run, want, n)
	}
}

// checkBolt opens the file with bbolt directly and runs its consistency
// check over every page.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("bbolt open: %v", err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
}

func parseAck(line string) (w int, s uint64, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ack" {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(f[1])
	s, err2 := strconv.ParseUint(f[2], 10, 64)
	return w, s, err1 == nil && err2 == nil && w >= 0 && w < crashWriters
}

// crashChild writes states from crashWriters goroutines, each continuing
// from its stored seqno, printing each acknowledged one, until killed. It
// gives up after a minute in case the parent is gone.
func crashChild(t *testing.T, path string) {
	l, err := ledger.Open(path, ledger.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out sync.Mutex // guards stdout, so lines are whole
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Go(func() {
			var s uint64
			if st, err := l.Get(id(w)); err == nil {
				s = st.Seqno
			}
			for ctx.Err() == nil {
				s++
				if err := l.Put(ctx, id(w), crashState(w, s)); err != nil {
					return
				}
				out.Lock()
				fmt.Fprintf(os.Stdout, "ack %d %d\n", w, s)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}
