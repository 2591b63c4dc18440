//go:build !cgo

package nvidia_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cocoon-mesh/cocoon/attest/nvidia"
)

// TestCollectWithoutCgo: built without cgo, Collect says there is no NVML.
func TestCollectWithoutCgo(t *testing.T) {
	_, err := nvidia.NewCollector().Collect(context.Background(), nonceFor(t, 1))
	if !errors.Is(err, nvidia.ErrNoNVML) {
		t.Fatalf("err = %v, want ErrNoNVML", err)
	}
}
