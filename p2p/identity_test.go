package p2p_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/p2p"
)

func TestLoadOrCreateIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // not there yet
	k1, err := p2p.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Type() != crypto.Ed25519 {
		t.Fatalf("key type %v, want Ed25519", k1.Type())
	}
	path := filepath.Join(dir, p2p.IdentityFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}

	k2, err := p2p.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := peer.IDFromPrivateKey(k1)
	id2, _ := peer.IDFromPrivateKey(k2)
	if id1 != id2 {
		t.Fatalf("second load gave peer %s, first %s", id2, id1)
	}
	assertNoTempFiles(t, dir)
}

func TestLoadOrCreateIdentityRefuses(t *testing.T) {
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secpBytes, err := crypto.MarshalPrivateKey(secp)
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	goodBytes, err := crypto.MarshalPrivateKey(good)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"readable by others", goodBytes, 0o644, "chmod 600"},
		{"readable by group", goodBytes, 0o640, "chmod 600"},
		{"corrupt", []byte("not a key at all"), 0o600, "decoding identity key"},
		{"empty", nil, 0o600, "decoding identity key"},
		{"not Ed25519", secpBytes, 0o600, "want Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, p2p.IdentityFile)
			if err := os.WriteFile(path, tt.content, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // umask may have narrowed it
				t.Fatal(err)
			}
			_, err := p2p.LoadOrCreateIdentity(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			// The refused file is left as it was, never replaced.
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.content) {
				t.Fatal("the refused key file was changed")
			}
		})
	}
}

func TestLoadOrCreateIdentityUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where the key should be: reading fails with something
	// other than "not found", which must not lead to a fresh key.
	if err := os.Mkdir(filepath.Join(dir, p2p.IdentityFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := p2p.LoadOrCreateIdentity(dir); err == nil {
		t.Fatal("got a key with a directory in place of the key file")
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// TestEphemeralIdentity: a key made in memory is new at each call, writes
// nothing to the data dir, and a key file found there (planted by the
// host, or left from before) is refused, naming the file.
func TestEphemeralIdentity(t *testing.T) {
	dir := t.TempDir()
	k1, err := p2p.EphemeralIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := p2p.EphemeralIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Type() != crypto.Ed25519 {
		t.Fatalf("key type %v, want Ed25519", k1.Type())
	}
	if k1.Equals(k2) {
		t.Fatal("two ephemeral identities are the same key")
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("the data dir holds %d entries (%v), want none", len(ents), err)
	}

	if _, err := p2p.LoadOrCreateIdentity(dir); err != nil { // planted
		t.Fatal(err)
	}
	_, err = p2p.EphemeralIdentity(dir)
	if !errors.Is(err, p2p.ErrIdentityOnDisk) {
		t.Fatalf("err = %v, want ErrIdentityOnDisk", err)
	}
	if path := filepath.Join(dir, p2p.IdentityFile); !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove") {
		t.Errorf("the error %q does not name %s and say to remove it", err, path)
	}
}
