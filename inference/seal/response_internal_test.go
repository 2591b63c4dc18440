package seal

import (
	"errors"
	"testing"
)

// TestRecordNumberCap: a record's number is part of its nonce, 32 bits
// of it, so the sealer stops before the numbers run out (the end record
// keeps the last one) and the opener refuses a record numbered past them.
func TestRecordNumberCap(t *testing.T) {
	keys, err := newSessionKeys(make([]byte, keyLen))
	if err != nil {
		t.Fatal(err)
	}
	rs := &ResponseSealer{aead: keys.answer, ctr: 1, seq: maxRecords - 1}
	if _, err := rs.Seal([]byte("one too many")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("chunk numbered %d: err = %v, want ErrMalformed", uint64(maxRecords-1), err)
	}
	end, err := rs.End()
	if err != nil {
		t.Fatalf("end record numbered %d: %v", uint64(maxRecords-1), err)
	}
	if _, seq, _, err := parseRecord(end); err != nil || seq != maxRecords-1 {
		t.Fatalf("parsing the last number: %d, %v", seq, err)
	}
	past := recordHeader(nil, typeChunk, maxRecords)
	past = append(past, make([]byte, tagLen)...)
	if _, _, _, err := parseRecord(past); !errors.Is(err, ErrMalformed) {
		t.Fatalf("record numbered %d: err = %v, want ErrMalformed", uint64(maxRecords), err)
	}
}
