package payments

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/internal/edverify"
)

// Receipt is what a worker signs for each answer it streams: what it was
// asked, what it answered, and what that costs at its price. The proxy and
// the client each compare it with what they saw (Check) and refuse it when
// it disagrees.
type Receipt struct {
	RequestID string // the client node's request ID
	// RequestHash is SHA-256 of the request body as the worker received it.
	RequestHash [32]byte
	// ResponseHash is SHA-256 of the streamed content, all chunks
	// concatenated in order.
	ResponseHash [32]byte
	Model        string
	Tokens       Tokens
	Price        Price   // the worker's price for Model when it answered
	Worker       peer.ID // the signer
	Proxy        peer.ID // the proxy the answer went through
	Time         int64   // unix milliseconds, from the worker's clock
}

// Bill is what the receipt's tokens cost at its price plus the proxy's fee.
func (r *Receipt) Bill(feePPM int64) (Bill, error) { return Cost(r.Tokens, r.Price, feePPM) }

// Hash is SHA-256, the hash receipts use for requests and responses.
func Hash(b []byte) [32]byte { return sha256.Sum256(b) }

// ReceiptVersion is the first byte of an encoded receipt.
const ReceiptVersion = 1

// Size limits of the encoding, checked before anything is allocated.
const (
	MaxReceiptSize   = 1024 // an encoded receipt
	MaxSignatureSize = 1024 // a signature (RSA keys make the longest)
	MaxSignedSize    = 2 + MaxReceiptSize + MaxSignatureSize
	maxIDLen         = 128 // request ID, worker and proxy peer IDs
	maxModelLen      = 255
)

// ReceiptTag prefixes the signed bytes so a receipt signature can't be
// replayed as a signature over anything else the peer key signs.
const ReceiptTag = "cocoon-receipt-v1"

// Receipt errors. None of them is helped by a retry: the receipt is
// malformed, forged, or describes a different answer.
var (
	ErrReceiptTooLarge = errors.New("receipt too large")
	ErrReceiptFormat   = errors.New("malformed receipt")
	ErrReceiptVersion  = errors.New("unknown receipt version")
	ErrSigner          = errors.New("receipt signed for another worker")
	ErrSignature       = errors.New("receipt signature invalid")
	ErrMismatch        = errors.New("receipt disagrees with what was seen")
)

// Encode is the versioned binary form of r:
//
//	version u8 (1)
//	request ID   u8 length, bytes
//	request hash [32]
//	response hash [32]
//	model        u8 length, bytes
//	prompt, cached, completion tokens   3 x u64
//	prompt, cached, completion prices   3 x u64
//	worker peer ID u8 length, bytes
//	proxy peer ID  u8 length, bytes
//	time         u64 unix milliseconds
//
// Integers are big-endian. Counts, prices and time must not be negative.
func (r *Receipt) Encode() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+1+len(r.RequestID)+64+1+len(r.Model)+48+2+len(r.Worker)+len(r.Proxy)+8)
	b = append(b, ReceiptVersion)
	b = appendShort(b, r.RequestID)
	b = append(b, r.RequestHash[:]...)
	b = append(b, r.ResponseHash[:]...)
	b = appendShort(b, r.Model)
	for _, v := range []int64{r.Tokens.Prompt, r.Tokens.Cached, r.Tokens.Completion,
		r.Price.Prompt, r.Price.Cached, r.Price.Completion} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	b = appendShort(b, string(r.Worker))
	b = appendShort(b, string(r.Proxy))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	return b, nil
}

func (r *Receipt) validate() error {
	switch {
	case len(r.RequestID) > maxIDLen:
		return fmt.Errorf("%w: request ID is %d bytes, limit %d", ErrReceiptTooLarge, len(r.RequestID), maxIDLen)
	case len(r.Model) > maxModelLen:
		return fmt.Errorf("%w: model is %d bytes, limit %d", ErrReceiptTooLarge, len(r.Model), maxModelLen)
	case len(r.Worker) > maxIDLen:
		return fmt.Errorf("%w: worker ID is %d bytes, limit %d", ErrReceiptTooLarge, len(r.Worker), maxIDLen)
	case len(r.Proxy) > maxIDLen:
		return fmt.Errorf("%w: proxy ID is %d bytes, limit %d", ErrReceiptTooLarge, len(r.Proxy), maxIDLen)
	case r.Tokens.Prompt < 0 || r.Tokens.Cached < 0 || r.Tokens.Completion < 0:
		return fmt.Errorf("%w: negative token count", ErrReceiptFormat)
	case r.Price.Prompt < 0 || r.Price.Cached < 0 || r.Price.Completion < 0:
		return fmt.Errorf("%w: negative price", ErrReceiptFormat)
	case r.Time < 0:
		return fmt.Errorf("%w: negative time", ErrReceiptFormat)
	}
	return nil
}

