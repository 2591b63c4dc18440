package seal_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/internal/clocktest"
)

func TestSealedRequestRoundTrip(t *testing.T) {
	for _, kem := range kemCases {
		clock := clocktest.New(t0.Add(123 * time.Millisecond))
		ws := []*worker{newWorker(t, clock, "a", seal.WithKEM(kem)), newWorker(t, clock, "b", seal.WithKEM(kem))}
		sr, _ := mustSeal(t, seal.NewClient(nil, clock.Now), "req-ü", []byte("body"), ws[0].session(t), ws[1].session(t))
		got := roundTrip(t, sr)
		if !got.SealedAt.Equal(sr.SealedAt) {
			t.Fatalf("%v: sealed at %v, want %v", kem, got.SealedAt, sr.SealedAt)
		}
		got.SealedAt = sr.SealedAt
		if !reflect.DeepEqual(got, sr) {
			t.Fatalf("%v: round trip changed the request:\n%+v\nwant\n%+v", kem, got, sr)
		}
	}
}

// validRequest is the wire form of a genuine request, with the offsets
// of its fields for the decoder table.
func validRequest(t *testing.T) []byte {
	clock := clocktest.New(t0)
	w := newWorker(t, clock, "a", seal.WithKEM(seal.X25519))
	sr, _ := mustSeal(t, seal.NewClient(nil, clock.Now), "rid", []byte("body"), w.session(t))
	b, err := seal.AppendSealedRequest(nil, sr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Offsets in validRequest's wire form: version 0, type 1, time 2..10,
// ID length 10, ID 11..14, wrap count 14, then the wrap: KEM 15..17, key
// ID 17..33, counter 33..41, enc length 41..43, enc 43..75, key 75..123,
// body length 123..127, body.
const (
	offTime, offIDLen, offWraps, offKEM, offKeyID = 2, 10, 14, 15, 17
	offCounter, offEncLen, offBodyLen             = 33, 41, 123
)

func TestDecodeSealedRequestRefuses(t *testing.T) {
	valid := validRequest(t)
	if _, err := seal.DecodeSealedRequest(valid); err != nil {
		t.Fatal(err)
	}
	set := func(off int, v ...byte) []byte {
		b := bytes.Clone(valid)
		copy(b[off:], v)
		return b
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	twoWraps := append(bytes.Clone(valid[:offWraps]), 2)
	wrap := valid[offKEM:offBodyLen]
	twoWraps = append(append(append(twoWraps, wrap...), wrap...), valid[offBodyLen:]...)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, seal.ErrMalformed},
		{"version 1", set(0, 1), seal.ErrMalformed},
		{"version 3", set(0, 3), seal.ErrMalformed},
		{"a record's type", set(1, 2), seal.ErrMalformed},
		{"time zero", set(offTime, 0, 0, 0, 0, 0, 0, 0, 0), seal.ErrMalformed},
		{"time beyond int64", set(offTime, 0x80), seal.ErrMalformed},
		{"empty request ID", set(offIDLen, 0), seal.ErrMalformed},
		{"request ID over the cap", set(offIDLen, seal.MaxRequestID+1), seal.ErrMalformed},
		{"request ID not UTF-8", set(offIDLen+1, 0xff), seal.ErrMalformed},
		{"no wraps", set(offWraps, 0), seal.ErrMalformed},
		{"too many wraps", set(offWraps, seal.MaxCandidates+1), seal.ErrMalformed},
		{"unknown KEM", set(offKEM, 0, 0x11), seal.ErrUnsupportedKEM},
		{"KEM of another enc length", set(offKEM, 0x64, 0x7a), seal.ErrMalformed},
		{"counter zero", set(offCounter, 0, 0, 0, 0, 0, 0, 0, 0), seal.ErrMalformed},
		{"enc length over the cap", set(offEncLen, 0xff, 0xff), seal.ErrMalformed},
		{"session reference cut short", set(offEncLen, 0, 0)[:offEncLen+2+seal.RefLen-1], seal.ErrMalformed},
		{"two wraps for one key", twoWraps, seal.ErrMalformed},
		{"body length over the cap", set(offBodyLen, u32(seal.MaxBody+17)...), seal.ErrMalformed},
		{"body length past the end", set(offBodyLen, u32(1000)...), seal.ErrMalformed},
		{"body shorter than a tag", set(offBodyLen, u32(15)...)[:offBodyLen+4+15], seal.ErrMalformed},
		{"trailing byte", append(bytes.Clone(valid), 0), seal.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := seal.DecodeSealedRequest(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeSealedRequest = %v, want %v", err, tt.want)
			}
		})
	}
	for n := range valid {
		if _, err := seal.DecodeSealedRequest(valid[:n]); !errors.Is(err, seal.ErrMalformed) {
			t.Fatalf("first %d bytes: %v, want ErrMalformed", n, err)
		}
	}
}

func TestAppendSealedRequestRefuses(t *testing.T) {
	sr, err := seal.DecodeSealedRequest(validRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]func(sr *seal.SealedRequest){
		"empty ID":         func(sr *seal.SealedRequest) { sr.RequestID = "" },
		"time before 1970": func(sr *seal.SealedRequest) { sr.SealedAt = time.Unix(-1, 0) },
		"no wraps":         func(sr *seal.SealedRequest) { sr.Wraps = nil },
		"short wrap key":   func(sr *seal.SealedRequest) { sr.Wraps[0].Key = sr.Wraps[0].Key[1:] },
		"short body":       func(sr *seal.SealedRequest) { sr.Body = sr.Body[:15] },
	}
	for name, mutate := range tests {
		c := *sr
		c.Wraps = append([]seal.Wrap(nil), sr.Wraps...)
		mutate(&c)
		if _, err := seal.AppendSealedRequest(nil, &c); !errors.Is(err, seal.ErrMalformed) {
			t.Errorf("%s: AppendSealedRequest = %v, want ErrMalformed", name, err)
		}
	}
}

