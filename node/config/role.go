package config

import "fmt"

// Role is what a node does in the network. The zero value is invalid.
type Role uint8

// The roles.
const (
	RoleWorker Role = iota + 1 // serves models, earns
	RoleProxy                  // routes requests, relays payments
	RoleClient                 // exposes the OpenAI API locally, pays
)

func (r Role) String() string {
	switch r {
	case RoleWorker:
		return "worker"
	case RoleProxy:
		return "proxy"
	case RoleClient:
		return "client"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole parses "worker", "proxy" or "client".
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{RoleWorker, RoleProxy, RoleClient} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q: want worker, proxy or client", s)
}