func appendShort(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// DecodeReceipt parses Encode's form. It refuses input over MaxReceiptSize
// before reading it, unknown versions, trailing bytes and negative values.
func DecodeReceipt(b []byte) (*Receipt, error) {
	if len(b) > MaxReceiptSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrReceiptTooLarge, len(b), MaxReceiptSize)
	}
	d := decoder{b: b}
	if v := d.take(1, "version"); v == nil {
		return nil, fmt.Errorf("%w: empty", ErrReceiptFormat)
	} else if v[0] != ReceiptVersion {
		return nil, fmt.Errorf("%w: %d", ErrReceiptVersion, v[0])
	}
	var r Receipt
	r.RequestID = d.short(maxIDLen)
	d.hash(&r.RequestHash)
	d.hash(&r.ResponseHash)
	r.Model = d.short(maxModelLen)
	for _, p := range []*int64{&r.Tokens.Prompt, &r.Tokens.Cached, &r.Tokens.Completion,
		&r.Price.Prompt, &r.Price.Cached, &r.Price.Completion} {
		*p = d.int64()
	}
	r.Worker = peer.ID(d.short(maxIDLen))
	r.Proxy = peer.ID(d.short(maxIDLen))
	r.Time = d.int64()
	if d.why != "" {
		return nil, fmt.Errorf("%w: %s", ErrReceiptFormat, d.why)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrReceiptFormat, len(d.b))
	}
	return &r, nil
}

// decoder reads fields in order; after the first failure every read
// returns zero and why says what went wrong.
type decoder struct {
	b   []byte
	why string
}

func (d *decoder) fail(why string) {
	if d.why == "" {
		d.why = why
	}
	d.b = nil
}

func (d *decoder) take(n int, what string) []byte {
	if d.why != "" {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated " + what)
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) short(limit int) string {
	p := d.take(1, "length")
	if p == nil {
		return ""
	}
	if int(p[0]) > limit {
		d.fail(fmt.Sprintf("field of %d bytes, limit %d", p[0], limit))
		return ""
	}
	return string(d.take(int(p[0]), "field"))
}

func (d *decoder) hash(h *[32]byte) { copy(h[:], d.take(32, "hash")) }

func (d *decoder) int64() int64 {
	p := d.take(8, "integer")
	if p == nil {
		return 0
	}
	v := binary.BigEndian.Uint64(p)
	if v > math.MaxInt64 {
		d.fail("negative integer")
		return 0
	}
	return int64(v)
}

// Sign encodes r and signs ReceiptTag || encoding with key, the worker's
// peer key. The signed form is: u16 big-endian length of the encoding, the
// encoding, the signature.
func Sign(r *Receipt, key crypto.PrivKey) ([]byte, error) {
	body, err := r.Encode()
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(signedBytes(body))
	if err != nil {
		return nil, fmt.Errorf("signing receipt: %w", err)
	}
	if len(sig) > MaxSignatureSize {
		return nil, fmt.Errorf("%w: signature is %d bytes", ErrReceiptTooLarge, len(sig))
	}
	out := make([]byte, 0, 2+len(body)+len(sig))
	out = binary.BigEndian.AppendUint16(out, uint16(len(body)))
	out = append(out, body...)
	return append(out, sig...), nil
}

func signedBytes(body []byte) []byte {
	m := make([]byte, 0, len(ReceiptTag)+len(body))
	m = append(m, ReceiptTag...)
	return append(m, body...)
}

// Verify parses a signed receipt and checks that worker signed it: the
// receipt must name worker, and the signature must verify with the key
// worker's ID embeds (Ed25519 and secp256k1 IDs do; RSA IDs don't and are
// refused).
func Verify(signed []byte, worker peer.ID) (*Receipt, error) {
	r, body, sig, err := open(signed, worker)
	if err != nil {
		return nil, err
	}
	pub, err := worker.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: no public key in peer ID %s: %v", ErrSignature, worker, err)
	}
	if !verifySig(pub, signedBytes(body), sig) {
		return nil, ErrSignature
	}
	return r, nil
}

// verifySig reports whether sig is pub's signature of msg: Ed25519 keys
// through signers, the rest through libp2p.
func verifySig(pub crypto.PubKey, msg, sig []byte) bool {
	if pub.Type() == crypto.Ed25519 {
		raw, err := pub.Raw()
		return err == nil && signers.Verify(raw, msg, sig)
	}
	ok, err := pub.Verify(msg, sig)
	return err == nil && ok
}

