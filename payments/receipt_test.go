package payments_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/internal/edverify"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
	"github.com/cocoon-mesh/cocoon/payments"
)

func sampleReceipt(worker, proxy peer.ID) *payments.Receipt {
	return &payments.Receipt{
		RequestID:    "req-42",
		RequestHash:  payments.Hash([]byte(`{"model":"m","messages":[]}`)),
		ResponseHash: payments.Hash([]byte("Hello, world")),
		Model:        "qwen3-8b",
		Tokens:       payments.Tokens{Prompt: 120, Cached: 20, Completion: 300},
		Price:        payments.Price{Prompt: 2e6, Cached: 1e6, Completion: 8e6},
		Worker:       worker,
		Proxy:        proxy,
		Time:         1_780_000_000_000,
	}
}

func TestReceiptRoundTrip(t *testing.T) {
	key, worker := p2ptest.NewKey(t)
	_, proxy := p2ptest.NewKey(t)
	r := sampleReceipt(worker, proxy)
	enc, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := payments.DecodeReceipt(enc)
	if err != nil {
		t.Fatal(err)
	}
	if *dec != *r {
		t.Fatalf("decoded %+v, want %+v", dec, r)
	}
	signed, err := payments.Sign(r, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := payments.Verify(signed, worker)
	if err != nil {
		t.Fatal(err)
	}
	if err := payments.Check(got, r); err != nil {
		t.Fatal(err)
	}
	bill, err := got.Bill(10_000)
	if err != nil || bill.Worker != 200+20+2400 || bill.Fee != 27 {
		t.Fatalf("bill %+v, %v", bill, err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	key, worker := p2ptest.NewKey(t)
	otherKey, other := p2ptest.NewKey(t)
	_, proxy := p2ptest.NewKey(t)
	r := sampleReceipt(worker, proxy)
	signed, err := payments.Sign(r, key)
	if err != nil {
		t.Fatal(err)
	}
	byOther, err := payments.Sign(r, otherKey) // names worker, signed by other
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(signed)
	flipped[2+10] ^= 1 // inside the request hash
	badSig := bytes.Clone(signed)
	badSig[len(badSig)-1] ^= 1
	wrongVersion := bytes.Clone(signed)
	wrongVersion[2] = 9
	for _, tc := range []struct {
		name   string
		signed []byte
		worker peer.ID
		err    error
	}{
		{"expected another worker", signed, other, payments.ErrSigner},
		{"signed by another key", byOther, worker, payments.ErrSignature},
		{"body changed", flipped, worker, payments.ErrSignature},
		{"signature changed", badSig, worker, payments.ErrSignature},
		{"version", wrongVersion, worker, payments.ErrReceiptVersion},
		{"no signature", signed[:len(signed)-64], worker, payments.ErrReceiptFormat},
		{"truncated", signed[:40], worker, payments.ErrReceiptFormat},
		{"empty", nil, worker, payments.ErrReceiptFormat},
		{"too large", make([]byte, payments.MaxSignedSize+1), worker, payments.ErrReceiptTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := payments.Verify(tc.signed, tc.worker); !errors.Is(err, tc.err) {
				t.Fatalf("Verify error = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestCheckNamesField(t *testing.T) {
	_, worker := p2ptest.NewKey(t)
	_, proxy := p2ptest.NewKey(t)
	for _, tc := range []struct {
		field  string
		change func(*payments.Receipt)
	}{
		{"request ID", func(r *payments.Receipt) { r.RequestID = "other" }},
		{"request hash", func(r *payments.Receipt) { r.RequestHash[0] ^= 1 }},
		{"response hash", func(r *payments.Receipt) { r.ResponseHash = payments.Hash([]byte("Hello, world!")) }},
		{"model", func(r *payments.Receipt) { r.Model = "bigger-model" }},
		{"prompt tokens", func(r *payments.Receipt) { r.Tokens.Prompt++ }},
		{"cached tokens", func(r *payments.Receipt) { r.Tokens.Cached-- }},
		{"completion tokens", func(r *payments.Receipt) { r.Tokens.Completion += 10 }},
		{"prompt price", func(r *payments.Receipt) { r.Price.Prompt++ }},
		{"cached price", func(r *payments.Receipt) { r.Price.Cached++ }},
		{"completion price", func(r *payments.Receipt) { r.Price.Completion++ }},
		{"worker", func(r *payments.Receipt) { r.Worker = proxy }},
		{"proxy", func(r *payments.Receipt) { r.Proxy = worker }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			seen := sampleReceipt(worker, proxy)
			got := sampleReceipt(worker, proxy)
			tc.change(got)
			err := payments.Check(got, seen)
			if !errors.Is(err, payments.ErrMismatch) || !strings.Contains(err.Error(), tc.field+" is") {
				t.Fatalf("Check error = %v, want a mismatch naming %q", err, tc.field)
			}
		})
	}
	t.Run("time is not compared", func(t *testing.T) {
		got := sampleReceipt(worker, proxy)
		got.Time++
		if err := payments.Check(got, sampleReceipt(worker, proxy)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEncodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*payments.Receipt)
		err    error
	}{
		{"long model", func(r *payments.Receipt) { r.Model = strings.Repeat("m", 256) }, payments.ErrReceiptTooLarge},
		{"long request ID", func(r *payments.Receipt) { r.RequestID = strings.Repeat("r", 129) }, payments.ErrReceiptTooLarge},
		{"negative tokens", func(r *payments.Receipt) { r.Tokens.Completion = -1 }, payments.ErrReceiptFormat},
		{"negative price", func(r *payments.Receipt) { r.Price.Prompt = -1 }, payments.ErrReceiptFormat},
		{"negative time", func(r *payments.Receipt) { r.Time = -1 }, payments.ErrReceiptFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleReceipt("w", "p")
			tc.change(r)
			if _, err := r.Encode(); !errors.Is(err, tc.err) {
				t.Fatalf("Encode error = %v, want %v", err, tc.err)
			}
		})
	}
	t.Run("largest fits the cap", func(t *testing.T) {
		r := sampleReceipt(peer.ID(strings.Repeat("w", 128)), peer.ID(strings.Repeat("p", 128)))
		r.Model, r.RequestID = strings.Repeat("m", 255), strings.Repeat("r", 128)
		enc, err := r.Encode()
		if err != nil || len(enc) > payments.MaxReceiptSize {
			t.Fatalf("%d bytes, %v", len(enc), err)
		}
	})
}

func FuzzDecodeReceipt(f *testing.F) {
	enc, err := sampleReceipt("worker", "proxy").Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := payments.DecodeReceipt(b)
		if err != nil {
			return
		}
		again, err := r.Encode()
		if err != nil {
			t.Fatalf("decoded receipt does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
	})
}

func FuzzVerify(f *testing.F) {
	key, worker := p2ptest.NewKey(f)
	signed, err := payments.Sign(sampleReceipt(worker, "proxy"), key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := payments.Verify(b, worker)
		if err == nil && r.Worker != worker {
			t.Fatalf("verified a receipt naming %s", r.Worker)
		}
		// VerifyNamed accepts what Verify accepts for the worker the
		// receipt names, and nothing else.
		rn, errn := payments.VerifyNamed(b)
		if err == nil && (errn != nil || rn.Worker != worker) {
			t.Fatalf("Verify accepted for %s, VerifyNamed = %v, %v", worker, rn, errn)
		}
		if errn == nil {
			if _, err := payments.Verify(b, rn.Worker); err != nil {
				t.Fatalf("VerifyNamed accepted a receipt Verify refuses for the worker it names: %v", err)
			}
		}
	})
}

// TestVerifyNamed: the receipt's own worker is the signer checked.
func TestVerifyNamed(t *testing.T) {
	key, worker := p2ptest.NewKey(t)
	otherKey, _ := p2ptest.NewKey(t)
	good, err := payments.Sign(sampleReceipt(worker, "proxy"), key)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := payments.VerifyNamed(good); err != nil || r.Worker != worker {
		t.Fatalf("VerifyNamed(good) = %v, %v", r, err)
	}
	// Signed by another key while naming worker: refused.
	forged, err := payments.Sign(sampleReceipt(worker, "proxy"), otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payments.VerifyNamed(forged); !errors.Is(err, payments.ErrSignature) {
		t.Errorf("forged receipt: %v, want ErrSignature", err)
	}
	// OpenNamed checks the form and the name, not the signature.
	if r, err := payments.OpenNamed(forged); err != nil || r.Worker != worker {
		t.Errorf("OpenNamed(forged) = %v, %v; want it opened, naming %s", r, err, worker)
	}
	for _, b := range [][]byte{nil, {0}, {0, 200, 1}} {
		if _, err := payments.VerifyNamed(b); err == nil {
			t.Errorf("VerifyNamed(%x) accepted", b)
		}
		if _, err := payments.OpenNamed(b); err == nil {
			t.Errorf("OpenNamed(%x) accepted", b)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	key, worker := p2ptest.NewKey(b)
	r := sampleReceipt(worker, "proxy")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := payments.Sign(r, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	key, worker := p2ptest.NewKey(b)
	r := sampleReceipt(worker, "proxy")
	signed, err := payments.Sign(r, key)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := payments.Verify(signed, worker)
		if err != nil {
			b.Fatal(err)
		}
		if err := payments.Check(got, r); err != nil {
			b.Fatal(err)
		}
	}
}

// Open parses what Verify parses, names the same worker, and skips only the
// signature.
func TestOpen(t *testing.T) {
	_, worker := p2ptest.NewKey(t)
	otherKey, other := p2ptest.NewKey(t)
	_, proxy := p2ptest.NewKey(t)
	r := sampleReceipt(worker, proxy)
	byOther, err := payments.Sign(r, otherKey) // names worker, signed by other
	if err != nil {
		t.Fatal(err)
	}
	got, err := payments.Open(byOther, worker)
	if err != nil || payments.Check(got, r) != nil {
		t.Fatalf("Open = %+v, %v; want the receipt, unverified", got, err)
	}
	if _, err := payments.Verify(byOther, worker); !errors.Is(err, payments.ErrSignature) {
		t.Fatalf("Verify = %v, want ErrSignature", err)
	}
	if _, err := payments.Open(byOther, other); !errors.Is(err, payments.ErrSigner) {
		t.Fatalf("Open for another worker = %v, want ErrSigner", err)
	}
	if _, err := payments.Open([]byte{0, 9, 1}, worker); !errors.Is(err, payments.ErrReceiptFormat) {
		t.Fatalf("Open of garbage = %v, want ErrReceiptFormat", err)
	}
}

// TestVerifyManyAndOtherKeys: a worker whose receipts are checked often
// gets a table of its key (internal/edverify), and every receipt still
// verifies and every changed one still fails, through the table too; a
// secp256k1 worker's receipts verify through libp2p.
func TestVerifyManyAndOtherKeys(t *testing.T) {
	key, worker := p2ptest.NewKey(t)
	_, proxy := p2ptest.NewKey(t)
	for i := range 3 * edverify.BuildAfter {
		r := sampleReceipt(worker, proxy)
		r.Tokens.Completion = int64(i + 1)
		signed, err := payments.Sign(r, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := payments.Verify(signed, worker); err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		bad := bytes.Clone(signed)
		bad[len(bad)-1] ^= 1
		if _, err := payments.Verify(bad, worker); !errors.Is(err, payments.ErrSignature) {
			t.Fatalf("receipt %d with its signature changed: %v, want ErrSignature", i, err)
		}
	}
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secpWorker, err := peer.IDFromPrivateKey(secp)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := payments.Sign(sampleReceipt(secpWorker, proxy), secp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payments.Verify(signed, secpWorker); err != nil {
		t.Fatalf("a secp256k1 worker's receipt: %v", err)
	}
	if _, err := payments.Verify(signed, worker); err == nil {
		t.Fatal("a secp256k1 worker's receipt verified as another worker's")
	}
	bad := bytes.Clone(signed)
	bad[len(bad)-1] ^= 1
	if _, err := payments.Verify(bad, secpWorker); err == nil {
		t.Fatal("a secp256k1 worker's changed receipt verified")
	}
}
