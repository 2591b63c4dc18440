package p2p

import (
	"fmt"
	"regexp"

	"github.com/libp2p/go-libp2p/core/protocol"
)

var networkName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ValidNetwork checks a network name: lowercase letters, digits and dashes,
// starting with a letter, at most 32 characters.
func ValidNetwork(name string) error {
	if !networkName.MatchString(name) {
		return fmt.Errorf("network name %q: want lowercase letters, digits and dashes, starting with a letter, at most 32", name)
	}
	return nil
}

// ProtocolID is /cocoon/<network>/<name>/<version>. Carrying the network in
// every protocol ID means nodes of different networks can never talk by
// accident: multistream negotiation fails before any byte is exchanged.
func ProtocolID(network, name, version string) protocol.ID {
	return protocol.ID("/cocoon/" + network + "/" + name + "/" + version)
}
