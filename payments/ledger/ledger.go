// Package ledger is the durable record of payment-channel states: for each
// channel, the newest signed cumulative state, written to bbolt and synced
// to disk before Put returns.
//
// Concurrent Puts share transactions: a single committer takes every Put
// waiting when it starts a transaction, writes them all and syncs once
// (group commit), so durable throughput grows with the number of writers
// while a lone writer pays one sync and no added delay.
package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ID names a channel; the ledger treats it as opaque (payments/ton uses
// the channel contract's address hash).
type ID [32]byte

// State is the newest signed cumulative state of one channel, from the
// ledger owner's side. Amounts are cumulative nanoTON and never go down.
type State struct {
	Seqno    uint64 // strictly increasing per channel
	Sent     uint64 // paid by us to the counterparty, in total
	Received uint64 // paid by the counterparty to us, in total
	// Signed is the state as signed on the channel, opaque to the ledger;
	// payments/ton makes and checks it. At most MaxSigned bytes.
	Signed []byte
}

// Channel is one stored channel.
type Channel struct {
	ID    ID
	State State
}

// MaxSigned caps State.Signed.
const MaxSigned = 4096

// Errors. ErrStale and ErrAmountDown describe the state offered and a
// retry of the same state cannot help; ErrCredit clears when the
// counterparty signs a newer state.
var (
	ErrStale      = errors.New("seqno not above the stored one")
	ErrAmountDown = errors.New("cumulative amount goes down")
	ErrTooLarge   = errors.New("signed state too large")
	ErrNotFound   = errors.New("no such channel")
	ErrClosed     = errors.New("ledger closed")
	ErrCorrupt    = errors.New("stored state unreadable")
	ErrCredit     = errors.New("credit beyond the signed state exhausted")
)

// Options tune Open.
type Options struct {
	// LockTimeout is how long Open waits for another process holding the
	// file to let go; zero waits forever.
	LockTimeout time.Duration
}

var (
	bucket     = []byte("channels")
	infoBucket = []byte("info") // per channel, what its owner needs to use it again
)

// MaxInfo caps what SetInfo stores per channel.
const MaxInfo = 4096

// Ledger is an open ledger file.
type Ledger struct {
	db *bolt.DB

	mu      sync.Mutex // guards pending and closed
	pending []*put
	closed  bool

	puts, commits atomic.Uint64 // for Stats

	wake chan struct{} // cap 1: pending has work
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the committer has returned
}

type put struct {
	chans []Channel  // stored together or not at all
	err   chan error // cap 1
}

// Open opens or creates the ledger file at path, mode 0600 in a directory
// made 0700 if missing, and starts its committer; Close stops it.
func Open(path string, opts Options) (*Ledger, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating ledger directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("opening ledger: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger file mode: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(infoBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising ledger: %w", err)
	}
	l := &Ledger{
		db:   db,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go l.commit()
	return l, nil
}

// Close commits the Puts already queued, stops the committer, waits for it
// and closes the file.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	return l.db.Close()
}

// Stats counts the Puts the committer has written and the transactions,
// each one sync, it wrote them in.
type Stats struct {
	Puts    uint64
	Commits uint64
}

// Stats reports the counts since Open.
func (l *Ledger) Stats() Stats {
	return Stats{Puts: l.puts.Load(), Commits: l.commits.Load()}
}

// Put stores st as channel id's newest state and returns once it is synced
// to disk. It refuses, storing nothing, a seqno not above the stored one
// (ErrStale) and an amount below the stored one (ErrAmountDown).
//
// If ctx ends first Put returns ctx.Err(), and the state may or may not
// have been stored: Get tells.
func (l *Ledger) Put(ctx context.Context, id ID, st State) error {
	return l.PutAll(ctx, Channel{ID: id, State: st})
}

// PutAll stores the states of several channels in one transaction: all of
// them or, when any is refused as Put would refuse it, none. A proxy uses
// it to record a client's payment together with what it owes the workers
// that answered, so that a crash never keeps one without the other. Each
// channel may appear once.
func (l *Ledger) PutAll(ctx context.Context, chans ...Channel) error {
	p := &put{chans: make([]Channel, len(chans)), err: make(chan error, 1)}
	for i, c := range chans {
		if len(c.State.Signed) > MaxSigned {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(c.State.Signed), MaxSigned)
		}
		for _, d := range chans[:i] {
			if d.ID == c.ID {
				return fmt.Errorf("channel %x twice in one PutAll", c.ID[:8])
			}
		}
		p.chans[i] = Channel{ID: c.ID, State: c.State}
		p.chans[i].State.Signed = append([]byte(nil), c.State.Signed...)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.pending = append(l.pending, p)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // already woken
	}
	select {
	case err := <-p.err:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetInfo stores what the ledger's owner needs to use channel id again
// after a restart (its contract's parameters), synced before it returns.
// It is opaque to the ledger and at most MaxInfo bytes.
func (l *Ledger) SetInfo(id ID, info []byte) error {
	if len(info) > MaxInfo {
		return fmt.Errorf("%w: info of %d bytes, limit %d", ErrTooLarge, len(info), MaxInfo)
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(infoBucket).Put(id[:], info)
	})
}

