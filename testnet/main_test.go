package testnet_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every node a test starts is closed by its cleanup; nothing may outlive it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