// signers verifies the receipts of workers whose receipts it saw often
// with a table of each one's key: a proxy checks every receipt of every
// answer it relays, about 45 µs each through crypto/ed25519 on this
// project's machine and 28 µs with a table (internal/edverify). 64 tables
// take 2.6 MiB.
var signers = edverify.NewCache(64)

// VerifyNamed is Verify for the worker the receipt names: for a party
// handed a receipt by someone else (a proxy paid by a client) that must
// know it is the named worker's.
func VerifyNamed(signed []byte) (*Receipt, error) {
	w, err := named(signed)
	if err != nil {
		return nil, err
	}
	return Verify(signed, w)
}

// OpenNamed is Open for the worker the receipt names, without checking the
// signature: for a party that already compared these very bytes with what
// it saw (a proxy paid for an answer it relayed and checked).
func OpenNamed(signed []byte) (*Receipt, error) {
	w, err := named(signed)
	if err != nil {
		return nil, err
	}
	return Open(signed, w)
}

// named returns the worker a signed receipt names.
func named(signed []byte) (peer.ID, error) {
	if len(signed) < 2 || len(signed) > MaxSignedSize {
		return "", fmt.Errorf("%w: %d bytes", ErrReceiptFormat, len(signed))
	}
	n := int(binary.BigEndian.Uint16(signed))
	if len(signed)-2 < n {
		return "", fmt.Errorf("%w: truncated body", ErrReceiptFormat)
	}
	r, err := DecodeReceipt(signed[2 : 2+n])
	if err != nil {
		return "", err
	}
	return r.Worker, nil
}

// Open parses a signed receipt that names worker without checking its
// signature: for a checker that compares every receipt with what it saw
// but verifies signatures only on a sample, since a signature costs about
// fifty times the rest. Anything relying on the receipt as proof must
// Verify it.
func Open(signed []byte, worker peer.ID) (*Receipt, error) {
	r, _, _, err := open(signed, worker)
	return r, err
}

func open(signed []byte, worker peer.ID) (r *Receipt, body, sig []byte, err error) {
	if len(signed) > MaxSignedSize {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrReceiptTooLarge, len(signed), MaxSignedSize)
	}
	if len(signed) < 2 {
		return nil, nil, nil, fmt.Errorf("%w: truncated", ErrReceiptFormat)
	}
	n := int(binary.BigEndian.Uint16(signed))
	if len(signed)-2 < n {
		return nil, nil, nil, fmt.Errorf("%w: truncated body", ErrReceiptFormat)
	}
	body, sig = signed[2:2+n], signed[2+n:]
	if len(sig) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: no signature", ErrReceiptFormat)
	}
	if r, err = DecodeReceipt(body); err != nil {
		return nil, nil, nil, err
	}
	if r.Worker != worker {
		return nil, nil, nil, fmt.Errorf("%w: names %s, expected %s", ErrSigner, r.Worker, worker)
	}
	return r, body, sig, nil
}

// Check compares a verified receipt with want, what the checker saw: the
// request ID, the hashes, the model, the token counts, the price and both
// peer IDs must be equal. The error wraps ErrMismatch and names the first
// field that differs. Time is the worker's claim and is not compared.
func Check(r, want *Receipt) error {
	if r.RequestID == want.RequestID && r.RequestHash == want.RequestHash && r.ResponseHash == want.ResponseHash &&
		r.Model == want.Model && r.Tokens == want.Tokens && r.Price == want.Price && r.Worker == want.Worker && r.Proxy == want.Proxy {
		return nil // every answer's case, without formatting the fields below
	}
	type field struct {
		name      string
		got, want any
	}
	for _, f := range []field{
		{"request ID", r.RequestID, want.RequestID},
		{"request hash", hex.EncodeToString(r.RequestHash[:]), hex.EncodeToString(want.RequestHash[:])},
		{"response hash", hex.EncodeToString(r.ResponseHash[:]), hex.EncodeToString(want.ResponseHash[:])},
		{"model", r.Model, want.Model},
		{"prompt tokens", r.Tokens.Prompt, want.Tokens.Prompt},
		{"cached tokens", r.Tokens.Cached, want.Tokens.Cached},
		{"completion tokens", r.Tokens.Completion, want.Tokens.Completion},
		{"prompt price", r.Price.Prompt, want.Price.Prompt},
		{"cached price", r.Price.Cached, want.Price.Cached},
		{"completion price", r.Price.Completion, want.Price.Completion},
		{"worker", r.Worker, want.Worker},
		{"proxy", r.Proxy, want.Proxy},
	} {
		if f.got != f.want {
			return fmt.Errorf("%w: %s is %v, saw %v", ErrMismatch, f.name, f.got, f.want)
		}
	}
	return nil
}
