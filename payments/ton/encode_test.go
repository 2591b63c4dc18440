package ton

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/big"
	"testing"
	"time"
)

func testChannel(t testing.TB) (*Channel, ed25519.PrivateKey, ed25519.PrivateKey) {
	pubA, keyA, _ := ed25519.GenerateKey(nil)
	pubB, keyB, _ := ed25519.GenerateKey(nil)
	ch, err := NewChannel(ChannelConfig{ID: [16]byte{1}, KeyA: pubA, KeyB: pubB, DestA: testAddr(1), DestB: testAddr(2), Quarantine: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ch, keyA, keyB
}

func TestEncode(t *testing.T) {
	ch, keyA, keyB := testChannel(t)
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 120), big.NewInt(1))
	for _, sent := range []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(65e7), max} {
		s := mustSign(t, ch, keyA, State{Seqno: 7, Sent: sent})
		b, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeSignedState(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seqno != 7 || got.Sent.Cmp(sent) != 0 || !bytes.Equal(got.Signature, s.Signature) {
			t.Fatalf("round trip of %s: %+v", sent, got)
		}
		payee := NewPayee(ch, keyB, SignedState{}, max)
		if _, err := payee.Accept(got); err != nil {
			t.Fatalf("decoded state refused: %v", err)
		}
	}
	huge := new(big.Int).Lsh(big.NewInt(1), 120)
	if _, err := ch.SignState(keyA, State{Sent: huge}); !errors.Is(err, ErrAmountRange) {
		t.Errorf("signing an amount over Coins: %v, want ErrAmountRange", err)
	}
	if _, err := (SignedState{State: State{Sent: huge}, Signature: make([]byte, 64)}).Encode(); err == nil {
		t.Error("an amount over Coins encoded")
	}
	good, _ := mustSign(t, ch, keyA, State{Seqno: 1, Sent: big.NewInt(300)}).Encode()
	for name, b := range map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{2}, good[1:]...),
		"truncated":   good[:len(good)-1],
		"trailing":    append(append([]byte(nil), good...), 0),
		"long amount": append(append(append([]byte(nil), good[:9]...), 16), make([]byte, 16+64)...),
		"leading 0":   append(append(append([]byte(nil), good[:9]...), 3, 0), append(good[10:], 0)[:66]...),
	} {
		if _, err := DecodeSignedState(b); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("%s: err = %v, want ErrBadEncoding", name, err)
		}
	}
}

func FuzzDecodeSignedState(f *testing.F) {
	ch, keyA, _ := testChannel(f)
	good, _ := mustSign(f, ch, keyA, State{Seqno: 1, Sent: big.NewInt(300)}).Encode()
	f.Add(good)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSignedState(b)
		if err != nil {
			return
		}
		again, err := s.Encode()
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed %x to %x", b, again)
		}
	})
}