// Info returns every channel's info, by ID.
func (l *Ledger) Info() (map[ID][]byte, error) {
	out := make(map[ID][]byte)
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(infoBucket).ForEach(func(k, v []byte) error {
			if len(k) != len(ID{}) {
				return fmt.Errorf("info %x: %w", k, ErrCorrupt)
			}
			out[ID(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

// commit is the committer: it writes every pending Put in one transaction
// and one sync, answers them, and repeats until Close.
func (l *Ledger) commit() {
	defer close(l.done)
	for {
		select {
		case <-l.wake:
		case <-l.stop:
			l.mu.Lock()
			batch := l.pending
			l.pending = nil
			l.mu.Unlock()
			l.write(batch)
			return
		}
		l.mu.Lock()
		batch := l.pending
		l.pending = nil
		l.mu.Unlock()
		l.write(batch)
	}
}

func (l *Ledger) write(batch []*put) {
	if len(batch) == 0 {
		return
	}
	l.commits.Add(1)
	l.puts.Add(uint64(len(batch)))
	errs := make([]error, len(batch))
	err := l.db.Update(func(tx *bolt.Tx) error {
		for i, p := range batch {
			errs[i] = applyAll(tx.Bucket(bucket), p.chans)
			if errs[i] != nil && !refusal(errs[i]) {
				return errs[i]
			}
		}
		return nil
	})
	for i, p := range batch {
		switch {
		case errs[i] != nil && refusal(errs[i]):
			p.err <- errs[i]
		case err != nil:
			p.err <- fmt.Errorf("writing ledger: %w", err)
		default:
			p.err <- nil
		}
	}
}

// refusal reports whether err concerns one Put alone, so the rest of its
// batch is still written.
func refusal(err error) bool {
	return errors.Is(err, ErrStale) || errors.Is(err, ErrAmountDown) || errors.Is(err, ErrCorrupt)
}

// applyAll checks each state against the stored one, seen inside the
// transaction so Puts to one channel in one batch compose, and stores them
// all once all pass.
func applyAll(b *bolt.Bucket, chans []Channel) error {
	for _, c := range chans {
		if v := b.Get(c.ID[:]); v != nil {
			old, err := decode(v)
			if err != nil {
				return fmt.Errorf("channel %x: %w", c.ID[:8], err)
			}
			if err := Advance(old, c.State); err != nil {
				return fmt.Errorf("channel %x: %w", c.ID[:8], err)
			}
		}
	}
	for _, c := range chans {
		if err := b.Put(c.ID[:], encode(c.State)); err != nil {
			return err
		}
	}
	return nil
}

// Advance reports whether next may replace old: its seqno must be higher
// and neither cumulative amount lower.
func Advance(old, next State) error {
	switch {
	case next.Seqno <= old.Seqno:
		return fmt.Errorf("%w: seqno %d, stored %d", ErrStale, next.Seqno, old.Seqno)
	case next.Sent < old.Sent:
		return fmt.Errorf("%w: sent %d, stored %d", ErrAmountDown, next.Sent, old.Sent)
	case next.Received < old.Received:
		return fmt.Errorf("%w: received %d, stored %d", ErrAmountDown, next.Received, old.Received)
	}
	return nil
}

// Get returns channel id's stored state, or ErrNotFound.
func (l *Ledger) Get(id ID) (State, error) {
	var st State
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(id[:])
		if v == nil {
			return ErrNotFound
		}
		var err error
		st, err = decode(v)
		return err
	})
	return st, err
}

// List returns every stored channel, ordered by ID.
func (l *Ledger) List() ([]Channel, error) {
	var out []Channel
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			st, err := decode(v)
			if err != nil || len(k) != len(ID{}) {
				return fmt.Errorf("channel %x: %w", k, ErrCorrupt)
			}
			out = append(out, Channel{ID: ID(k), State: st})
			return nil
		})
	})
	return out, err
}

// Stored form: version u8 (1), seqno, sent, received u64 big-endian, then
// the signed state.
const stateVersion = 1

func encode(st State) []byte {
	b := make([]byte, 0, 25+len(st.Signed))
	b = append(b, stateVersion)
	b = binary.BigEndian.AppendUint64(b, st.Seqno)
	b = binary.BigEndian.AppendUint64(b, st.Sent)
	b = binary.BigEndian.AppendUint64(b, st.Received)
	return append(b, st.Signed...)
}

// decode copies out of v, which bbolt owns only for the transaction.
func decode(v []byte) (State, error) {
	if len(v) < 25 || v[0] != stateVersion || len(v)-25 > MaxSigned {
		return State{}, ErrCorrupt
	}
	return State{
		Seqno:    binary.BigEndian.Uint64(v[1:]),
		Sent:     binary.BigEndian.Uint64(v[9:]),
		Received: binary.BigEndian.Uint64(v[17:]),
		Signed:   append([]byte(nil), v[25:]...),
	}, nil
}

// Allow says whether cost more nanoTON may be served on a channel whose
// newest signed state is signed, when served nanoTON have been served on it
// in total: what has been served but not signed for, after this answer,
// must stay within maxCredit. It returns ErrCredit when it would not.
func Allow(signed State, served, cost, maxCredit uint64) error {
	after := served + cost
	if after < served {
		return fmt.Errorf("%w: served amount overflows", ErrCredit)
	}
	if after <= signed.Received {
		return nil
	}
	if unpaid := after - signed.Received; unpaid > maxCredit {
		return fmt.Errorf("%w: %d nanoTON unsigned, limit %d", ErrCredit, unpaid, maxCredit)
	}
	return nil
}
