//go:build !cgo

package nvidia

import (
	"context"
	"errors"
)

// ErrNoNVML means this machine cannot collect NVIDIA evidence: the binary
// was built without cgo, or libnvidia-ml.so (the NVIDIA driver) is not
// installed. Retrying cannot help until the driver is installed.
var ErrNoNVML = errors.New("NVML unavailable: no NVIDIA driver (libnvidia-ml.so) or built without cgo")

// Collector gathers NVIDIA confidential-computing evidence through NVML.
// This binary was built without cgo, so it has no NVML: Collect always
// fails with ErrNoNVML. Build with CGO_ENABLED=1 to collect.
type Collector struct{}

// NewCollector returns a collector that always fails with ErrNoNVML (no
// cgo in this build).
func NewCollector() *Collector { return &Collector{} }

// Collect fails with ErrNoNVML: this binary was built without cgo.
func (c *Collector) Collect(ctx context.Context, nonce [32]byte) (*Evidence, error) {
	return nil, ErrNoNVML
}
