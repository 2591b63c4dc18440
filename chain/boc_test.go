package chain_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain"
)

func TestParseBOC(t *testing.T) {
	good := cell.BeginCell().MustStoreUInt(42, 32).MustStoreRef(cell.BeginCell().EndCell()).EndCell()
	c, err := chain.ParseBOC(good.ToBOC())
	if err != nil || !bytes.Equal(c.Hash(), good.Hash()) {
		t.Fatalf("ParseBOC(good) = %v, %v", c, err)
	}
	for name, b := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a boc"),
		"truncated": good.ToBOC()[:10],
		"too big":   make([]byte, chain.MaxBOC+1),
		// Found by fuzzing: cell.FromBOC panics on it.
		"short cell data": []byte("\xb5\xee\x9cr100000"),
		// Found by fuzzing: cell.FromBOC allocates terabytes for the root count.
		"huge root count": []byte("\xb5\xee\x9cr\x05\x01\x00\xb9\x00\x02\x01\xcf\x01\x02\x01\x01 \x03\x01\x01 \x04\x00"),
	} {
		if _, err := chain.ParseBOC(b); !errors.Is(err, chain.ErrBadBOC) {
			t.Errorf("%s: err = %v, want ErrBadBOC", name, err)
		}
	}
}

func FuzzParseBOC(f *testing.F) {
	f.Add(cell.BeginCell().MustStoreUInt(1, 8).EndCell().ToBOC())
	f.Add([]byte{0xb5, 0xee, 0x9c, 0x72})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := chain.ParseBOC(b)
		if err == nil && c == nil {
			t.Fatal("nil cell without an error")
		}
	})
}
