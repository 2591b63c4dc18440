//go:build !cgo

package main

import (
	"errors"
	"io"
)

func probe(io.Writer) error {
	return errors.New("built without cgo: no NVML; build with CGO_ENABLED=1")
}
