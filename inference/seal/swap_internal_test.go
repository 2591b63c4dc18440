package seal

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// fixedRand reads the same byte forever: the test knows the request key.
type fixedRand byte

func (r fixedRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestCandidateCannotSwapBody: every candidate of a request can recover
// its request key. One that seals another body under that key, with the
// request's own AAD, and hands it to the proxy in place of the client's,
// must not get the other candidate to open it: the wraps bind the sealed
// body's hash. The routing header is bound the same way.
func TestCandidateCannotSwapBody(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ringA, err := NewKeyring(nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	pubA, err := ringA.Next(now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a := Binding{Network: "local", Peer: "a"}
	sa, err := NewSession(pubA, a)
	if err != nil {
		t.Fatal(err)
	}
	header := []byte(`{"model":"m"}`)
	c := NewClient(fixedRand(7), clock)
	sr, _, err := c.SealRequest([]*Session{sa}, "r", header, []byte("the client's prompt"))
	if err != nil {
		t.Fatal(err)
	}
	// The colluding candidate knows the request key (here: from the
	// client's randomness) and reseals the body with the request's AAD.
	reqKey := bytes.Repeat([]byte{7}, keyLen)
	forged := *sr
	forged.Body, err = sealOnce(nil, bodyKey(reqKey), []byte("the attacker's prompt"), requestAAD(a.Network, sr.RequestID, sr.SealedAt.UnixMilli()))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ringA.OpenRequest(&forged, a, header); !errors.Is(err, ErrAuth) {
		t.Fatalf("a body resealed under the request key: err = %v, want ErrAuth", err)
	}
	if _, _, err := ringA.OpenRequest(sr, a, []byte(`{"model":"dearer"}`)); !errors.Is(err, ErrAuth) {
		t.Fatalf("a changed routing header: err = %v, want ErrAuth", err)
	}
	body, _, err := ringA.OpenRequest(sr, a, header)
	if err != nil || string(body) != "the client's prompt" {
		t.Fatalf("the untouched request: %q, %v", body, err)
	}
}

// TestOneSessionPerWorker: a request is sealed to each worker once; two
// sessions (two keys) of one worker would let a proxy run it there twice.
func TestOneSessionPerWorker(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	ring, err := NewKeyring(nil, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	a := Binding{Network: "local", Peer: "a"}
	var sessions []*Session
	for range 2 {
		pub, err := ring.Next(now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSession(pub, a)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	if _, _, err := NewClient(nil, nil).SealRequest(sessions, "r", nil, []byte("x")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two keys of one worker: err = %v, want ErrMalformed", err)
	}
}
