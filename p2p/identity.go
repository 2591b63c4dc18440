package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cocoon-mesh/cocoon/internal/secret"
)

// IdentityFile is the name of the node's key file inside its data dir.
const IdentityFile = "identity.key"

// LoadOrCreateIdentity returns the Ed25519 libp2p key kept in dataDir,
// creating it (mode 0600, written atomically) on first use. A key file
// readable by group or others is refused rather than silently trusted.
func LoadOrCreateIdentity(dataDir string) (crypto.PrivKey, error) {
	path := filepath.Join(dataDir, IdentityFile)
	b, err := secret.Read(path, "identity key")
	switch {
	case err == nil:
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("decoding identity key %s: %w", path, err)
		}
		if k.Type() != crypto.Ed25519 {
			return nil, fmt.Errorf("identity key %s is %v, want Ed25519", path, k.Type())
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating identity key: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding identity key: %w", err)
	}
	if err := secret.Write(path, b); err != nil {
		return nil, fmt.Errorf("writing identity key: %w", err)
	}
	return k, nil
}

// ErrIdentityOnDisk is EphemeralIdentity's error when dataDir holds an
// identity key: a key the host can read or plant is not the one a TEE's
// evidence may bind. Retrying cannot help; the operator removes the file.
var ErrIdentityOnDisk = errors.New("an identity key is on disk")

// EphemeralIdentity makes a new Ed25519 libp2p key in memory, for a node
// whose evidence binds its key to a TEE (attest.issuer tdx): the key never
// touches dataDir, which the host outside the TD reads and writes, and the
// node gets a new peer ID at each start. It refuses to run beside an
// identity key file in dataDir (ErrIdentityOnDisk): one planted there by
// the host, or left from before, would say that the node's identity lives
// on disk.
func EphemeralIdentity(dataDir string) (crypto.PrivKey, error) {
	path := filepath.Join(dataDir, IdentityFile)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("%w: %s: with attest.issuer tdx the libp2p key the TDX quote binds is made in memory at each start, so that the host cannot read or plant it; remove %s (the wallet and ledger beside it stay)", ErrIdentityOnDisk, path, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checking for an identity key on disk: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating identity key: %w", err)
	}
	return k, nil
}
