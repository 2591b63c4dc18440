//go:build cgo

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// probe times NVML's start and prints the driver and GPU count.
func probe(w io.Writer) error {
	lib := nvml.New()
	start := time.Now()
	ret := lib.Init()
	took := time.Since(start)
	if ret != nvml.SUCCESS {
		return fmt.Errorf("nvml init after %s: %v", took.Round(time.Microsecond), ret)
	}
	defer lib.Shutdown()
	driver, _ := lib.SystemGetDriverVersion()
	n, _ := lib.DeviceGetCount()
	fmt.Fprintf(w, "nvml init: %s (driver %s, %d GPUs)\n", took.Round(time.Microsecond), driver, n)
	return nil
}
