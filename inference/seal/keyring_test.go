package seal_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
)

// TestRotation: a key stays usable until its own expiry after the next one
// is made, then is forgotten.
func TestRotation(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a") // key 1 lives until t0+1h
	c := seal.NewClient(nil, clock.Now)
	s1 := w.session(t)
	clock.Advance(50 * time.Minute)
	pub2 := w.rotate(t, t0.Add(2*time.Hour))
	s2 := w.session(t)
	if cur, exp, ok := w.ring.Current(); !ok || !bytes.Equal(cur, pub2) || !exp.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("Current() = %x, %v, %v; want the second key", cur[:8], exp, ok)
	}
	open := func(s *seal.Session) error {
		sr, _ := mustSeal(t, c, "r", []byte("p"), s)
		_, _, err := w.open(t, sr)
		return err
	}
	steps := []struct {
		at       time.Duration // since t0
		old, new error
	}{
		{50 * time.Minute, nil, nil},                              // overlap: both open
		{time.Hour - time.Millisecond, nil, nil},                  // the first key's last moment
		{time.Hour, seal.ErrNoRecipient, nil},                     // the first key expired
		{2 * time.Hour, seal.ErrNoRecipient, seal.ErrNoRecipient}, // both expired
	}
	for _, st := range steps {
		clock.Set(t0.Add(st.at))
		if err := open(s1); !errors.Is(err, st.old) || st.old == nil && err != nil {
			t.Errorf("at +%v, first key: %v, want %v", st.at, err, st.old)
		}
		if err := open(s2); !errors.Is(err, st.new) || st.new == nil && err != nil {
			t.Errorf("at +%v, second key: %v, want %v", st.at, err, st.new)
		}
	}
	if _, _, ok := w.ring.Current(); ok {
		t.Fatal("Current() found a key after every key expired")
	}
}

