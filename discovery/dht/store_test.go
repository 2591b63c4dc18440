package dht

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-base32"
)

// FuzzParseProvKey: a provider record's datastore key either parses into
// the key and peer it was made of, or is refused; nothing panics.
func FuzzParseProvKey(f *testing.F) {
	id, err := peer.Decode("12D3KooWLVUkcHJa6Lq71Kp5g6h5jFLUnUWWoJmrYYiJFA9iDokT")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(ProxyKey("local").Hash()), []byte(id))
	f.Add([]byte{}, []byte{})
	f.Add([]byte("k"), []byte("not a peer"))
	f.Fuzz(func(t *testing.T, key, pid []byte) {
		dsk := "/providers/" + base32.RawStdEncoding.EncodeToString(key) + "/" + base32.RawStdEncoding.EncodeToString(pid)
		k, p, ok := parseProvKey(dsk)
		if !ok {
			if _, err := peer.IDFromBytes(pid); err == nil {
				t.Fatalf("refused the key of %x by a valid peer", key)
			}
			return
		}
		if k != string(key) || string(p) != string(pid) {
			t.Fatalf("parsed %q into %x, %x; want %x, %x", dsk, k, p, key, pid)
		}
		if _, _, ok := parseProvKey(dsk + "/x"); ok {
			t.Fatal("parsed a key with an extra segment")
		}
	})
}
