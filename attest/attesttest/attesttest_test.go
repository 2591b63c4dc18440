package attesttest_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/attest/attesttest"
)

func TestSealKeys(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	k := attesttest.NewSealKeys()
	if k.Last() != nil || len(k.Made()) != 0 {
		t.Fatal("a new fake has keys")
	}
	var got [][]byte
	for i := range 3 {
		pub, err := k.Next(t0.Add(time.Duration(i) * time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range got {
			if bytes.Equal(p, pub) {
				t.Fatalf("key %d repeats an earlier one", i)
			}
		}
		got = append(got, pub)
		if !bytes.Equal(k.Last(), pub) {
			t.Fatalf("Last = %x, want %x", k.Last(), pub)
		}
	}
	made := k.Made()
	for i, m := range made {
		if !bytes.Equal(m.Pub, got[i]) || !m.Expiry.Equal(t0.Add(time.Duration(i)*time.Hour)) {
			t.Fatalf("Made()[%d] = %+v", i, m)
		}
	}
	if again, _ := attesttest.NewSealKeys().Next(t0); !bytes.Equal(again, got[0]) {
		t.Fatal("a second fake makes other keys in the same order")
	}

	errNo := errors.New("no keys")
	k.Fail(errNo)
	if pub, err := k.Next(t0); !errors.Is(err, errNo) || pub != nil {
		t.Fatalf("Next after Fail = %x, %v", pub, err)
	}
	k.Fail(nil)
	if _, err := k.Next(t0); err != nil || len(k.Made()) != 4 {
		t.Fatalf("Next after Fail(nil): %v, %d keys", err, len(k.Made()))
	}
}
