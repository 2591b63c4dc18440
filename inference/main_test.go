package inference_test

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/host"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hostPair starts two loopback hosts, the client connected to the server,
// and a Service on the server; all closed at cleanup.
func hostPair(t *testing.T) (server, client host.Host, sv *p2p.Service) {
	t.Helper()
	server, client = p2ptest.NewHost(t), p2ptest.NewHost(t)
	sv = p2p.NewService(server, logtest.Discard)
	t.Cleanup(sv.Close)
	p2ptest.Connect(t, client, server)
	return server, client, sv
}
