// Package registry reads a network's root contract: the proxies to bootstrap
// the DHT from, the TEE images and models that are allowed, whether dev
// attestation is accepted, and the fee and settlement parameters.
//
// The contract's layout, messages and bounds are in docs/registry.md. This
// package builds the contract's initial storage, builds the owner's update
// messages, and decodes the get-methods into a Registry, refusing malformed
// entries with errors that name them. A Reader keeps the registry fresh.
package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/xssnick/tonutils-go/address"
)

// Bounds, the same as the contract's (docs/registry.md).
const (
	MaxNetworkLen      = 32
	MaxBootstrap       = 16
	MaxMeasurements    = 16
	MaxModels          = 64
	MaxStringLen       = 127 // bytes in one cell
	MaxProxyFeePPM     = 200_000
	MinPeriod          = 60 * time.Second
	MaxPeriod          = 30 * 24 * time.Hour
	measurementLen     = 48 // bytes in MRTD and each RTMR (SHA-384)
	tcbSVNLen          = 16 // bytes in TEE_TCB_SVN and CPUSVN
	minTCBBits         = 8*2*tcbSVNLen + 16
	maxProtocolVersion = 65535
)

// MaxMinDeposit is the largest min_deposit the contract accepts: 1,000,000 TON.
var MaxMinDeposit = big.NewInt(1_000_000_000_000_000)

// Registry is the decoded root contract.
type Registry struct {
	Owner *address.Address
	// Seqno goes up by one on every accepted update.
	Seqno           uint32
	Network         string
	ProtocolVersion uint16
	// DevAttestation says whether dev (software-only) attestation is
	// accepted. Only ever true on the network "local".
	DevAttestation bool
	Fees           Fees
	// Bootstrap holds the proxies to bootstrap the DHT from, in order.
	Bootstrap    []peer.AddrInfo
	Measurements []Measurement
	Models       []Model
	// MinTCB is the minimum TDX TCB a peer's quote must show; the zero
	// value accepts any.
	MinTCB TCB
}

// Fees are the network's fee and settlement parameters.
type Fees struct {
	// ProxyFeePPM is the largest fee a proxy may add, in parts per million.
	ProxyFeePPM uint32
	// MinDeposit is the smallest payment-channel deposit, in nanoTON.
	MinDeposit       *big.Int
	SettlementPeriod time.Duration
	DisputeTimeout   time.Duration
}

// Measurement is an allowed TEE image: its TDX MRTD and runtime measurement
// registers.
type Measurement struct {
	MRTD [measurementLen]byte
	RTMR [4][measurementLen]byte
}

// TCB is a minimum of TDX security versions, compared component by
// component: each byte of TEETCBSVN and CPUSVN, and PCESVN, must be at
// least the minimum's. The zero value accepts any.
type TCB struct {
	// TEETCBSVN is the TD report's TEE_TCB_SVN (TDX module and SEAM loader
	// versions).
	TEETCBSVN [tcbSVNLen]byte
	// CPUSVN is the 16 SGX TCB components of the PCK certificate
	// (microcode, BIOS ACMs).
	CPUSVN [tcbSVNLen]byte
	// PCESVN is the provisioning certification enclave's version from the
	// PCK certificate.
	PCESVN uint16
}

// IsZero reports whether t accepts any TCB.
func (t TCB) IsZero() bool { return t == TCB{} }

// String prints t as the contract's get_min_tcb reads: hex SVNs, PCESVN
// in decimal.
func (t TCB) String() string {
	return fmt.Sprintf("tee_tcb_svn=%x cpu_svn=%x pce_svn=%d", t.TEETCBSVN, t.CPUSVN, t.PCESVN)
}

// ParseSVN parses a TEE_TCB_SVN or CPUSVN as an operator writes it: 32
// hex digits (16 bytes), with or without 0x. The empty string is all zero.
func ParseSVN(s string) ([tcbSVNLen]byte, error) {
	var out [tcbSVNLen]byte
	if s == "" {
		return out, nil
	}
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		return out, fmt.Errorf("%q is not hex: %w", s, err)
	}
	if len(b) != tcbSVNLen {
		return out, fmt.Errorf("%q is %d bytes, want %d (%d hex digits)", s, len(b), tcbSVNLen, 2*tcbSVNLen)
	}
	copy(out[:], b)
	return out, nil
}

// ParseMeasurement parses a TD image as an operator writes it: MRTD and
// RTMR0-3, 96 hex digits (48 bytes) each, joined by colons.
func ParseMeasurement(s string) (Measurement, error) {
	var m Measurement
	parts := strings.Split(s, ":")
	if len(parts) != 5 {
		return m, fmt.Errorf("%d colon-separated values, want 5: MRTD:RTMR0:RTMR1:RTMR2:RTMR3", len(parts))
	}
	regs := []*[measurementLen]byte{&m.MRTD, &m.RTMR[0], &m.RTMR[1], &m.RTMR[2], &m.RTMR[3]}
	names := []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"}
	for i, p := range parts {
		b, err := hex.DecodeString(strings.TrimPrefix(p, "0x"))
		if err != nil {
			return Measurement{}, fmt.Errorf("%s: %q is not hex: %w", names[i], p, err)
		}
		if len(b) != measurementLen {
			return Measurement{}, fmt.Errorf("%s: %d bytes, want %d (%d hex digits)", names[i], len(b), measurementLen, 2*measurementLen)
		}
		copy(regs[i][:], b)
	}
	return m, nil
}

