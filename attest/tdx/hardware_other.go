//go:build !linux

package tdx

import "fmt"

// OpenHardware reports ErrNoTDX: TDX guests run Linux.
func OpenHardware() (QuoteProvider, error) {
	return nil, fmt.Errorf("%w: TDX quotes need a Linux guest", ErrNoTDX)
}