func TestParsePublicKey(t *testing.T) {
	clock := clocktest.New(t0)
	hybrid := newWorker(t, clock, "a").pub
	classic := newWorker(t, clock, "b", seal.WithKEM(seal.X25519)).pub
	tests := []struct {
		name string
		b    []byte
		want error
		kem  seal.KEM
	}{
		{"hybrid", hybrid, nil, seal.MLKEM768X25519},
		{"x25519", classic, nil, seal.X25519},
		{"empty", nil, seal.ErrMalformed, 0},
		{"one byte", []byte{0}, seal.ErrMalformed, 0},
		{"prefix only", hybrid[:2], seal.ErrMalformed, 0},
		{"over the cap", make([]byte, seal.MaxPublicKey+1), seal.ErrMalformed, 0},
		{"unknown KEM", append([]byte{0, 0x21}, classic[2:]...), seal.ErrUnsupportedKEM, 0},
		{"hybrid cut", hybrid[:len(hybrid)-1], seal.ErrMalformed, 0},
		{"x25519 long", append(bytes.Clone(classic), 0), seal.ErrMalformed, 0},
		{"hybrid prefix on an x25519 key", append(bytes.Clone(hybrid[:2]), classic[2:]...), seal.ErrMalformed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := seal.ParsePublicKey(tt.b)
			if !errors.Is(err, tt.want) || tt.want == nil && err != nil {
				t.Fatalf("ParsePublicKey = %v, want %v", err, tt.want)
			}
			if err == nil && (p.KEM() != tt.kem || !bytes.Equal(p.Bytes(), tt.b)) {
				t.Fatalf("parsed %v %x, want %v %x", p.KEM(), p.Bytes(), tt.kem, tt.b)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

// vector is a known answer: a worker's keyring made from ikm at a fixed
// time opens request and seals chunks into records, byte for byte.
type vector struct {
	KEM     string    `json:"kem"`
	IKM     string    `json:"ikm"`
	Time    time.Time `json:"time"`
	Network string    `json:"network"`
	Peer    string    `json:"peer"`
	Pub     string    `json:"pub"`
	Request string    `json:"request"`
	Body    string    `json:"body"`
	Chunks  []string  `json:"chunks"`
	Records []string  `json:"records"`
}

// TestVectors opens the requests of testdata/vectors.json and seals their
// answers: the wire format and every derivation stay as they were.
func TestVectors(t *testing.T) {
	path := filepath.Join("testdata", "vectors.json")
	if *update {
		writeVectors(t, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) != len(kemCases) {
		t.Fatalf("%d vectors, want one per KEM", len(vs))
	}
	for _, v := range vs {
		t.Run(v.KEM, func(t *testing.T) { checkVector(t, v) })
	}
}

func checkVector(t *testing.T, v vector) {
	kem := map[string]seal.KEM{"mlkem768x25519": seal.MLKEM768X25519, "x25519": seal.X25519}[v.KEM]
	clock := clocktest.New(v.Time)
	ring, err := seal.NewKeyring(bytes.NewReader(unhex(t, v.IKM)), clock.Now, seal.WithKEM(kem))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ring.Next(v.Time.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(pub) != v.Pub {
		t.Fatal("the keyring made another public key from the same randomness")
	}
	wire := unhex(t, v.Request)
	sr, err := seal.DecodeSealedRequest(wire)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := seal.AppendSealedRequest(nil, sr); !bytes.Equal(again, wire) {
		t.Fatal("re-encoding changed the request")
	}
	body, rs, err := ring.OpenRequest(sr, seal.Binding{Network: v.Network, Peer: v.Peer}, routing)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != v.Body {
		t.Fatalf("body %q, want %q", body, v.Body)
	}
	for i, rec := range answer(t, rs, v.Chunks...) {
		if hex.EncodeToString(rec) != v.Records[i] {
			t.Fatalf("record %d differs from the vector", i)
		}
	}
}

func writeVectors(t *testing.T, path string) {
	var vs []vector
	for _, kem := range kemCases {
		v := vector{KEM: kem.String(), IKM: hex.EncodeToString(bytes.Repeat([]byte{byte(kem)}, 32)),
			Time: t0, Network: testNetwork, Peer: "12D3KooWVectorPeer", Body: `{"model":"m","messages":[]}`,
			Chunks: []string{"Hello", "", ", world"}}
		clock := clocktest.New(t0)
		ring, err := seal.NewKeyring(bytes.NewReader(unhex(t, v.IKM)), clock.Now, seal.WithKEM(kem))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ring.Next(t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		v.Pub = hex.EncodeToString(pub)
		self := seal.Binding{Network: v.Network, Peer: v.Peer}
		s, err := seal.NewSession(pub, self)
		if err != nil {
			t.Fatal(err)
		}
		sr, o := mustSeal(t, seal.NewClient(nil, clock.Now), "vector-1", []byte(v.Body), s)
		wire, err := seal.AppendSealedRequest(nil, sr)
		if err != nil {
			t.Fatal(err)
		}
		v.Request = hex.EncodeToString(wire)
		_, rs, err := ring.OpenRequest(sr, self, routing)
		if err != nil {
			t.Fatal(err)
		}
		recs := answer(t, rs, v.Chunks...)
		if _, err := readAll(o, recs); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			v.Records = append(v.Records, hex.EncodeToString(r))
		}
		vs = append(vs, v)
	}
	data, err := json.MarshalIndent(vs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
