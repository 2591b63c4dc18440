package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
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
