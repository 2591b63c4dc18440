package nvidia

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The attestation report of a Hopper GPU (H100, H200) in CC mode is the
// SPDM 1.1 transcript of one signed GET_MEASUREMENTS exchange (DMTF
// DSP0274 1.1, and NVIDIA's nvtrust local verifier which parses the same
// bytes):
//
//	request, 37 bytes:
//	  0  SPDMVersion 0x11 | 1 RequestResponseCode 0xE0 | 2 Param1 | 3 Param2
//	  4  Nonce (32)  <- the nonce passed to nvmlDeviceGetConfComputeGpuAttestationReport
//	  36 SlotIDParam
//	response:
//	  0  SPDMVersion 0x11 | 1 RequestResponseCode 0x60 | 2 Param1 | 3 Param2
//	  4  NumberOfBlocks | 5 MeasurementRecordLength L1 (3, little-endian)
//	  8  MeasurementRecord (L1): blocks of Index | Spec | Size (2, LE) | Measurement
//	  8+L1  Nonce (32, chosen by the GPU)
//	  40+L1 OpaqueLength L2 (2, LE) | 42+L1 OpaqueData (L2)
//	  42+L1+L2 Signature (96: ECDSA P-384 r||s)
//
// The signature is over SHA-384 of everything before it (request and
// response), by the key of the leaf of the GPU's attestation certificate
// chain. SPDM 1.2 and later (which prefix a VCA transcript) are not
// parsed.
const (
	spdmVersion11       = 0x11
	spdmGetMeasurements = 0xE0
	spdmMeasurements    = 0x60
	requestLen          = 37
	nonceLen            = 32
	// SignatureLen is the length of the P-384 signature ending a Hopper report.
	SignatureLen = 96
	dmtfSpec     = 1 // MeasurementSpecification bit 0: DMTF
)

// errReport is wrapped by ParseReport's errors; Verifier reports them as
// ErrReport.
var errReport = errors.New("attestation report")

// Report is a parsed attestation report.
type Report struct {
	// Nonce is the requester's nonce from the GET_MEASUREMENTS request:
	// the one the collector asked for, covered by the signature.
	Nonce [32]byte
	// ResponderNonce is the GPU's own nonce from the response.
	ResponderNonce [32]byte
	// Measurements maps a measurement block index to its value (DMTF
	// format, the value without its type and size header).
	Measurements map[uint8][]byte
	// Opaque is the response's opaque data (NVIDIA's driver and VBIOS
	// versions and similar, as type-length-value fields); not interpreted.
	Opaque []byte
	// Signed is the part of the report the signature covers and Signature
	// the raw r||s signature that ends it.
	Signed    []byte
	Signature []byte
}

// ParseReport parses a Hopper attestation report (see the layout above).
// It checks versions, codes and that every length adds up to exactly
// len(b); it checks no signature.
func ParseReport(b []byte) (*Report, error) {
	if len(b) < requestLen+8 {
		return nil, fmt.Errorf("%w: %d bytes, too short", errReport, len(b))
	}
	req, resp := b[:requestLen], b[requestLen:]
	if req[0] != spdmVersion11 || resp[0] != spdmVersion11 {
		return nil, fmt.Errorf("%w: SPDM version %#x/%#x, want 0x11", errReport, req[0], resp[0])
	}
	if req[1] != spdmGetMeasurements || resp[1] != spdmMeasurements {
		return nil, fmt.Errorf("%w: SPDM codes %#x/%#x, want GET_MEASUREMENTS/MEASUREMENTS", errReport, req[1], resp[1])
	}
	r := &Report{Measurements: map[uint8][]byte{}}
	copy(r.Nonce[:], req[4:4+nonceLen])
	blocks := int(resp[4])
	l1 := int(resp[5]) | int(resp[6])<<8 | int(resp[7])<<16
	rest := resp[8:]
	if l1 > len(rest) {
		return nil, fmt.Errorf("%w: measurement record of %d bytes overruns the report", errReport, l1)
	}
	record, rest := rest[:l1], rest[l1:]
	if err := parseRecord(record, blocks, r.Measurements); err != nil {
		return nil, err
	}
	if len(rest) < nonceLen+2 {
		return nil, fmt.Errorf("%w: truncated after the measurement record", errReport)
	}
	copy(r.ResponderNonce[:], rest[:nonceLen])
	rest = rest[nonceLen:]
	l2 := int(binary.LittleEndian.Uint16(rest))
	rest = rest[2:]
	if l2 > len(rest) {
		return nil, fmt.Errorf("%w: opaque data of %d bytes overruns the report", errReport, l2)
	}
	r.Opaque, rest = rest[:l2], rest[l2:]
	if len(rest) != SignatureLen {
		return nil, fmt.Errorf("%w: %d bytes after the opaque data, want a %d-byte signature", errReport, len(rest), SignatureLen)
	}
	r.Signed, r.Signature = b[:len(b)-SignatureLen], rest
	return r, nil
}

// parseRecord reads n DMTF measurement blocks that must fill rec exactly.
func parseRecord(rec []byte, n int, into map[uint8][]byte) error {
	for i := 0; i < n; i++ {
		if len(rec) < 4 {
			return fmt.Errorf("%w: measurement block %d truncated", errReport, i)
		}
		index, spec, size := rec[0], rec[1], int(binary.LittleEndian.Uint16(rec[2:]))
		rec = rec[4:]
		if size > len(rec) || size < 3 {
			return fmt.Errorf("%w: measurement block %d of %d bytes", errReport, index, size)
		}
		if spec != dmtfSpec {
			return fmt.Errorf("%w: measurement block %d not in DMTF format", errReport, index)
		}
		m := rec[:size]
		rec = rec[size:]
		vsize := int(binary.LittleEndian.Uint16(m[1:]))
		if vsize != size-3 {
			return fmt.Errorf("%w: measurement block %d value of %d bytes in %d", errReport, index, vsize, size-3)
		}
		if _, dup := into[index]; dup {
			return fmt.Errorf("%w: measurement block %d twice", errReport, index)
		}
		into[index] = m[3:]
	}
	if len(rec) != 0 {
		return fmt.Errorf("%w: %d bytes after %d measurement blocks", errReport, len(rec), n)
	}
	return nil
}