func TestNextRefuses(t *testing.T) {
	clock := clocktest.New(t0)
	ring, err := seal.NewKeyring(nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, exp := range []time.Time{t0, t0.Add(-time.Second), {}} {
		if _, err := ring.Next(exp); !errors.Is(err, seal.ErrExpiry) {
			t.Errorf("Next(%v) = %v, want ErrExpiry", exp, err)
		}
	}
	bad, err := seal.NewKeyring(failingReader{}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Next(t0.Add(time.Hour)); err == nil {
		t.Fatal("Next with failing randomness succeeded")
	}
	if _, err := seal.NewKeyring(nil, clock.Now, seal.WithKEM(0x10)); !errors.Is(err, seal.ErrUnsupportedKEM) {
		t.Fatalf("NewKeyring(WithKEM(0x10)) = %v, want ErrUnsupportedKEM", err)
	}
	if _, err := seal.NewKeyring(nil, clock.Now, seal.WithSessionCache(0)); err == nil {
		t.Fatal("NewKeyring(WithSessionCache(0)) succeeded")
	}
}

// TestKeysFromRand: keys come from the keyring's reader.
func TestKeysFromRand(t *testing.T) {
	for _, kem := range kemCases {
		clock := clocktest.New(t0)
		var pubs [2][]byte
		for i := range pubs {
			ring, err := seal.NewKeyring(bytes.NewReader(bytes.Repeat([]byte{42}, 64)), clock.Now, seal.WithKEM(kem))
			if err != nil {
				t.Fatal(err)
			}
			if pubs[i], err = ring.Next(t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(pubs[0], pubs[1]) {
			t.Fatalf("%v: the same randomness made two keys", kem)
		}
		p, err := seal.ParsePublicKey(pubs[0])
		if err != nil || p.KEM() != kem {
			t.Fatalf("%v: the key parses as %v, %v", kem, p, err)
		}
	}
}

// TestMaxLiveKeys: beyond MaxLiveKeys, the oldest key is forgotten.
func TestMaxLiveKeys(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a", seal.WithKEM(seal.X25519))
	c := seal.NewClient(nil, clock.Now)
	sessions := []*seal.Session{w.session(t)}
	for i := 1; i <= seal.MaxLiveKeys; i++ {
		w.rotate(t, t0.Add(time.Hour))
		sessions = append(sessions, w.session(t))
	}
	for i, s := range sessions {
		sr, _ := mustSeal(t, c, "r", nil, s)
		_, _, err := w.open(t, sr)
		if i == 0 && !errors.Is(err, seal.ErrNoRecipient) || i > 0 && err != nil {
			t.Errorf("key %d: %v", i, err)
		}
	}
}

// TestSessionCache: a full cache refuses new sessions while its sessions
// may still see replays, and evicts the least recently used after that;
// a request replayed after its session was evicted is stale.
func TestSessionCache(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a", seal.WithKEM(seal.X25519), seal.WithSessionCache(2))
	c := seal.NewClient(nil, clock.Now)
	s1, s2, s3 := w.session(t), w.session(t), w.session(t)
	first, _ := mustSeal(t, c, "r", nil, s1)
	for _, s := range []*seal.Session{s1, s2} {
		sr, _ := mustSeal(t, c, "r", nil, s)
		if _, _, err := w.open(t, sr); err != nil {
			t.Fatal(err)
		}
	}
	// A forged session (wrong binding) takes no place in the cache.
	forged, _ := mustSeal(t, c, "r", nil, sessionAs(t, w, "b"))
	if _, _, err := w.open(t, forged); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("forged session: %v, want ErrAuth", err)
	}
	sr3, _ := mustSeal(t, c, "r", nil, s3)
	if _, _, err := w.open(t, sr3); !errors.Is(err, seal.ErrBusy) {
		t.Fatalf("third session in a cache of two: %v, want ErrBusy", err)
	}
	clock.Advance(2*seal.RequestLifetime + time.Millisecond)
	sr3, _ = mustSeal(t, c, "r", nil, s3)
	if _, _, err := w.open(t, sr3); err != nil {
		t.Fatalf("third session after the others aged: %v", err)
	}
	if _, _, err := w.open(t, first); !errors.Is(err, seal.ErrStale) {
		t.Fatalf("replay after eviction: %v, want ErrStale", err)
	}
	sr1, _ := mustSeal(t, c, "r", nil, s1) // s1 comes back: decapsulated anew
	if _, _, err := w.open(t, sr1); err != nil {
		t.Fatalf("evicted session's next request: %v", err)
	}
}

func sessionAs(t *testing.T, w *worker, peer string) *seal.Session {
	s, err := seal.NewSession(w.pub, seal.Binding{Network: testNetwork, Peer: peer})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReplayWindow: a session's requests may arrive in any order within
// ReplayWindow; each opens once.
func TestReplayWindow(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a", seal.WithKEM(seal.X25519))
	c := seal.NewClient(nil, clock.Now)
	s := w.session(t)
	srs := make([]*seal.SealedRequest, seal.ReplayWindow+2)
	for i := range srs {
		srs[i], _ = mustSeal(t, c, fmt.Sprint("r", i), nil, s)
	}
	// srs[i] has counter i+1.
	order := []struct {
		i    int
		want error
	}{
		{2, nil}, {0, nil}, {0, seal.ErrReplay}, {2, seal.ErrReplay},
		{seal.ReplayWindow + 1, nil},            // counter 1026 is the newest
		{1, seal.ErrReplay},                     // counter 2, never seen, is 1024 behind: too old
		{3, nil},                                // counter 4, never seen, 1022 behind
		{2, seal.ErrReplay},                     // counter 3, seen, the window's oldest
		{seal.ReplayWindow + 1, seal.ErrReplay}, // the newest again
		{seal.ReplayWindow, nil},                // counter 1025, just below the newest
	}
	for _, o := range order {
		_, _, err := w.open(t, srs[o.i])
		if !errors.Is(err, o.want) || o.want == nil && err != nil {
			t.Errorf("request %d: %v, want %v", o.i, err, o.want)
		}
	}
}

// TestConcurrent runs sealing, opening, answering and rotation at once;
// run it with -race.
func TestConcurrent(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a", seal.WithKEM(seal.X25519))
	c := seal.NewClient(nil, clock.Now)
	shared := w.session(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if err := roundTripOnce(w, c, shared, fmt.Sprint(g, "-", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 2 {
			if _, err := w.ring.Next(t0.Add(time.Hour)); err != nil {
				errs <- err
			}
			w.ring.Current()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func roundTripOnce(w *worker, c *seal.Client, s *seal.Session, id string) error {
	sr, o, err := c.SealRequest([]*seal.Session{s}, id, routing, []byte(id))
	if err != nil {
		return err
	}
	body, rs, err := w.ring.OpenRequest(sr, w.self, routing)
	if err != nil {
		return err
	}
	rec, err := rs.Seal(body)
	if err != nil {
		return err
	}
	end, err := rs.End()
	if err != nil {
		return err
	}
	if got, err := o.Open(rec); err != nil || string(got) != id {
		return fmt.Errorf("answer %q, %v; want %q", got, err, id)
	}
	if _, err := o.Open(end); err == nil {
		return errors.New("end record opened as a chunk")
	}
	return o.Done()
}

// TestConcurrentReplays: of copies of one request opened at once, exactly
// one opens.
func TestConcurrentReplays(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a", seal.WithKEM(seal.X25519))
	c := seal.NewClient(nil, clock.Now)
	for _, fresh := range []bool{true, false} { // a new session, then a cached one
		s := w.session(t)
		if !fresh {
			sr, _ := mustSeal(t, c, "warm", nil, s)
			if _, _, err := w.open(t, sr); err != nil {
				t.Fatal(err)
			}
		}
		sr, _ := mustSeal(t, c, "r", nil, s)
		var wg sync.WaitGroup
		results := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				_, _, err := w.ring.OpenRequest(sr, w.self, routing)
				results <- err
			})
		}
		wg.Wait()
		close(results)
		opened := 0
		for err := range results {
			switch {
			case err == nil:
				opened++
			case !errors.Is(err, seal.ErrReplay):
				t.Errorf("copy refused with %v, want ErrReplay", err)
			}
		}
		if opened != 1 {
			t.Errorf("fresh session %v: %d copies opened, want 1", fresh, opened)
		}
	}
}

// TestDiscard: a key discarded (its evidence was never issued) opens
// nothing and leaves the key before it current, and the keyring's room.
func TestDiscard(t *testing.T) {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a")
	kept := w.pub
	dropped := w.rotate(t, t0.Add(2*time.Hour))
	s := w.session(t) // with the key about to be discarded
	w.ring.Discard(dropped)
	if cur, _, ok := w.ring.Current(); !ok || !bytes.Equal(cur, kept) {
		t.Fatalf("current key after Discard is not the one before it")
	}
	sr, _ := mustSeal(t, seal.NewClient(nil, clock.Now), "r", []byte("x"), s)
	if _, _, err := w.open(t, sr); !errors.Is(err, seal.ErrNoRecipient) {
		t.Fatalf("a request to the discarded key: err = %v, want ErrNoRecipient", err)
	}
	w.ring.Discard([]byte("not a key of ours")) // ignored
	for range seal.MaxLiveKeys + 2 {            // failed renewals, each given back
		w.ring.Discard(w.rotate(t, t0.Add(3*time.Hour)))
	}
	w.pub = kept
	sr, _ = mustSeal(t, seal.NewClient(nil, clock.Now), "r2", []byte("x"), w.session(t))
	if _, _, err := w.open(t, sr); err != nil {
		t.Fatalf("the live key after failed renewals: %v", err)
	}
}
