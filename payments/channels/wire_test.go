package channels

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	const addr = "EQDu1L4EOleSk16IuiKz5hQWplIXj_gxeR-4FA0svf5pn2_s"
	key := strings.Repeat("A", 43) + "=" // 32 bytes in base64
	id := "AAAAAAAAAAAAAAAAAAAAAA=="     // 16 bytes
	for _, tc := range []struct {
		name string
		json string
		ok   bool
	}{
		{"hello", `{"type":"hello"}`, true},
		{"open", `{"type":"open","channel":"` + addr + `","id":"` + id + `","key_a":"` + key + `","dest_a":"` + addr + `","deposit":5,"quarantine_s":60}`, true},
		{"open without deposit", `{"type":"open","channel":"` + addr + `","id":"` + id + `","key_a":"` + key + `","dest_a":"` + addr + `","quarantine_s":60}`, false},
		{"open with a short key", `{"type":"open","channel":"` + addr + `","id":"` + id + `","key_a":"AAAA","dest_a":"` + addr + `","deposit":5,"quarantine_s":60}`, false},
		{"pay", `{"type":"pay","channel":"` + addr + `","state":"AQ=="}`, true},
		{"pay without state", `{"type":"pay","channel":"` + addr + `"}`, false},
		{"pay to no address", `{"type":"pay","channel":"nowhere","state":"AQ=="}`, false},
		{"unknown type", `{"type":"gift"}`, false},
		{"unknown field", `{"type":"hello","bonus":1}`, false},
		{"trailing data", `{"type":"hello"}{}`, false},
		{"negative amount", `{"type":"pay","channel":"` + addr + `","state":"AQ==","entries":[{"amount":-1}]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeRequest([]byte(tc.json))
			if (err == nil) != tc.ok {
				t.Fatalf("decodeRequest = %v, want ok=%t", err, tc.ok)
			}
			if err != nil && !errors.Is(err, errMessage) {
				t.Errorf("error %v does not wrap errMessage", err)
			}
		})
	}
	// Too many entries.
	var b strings.Builder
	b.WriteString(`{"type":"pay","channel":"` + addr + `","state":"AQ==","entries":[`)
	for i := range MaxEntries + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"amount":1}`)
	}
	b.WriteString("]}")
	if _, err := decodeRequest([]byte(b.String())); err == nil {
		t.Errorf("%d entries accepted, limit %d", MaxEntries+1, MaxEntries)
	}
}

// TestReadFrameLimit: a length above MaxMessage is refused before anything
// is allocated for it.
func TestReadFrameLimit(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxMessage+1)
	if _, err := readFrame(bytes.NewReader(hdr[:])); !errors.Is(err, errMessage) {
		t.Fatalf("readFrame of an oversized length = %v, want errMessage", err)
	}
	var buf bytes.Buffer
	if err := writeMessage(&buf, &request{Type: typeHello}); err != nil {
		t.Fatal(err)
	}
	b, err := readFrame(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if q, err := decodeRequest(b); err != nil || q.Type != typeHello {
		t.Fatalf("round trip = %+v, %v", q, err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"type":"hello"}`))
	f.Add([]byte(`{"type":"pay","channel":"EQDu1L4EOleSk16IuiKz5hQWplIXj_gxeR-4FA0svf5pn2_s","state":"AQ==","entries":[{"amount":3,"receipt":"AAE="}]}`))
	f.Add([]byte(`{"type":"sync","channel":"0:ee"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := decodeRequest(b)
		if err != nil {
			return
		}
		if len(q.Entries) > MaxEntries {
			t.Fatalf("%d entries accepted", len(q.Entries))
		}
		if q.Type == typeOpen && (len(q.ID) != 16 || len(q.KeyA) != 32 || q.Deposit == 0) {
			t.Fatalf("open accepted without its parameters: %+v", q)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte(`{"received":5,"seqno":2}`))
	f.Add([]byte(`{"code":"refused","message":"no"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeReply(b)
		if err == nil && r == nil {
			t.Fatal("nil reply without an error")
		}
	})
}
