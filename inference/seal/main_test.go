package seal_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

const testNetwork = "local"

// routing is the routing header the tests' requests travel with.
var routing = []byte(`{"model":"m","max_tokens":16,"min_tier":"tee"}`)

// worker is a worker's side of the tests: its keyring and binding.
type worker struct {
	ring *seal.Keyring
	self seal.Binding
	pub  []byte // its newest key
}

func newWorker(t testing.TB, clock *clocktest.Clock, peer string, opts ...seal.Option) *worker {
	t.Helper()
	ring, err := seal.NewKeyring(nil, clock.Now, opts...)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{ring: ring, self: seal.Binding{Network: testNetwork, Peer: peer}}
	w.rotate(t, clock.Now().Add(time.Hour))
	return w
}

// rotate gives w a new key that lives until expiry.
func (w *worker) rotate(t testing.TB, expiry time.Time) []byte {
	t.Helper()
	pub, err := w.ring.Next(expiry)
	if err != nil {
		t.Fatal(err)
	}
	w.pub = pub
	return pub
}

// session opens a client session with w's newest key.
func (w *worker) session(t testing.TB) *seal.Session {
	t.Helper()
	s, err := seal.NewSession(w.pub, w.self)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// open opens sr at w, after a round trip through the wire format.
func (w *worker) open(t testing.TB, sr *seal.SealedRequest) ([]byte, *seal.ResponseSealer, error) {
	t.Helper()
	return w.ring.OpenRequest(roundTrip(t, sr), w.self, routing)
}

func roundTrip(t testing.TB, sr *seal.SealedRequest) *seal.SealedRequest {
	t.Helper()
	b, err := seal.AppendSealedRequest(nil, sr)
	if err != nil {
		t.Fatal(err)
	}
	out, err := seal.DecodeSealedRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustSeal(t testing.TB, c *seal.Client, reqID string, body []byte, sessions ...*seal.Session) (*seal.SealedRequest, *seal.ResponseOpener) {
	t.Helper()
	sr, o, err := c.SealRequest(sessions, reqID, routing, body)
	if err != nil {
		t.Fatal(err)
	}
	return sr, o
}

// answer seals chunks and the end record.
func answer(t testing.TB, rs *seal.ResponseSealer, chunks ...string) [][]byte {
	t.Helper()
	var recs [][]byte
	for _, c := range chunks {
		r, err := rs.Seal([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	end, err := rs.End()
	if err != nil {
		t.Fatal(err)
	}
	return append(recs, end)
}

// readAll opens records in order and returns the chunks, io.EOF's
// position aside, and the first error (Done's if every record opened).
func readAll(o *seal.ResponseOpener, recs [][]byte) ([]string, error) {
	var got []string
	for _, r := range recs {
		c, err := o.Open(r)
		if err == io.EOF {
			continue
		}
		if err != nil {
			return got, err
		}
		got = append(got, string(c))
	}
	return got, o.Done()
}

// isAny reports whether err is one of targets.
func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}
