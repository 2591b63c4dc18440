package p2p_test

import (
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/p2p"
)

func TestProtocolID(t *testing.T) {
	tests := []struct {
		network, name, version string
		want                   protocol.ID
	}{
		{"local", "attest", "1", "/cocoon/local/attest/1"},
		{"mainnet", "inference", "1", "/cocoon/mainnet/inference/1"},
		{"testnet", "models", "2.1.0", "/cocoon/testnet/models/2.1.0"},
	}
	for _, tt := range tests {
		if got := p2p.ProtocolID(tt.network, tt.name, tt.version); got != tt.want {
			t.Errorf("ProtocolID(%q, %q, %q) = %q, want %q", tt.network, tt.name, tt.version, got, tt.want)
		}
	}
	if p2p.ProtocolID("local", "attest", "1") == p2p.ProtocolID("testnet", "attest", "1") {
		t.Error("two networks share a protocol ID")
	}
}

func TestValidNetwork(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"local", true},
		{"mainnet", true},
		{"testnet", true},
		{"a", true},
		{"dev-2", true},
		{"a" + strings.Repeat("b", 31), true},  // 32
		{"a" + strings.Repeat("b", 32), false}, // 33
		{"", false},
		{"Local", false},
		{"2net", false},
		{"-net", false},
		{"my_net", false},
		{"my net", false},
		{"a/b", false},
		{"local\n", false},
		{"lökal", false},
	}
	for _, tt := range tests {
		err := p2p.ValidNetwork(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidNetwork(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