// Model is an allowed model: the SHA-256 of its weights and its name.
type Model struct {
	Hash [sha256.Size]byte
	Name string
}

// DefaultFees are the fees a new local network starts with.
func DefaultFees() Fees {
	return Fees{
		ProxyFeePPM:      50_000,
		MinDeposit:       big.NewInt(1_000_000_000), // 1 TON
		SettlementPeriod: time.Hour,
		DisputeTimeout:   time.Hour,
	}
}

// Validate checks every bound the contract checks, and names the field that
// breaks one.
func (r *Registry) Validate() error {
	if r.Owner == nil || r.Owner.Type() != address.StdAddress {
		return errors.New("owner: must be a standard address")
	}
	if err := ValidateNetwork(r.Network); err != nil {
		return err
	}
	if r.ProtocolVersion == 0 {
		return errors.New("protocol_version: must be at least 1")
	}
	if r.DevAttestation && r.Network != "local" {
		return fmt.Errorf("dev_attestation: refused on network %q (only on \"local\")", r.Network)
	}
	if err := r.Fees.Validate(); err != nil {
		return err
	}
	if len(r.Bootstrap) > MaxBootstrap {
		return fmt.Errorf("bootstrap: %d entries, at most %d", len(r.Bootstrap), MaxBootstrap)
	}
	for i, ai := range r.Bootstrap {
		if _, err := bootstrapString(ai); err != nil {
			return fmt.Errorf("bootstrap[%d]: %w", i, err)
		}
	}
	if len(r.Measurements) > MaxMeasurements {
		return fmt.Errorf("measurements: %d entries, at most %d", len(r.Measurements), MaxMeasurements)
	}
	if len(r.Models) > MaxModels {
		return fmt.Errorf("models: %d entries, at most %d", len(r.Models), MaxModels)
	}
	seen := make(map[[sha256.Size]byte]bool, len(r.Models))
	for i, m := range r.Models {
		if err := checkString(m.Name); err != nil {
			return fmt.Errorf("models[%d] %q: name: %w", i, m.Name, err)
		}
		if seen[m.Hash] {
			return fmt.Errorf("models[%d] %q: hash %x listed twice", i, m.Name, m.Hash)
		}
		seen[m.Hash] = true
	}
	return nil
}

// Validate checks the fee bounds.
func (f Fees) Validate() error {
	switch {
	case f.ProxyFeePPM > MaxProxyFeePPM:
		return fmt.Errorf("fees.proxy_fee_ppm: %d is over %d", f.ProxyFeePPM, MaxProxyFeePPM)
	case f.MinDeposit == nil || f.MinDeposit.Sign() < 0 || f.MinDeposit.Cmp(MaxMinDeposit) > 0:
		return fmt.Errorf("fees.min_deposit: %v is not in 0..%v nanoTON", f.MinDeposit, MaxMinDeposit)
	}
	if err := checkPeriod(f.SettlementPeriod); err != nil {
		return fmt.Errorf("fees.settlement_period: %w", err)
	}
	if err := checkPeriod(f.DisputeTimeout); err != nil {
		return fmt.Errorf("fees.dispute_timeout: %w", err)
	}
	return nil
}

func checkPeriod(d time.Duration) error {
	if d < MinPeriod || d > MaxPeriod || d%time.Second != 0 {
		return fmt.Errorf("%v is not whole seconds in %v..%v", d, MinPeriod, MaxPeriod)
	}
	return nil
}

// ValidateNetwork checks a network name: 1..32 bytes of a-z, 0-9 and '-'.
func ValidateNetwork(name string) error {
	if name == "" || len(name) > MaxNetworkLen {
		return fmt.Errorf("network: %q must be 1..%d bytes", name, MaxNetworkLen)
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return fmt.Errorf("network: %q may hold only a-z, 0-9 and '-'", name)
		}
	}
	return nil
}

func checkString(s string) error {
	if s == "" || len(s) > MaxStringLen {
		return fmt.Errorf("%d bytes, must be 1..%d", len(s), MaxStringLen)
	}
	return nil
}

// bootstrapString is the one multiaddr a bootstrap entry holds: the proxy's
// first address with its peer ID.
func bootstrapString(ai peer.AddrInfo) (string, error) {
	if len(ai.Addrs) != 1 {
		return "", fmt.Errorf("%d addresses, want exactly one", len(ai.Addrs))
	}
	addrs, err := peer.AddrInfoToP2pAddrs(&ai)
	if err != nil {
		return "", err
	}
	s := addrs[0].String()
	if err := checkString(s); err != nil {
		return "", fmt.Errorf("%s: %w", s, err)
	}
	return s, nil
}

// parseBootstrap parses one bootstrap entry; it must name its peer.
func parseBootstrap(s string) (peer.AddrInfo, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%q is not a multiaddr: %w", s, err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%q has no /p2p/ peer ID: %w", s, err)
	}
	if len(ai.Addrs) == 0 {
		return peer.AddrInfo{}, fmt.Errorf("%q has no transport address", s)
	}
	return *ai, nil
}

// String summarises the registry for logs.
func (r *Registry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "network=%s seqno=%d version=%d bootstrap=%d measurements=%d models=%d dev_attestation=%t",
		r.Network, r.Seqno, r.ProtocolVersion, len(r.Bootstrap), len(r.Measurements), len(r.Models), r.DevAttestation)
	if !r.MinTCB.IsZero() {
		fmt.Fprintf(&b, " min_tcb=[%s]", r.MinTCB)
	}
	return b.String()
}
