//go:build linux

package tdx

import (
	"fmt"

	"github.com/google/go-tdx-guest/client"
)

// DevicePath is the TDX guest device, the older interface to quotes.
const DevicePath = "/dev/tdx_guest"

// OpenHardware finds this machine's TDX quote interface: configfs-tsm
// (/sys/kernel/config/tsm/report, Linux 6.7 and later) first, then the
// /dev/tdx_guest device. Without either it returns an error wrapping
// ErrNoTDX that says what was tried.
func OpenHardware() (QuoteProvider, error) {
	cfs := &client.LinuxConfigFsQuoteProvider{}
	cfsErr := cfs.IsSupported()
	if cfsErr == nil {
		return configfsProvider{cfs}, nil
	}
	dev := &client.LinuxDevice{}
	devErr := dev.Open(DevicePath)
	if devErr == nil {
		if err := dev.Close(); err != nil {
			return nil, fmt.Errorf("closing %s: %w", DevicePath, err)
		}
		return deviceProvider{path: DevicePath}, nil
	}
	return nil, fmt.Errorf("%w: tried configfs-tsm (%v) and %s (%v)", ErrNoTDX, cfsErr, DevicePath, devErr)
}

type configfsProvider struct {
	p *client.LinuxConfigFsQuoteProvider
}

func (c configfsProvider) Quote(reportData [64]byte) ([]byte, error) {
	q, err := c.p.GetRawQuote(reportData)
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm: %w", err)
	}
	return q, nil
}

// deviceProvider opens the device for each quote, as quotes are made once
// per validity window.
type deviceProvider struct{ path string }

func (d deviceProvider) Quote(reportData [64]byte) ([]byte, error) {
	dev := &client.LinuxDevice{}
	if err := dev.Open(d.path); err != nil {
		return nil, err
	}
	defer dev.Close()
	q, err := client.GetRawQuote(dev, reportData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.path, err)
	}
	return q, nil
}
