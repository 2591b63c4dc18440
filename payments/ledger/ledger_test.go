package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/payments/ledger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t testing.TB, path string) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(path, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func id(n int) ledger.ID { return ledger.ID{byte(n >> 8), byte(n)} }

func TestPut(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		next ledger.State
		err  error
	}{
		{"advances", ledger.State{Seqno: 6, Sent: 100, Received: 50, Signed: []byte("s6")}, nil},
		{"amounts may stay", ledger.State{Seqno: 6, Sent: 100, Received: 40}, nil},
		{"same seqno", ledger.State{Seqno: 5, Sent: 100, Received: 40}, ledger.ErrStale},
		{"older seqno", ledger.State{Seqno: 4, Sent: 200, Received: 80}, ledger.ErrStale},
		{"sent goes down", ledger.State{Seqno: 6, Sent: 99, Received: 40}, ledger.ErrAmountDown},
		{"received goes down", ledger.State{Seqno: 6, Sent: 100, Received: 39}, ledger.ErrAmountDown},
		{"signed too large", ledger.State{Seqno: 6, Sent: 100, Received: 40, Signed: make([]byte, ledger.MaxSigned+1)}, ledger.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, filepath.Join(t.TempDir(), "ledger.db"))
			defer l.Close()
			first := ledger.State{Seqno: 5, Sent: 100, Received: 40, Signed: []byte("s5")}
			if err := l.Put(ctx, id(1), first); err != nil {
				t.Fatal(err)
			}
			err := l.Put(ctx, id(1), tc.next)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Put error = %v, want %v", err, tc.err)
			}
			want := tc.next
			if err != nil {
				want = first
			}
			got, err := l.Get(id(1))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("stored %+v, want %+v", got, want)
			}
		})
	}
}

func TestReopenAndList(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "ledger.db")
	l := open(t, path)
	if _, err := l.Get(id(9)); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Get of a missing channel: %v", err)
	}
	for i := 3; i >= 1; i-- {
		if err := l.Put(ctx, id(i), ledger.State{Seqno: uint64(i), Sent: uint64(10 * i), Signed: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, id(4), ledger.State{Seqno: 1}); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("ledger file mode %v, want 0600", fi.Mode().Perm())
	}
	l = open(t, path)
	defer l.Close()
	chans, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != 3 {
		t.Fatalf("List has %d channels, want 3", len(chans))
	}
	for i, c := range chans {
		n := i + 1
		if c.ID != id(n) || c.State.Seqno != uint64(n) || c.State.Sent != uint64(10*n) || string(c.State.Signed) != string([]byte{byte(n)}) {
			t.Fatalf("channel %d is %+v", i, c)
		}
	}
}

// TestConcurrentPuts has many writers race on few channels: every Put
// either lands or is refused as stale, and the stored seqno is the highest
// one that landed.
func TestConcurrentPuts(t *testing.T) {
	ctx := context.Background()
	l := open(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer l.Close()
	const writers, perWriter, channels = 16, 20, 3
	var mu sync.Mutex
	best := map[ledger.ID]uint64{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				ch := id((w + i) % channels)
				seq := uint64(i*writers + w + 1)
				err := l.Put(ctx, ch, ledger.State{Seqno: seq, Sent: seq, Received: seq})
				switch {
				case err == nil:
					mu.Lock()
					best[ch] = max(best[ch], seq)
					mu.Unlock()
				case !errors.Is(err, ledger.ErrStale):
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if st := l.Stats(); st.Puts != writers*perWriter || st.Commits == 0 || st.Commits > st.Puts {
		t.Fatalf("stats %+v after %d Puts", st, writers*perWriter)
	}
	for ch, seq := range best {
		st, err := l.Get(ch)
		if err != nil || st.Seqno != seq {
			t.Fatalf("channel %x stored %d (%v), highest landed %d", ch[:2], st.Seqno, err, seq)
		}
	}
}

func TestPutContextEnds(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.Put(ctx, id(1), ledger.State{Seqno: 1})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: %v", err)
	}
}

func TestAllow(t *testing.T) {
	signed := ledger.State{Seqno: 3, Received: 1000}
	for _, tc := range []struct {
		name                    string
		served, cost, maxCredit uint64
		ok                      bool
	}{
		{"prepaid", 500, 400, 0, true},
		{"exactly paid", 600, 400, 0, true},
		{"no credit", 1000, 1, 0, false},
		{"within credit", 1000, 100, 100, true},
		{"over credit", 1000, 101, 100, false},
		{"already behind", 1100, 1, 100, false},
		{"overflow", ^uint64(0), 1, ^uint64(0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ledger.Allow(signed, tc.served, tc.cost, tc.maxCredit)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ledger.ErrCredit)) {
				t.Fatalf("Allow = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// FuzzDecode feeds the stored-state decoder arbitrary bytes: it must not
// panic, and what it accepts must encode back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(ledger.Encode(ledger.State{Seqno: 7, Sent: 100, Received: 3, Signed: []byte("signed")}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ledger.Decode(b)
		if err != nil {
			if !errors.Is(err, ledger.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if again := ledger.Encode(st); string(again) != string(b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
	})
}

// TestPutAll: the states of several channels land together, or, when one
// is refused, none does.
func TestPutAll(t *testing.T) {
	ctx := context.Background()
	l := open(t, filepath.Join(t.TempDir(), "ledger.db"))
	defer l.Close()
	if err := l.PutAll(ctx,
		ledger.Channel{ID: id(1), State: ledger.State{Seqno: 1, Received: 110}},
		ledger.Channel{ID: id(2), State: ledger.State{Seqno: 1, Sent: 100}},
	); err != nil {
		t.Fatal(err)
	}
	// The second is stale: the first must not move either.
	err := l.PutAll(ctx,
		ledger.Channel{ID: id(1), State: ledger.State{Seqno: 2, Received: 220}},
		ledger.Channel{ID: id(2), State: ledger.State{Seqno: 1, Sent: 200}},
	)
	if !errors.Is(err, ledger.ErrStale) {
		t.Fatalf("PutAll error = %v, want ErrStale", err)
	}
	for n, want := range map[int]uint64{1: 110, 2: 100} {
		st, err := l.Get(id(n))
		if err != nil {
			t.Fatal(err)
		}
		if st.Received+st.Sent != want || st.Seqno != 1 {
			t.Errorf("channel %d = %+v after a refused PutAll, want it unchanged", n, st)
		}
	}
	if err := l.PutAll(ctx, ledger.Channel{ID: id(3)}, ledger.Channel{ID: id(3)}); err == nil {
		t.Error("PutAll with one channel twice succeeded")
	}
}

// TestInfo: what SetInfo stores comes back after reopening; oversized is
// refused.
func TestInfo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l := open(t, path)
	if err := l.SetInfo(id(7), []byte("params")); err != nil {
		t.Fatal(err)
	}
	if err := l.SetInfo(id(8), make([]byte, ledger.MaxInfo+1)); !errors.Is(err, ledger.ErrTooLarge) {
		t.Errorf("oversized info: %v, want ErrTooLarge", err)
	}
	l.Close()
	l = open(t, path)
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	if len(info) != 1 || string(info[id(7)]) != "params" {
		t.Errorf("Info() = %q, want only channel 7's params", info)
	}
}
