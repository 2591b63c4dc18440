package contracts

import (
	"bytes"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/xssnick/tonutils-go/tvm/cell"
)

func TestRootCodeIsTheCommittedBoC(t *testing.T) {
	raw, err := os.ReadFile("root.boc")
	if err != nil {
		t.Fatal(err)
	}
	want, err := cell.FromBOC(raw)
	if err != nil {
		t.Fatalf("root.boc: %v", err)
	}
	got := RootCode()
	if !bytes.Equal(got.Hash(), want.Hash()) {
		t.Fatalf("RootCode hash %x, root.boc hash %x", got.Hash(), want.Hash())
	}
	if RootCode() != got {
		t.Error("RootCode parsed the BoC again")
	}
}

func TestMustParsePanicsOnACorruptBoC(t *testing.T) {
	for name, boc := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a bag of cells"),
		"truncated": rootBoC[:len(rootBoC)/2],
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.Contains(msg, "contracts: embedded x.boc is corrupt") {
					t.Fatalf("recovered %v, want a panic naming the file", r)
				}
			}()
			mustParse("x.boc", boc)
		})
	}
}

func TestSidecarFilesMatchTheSources(t *testing.T) {
	for _, name := range []string{"sandbox.mjs", "package.json", "package-lock.json"} {
		got, err := fs.ReadFile(SidecarFiles(), name)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: embedded copy differs", name)
		}
	}
}
