package registry

import (
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// Op codes of the owner's update messages (docs/registry.md).
const (
	OpSetBootstrap       = 0x636f0001
	OpSetMeasurements    = 0x636f0002
	OpSetModels          = 0x636f0003
	OpSetDevAttestation  = 0x636f0004
	OpSetFees            = 0x636f0005
	OpSetProtocolVersion = 0x636f0006
	OpTransferOwnership  = 0x636f0007
	OpSetMinTCB          = 0x636f0008
)

// Cell builds the contract's initial storage from r, which must be valid.
func (r *Registry) Cell() (*cell.Cell, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	fees, err := r.Fees.cell()
	if err != nil {
		return nil, err
	}
	boot, err := bootstrapDict(r.Bootstrap)
	if err != nil {
		return nil, err
	}
	meas, err := measurementDict(r.Measurements)
	if err != nil {
		return nil, err
	}
	models, err := modelDict(r.Models)
	if err != nil {
		return nil, err
	}
	lists := cell.BeginCell().MustStoreDict(boot).MustStoreDict(meas).MustStoreDict(models).EndCell()
	return cell.BeginCell().
		MustStoreAddr(r.Owner).
		MustStoreUInt(uint64(r.Seqno), 32).
		MustStoreUInt(uint64(r.ProtocolVersion), 16).
		MustStoreBoolBit(r.DevAttestation).
		MustStoreRef(stringCell(r.Network)).
		MustStoreRef(fees).
		MustStoreRef(lists).
		MustStoreRef(r.MinTCB.cell()).
		EndCell(), nil
}

// cell is the contract's MinTcb: tee_tcb_svn:bits128 cpu_svn:bits128
// pce_svn:uint16.
func (t TCB) cell() *cell.Cell {
	return cell.BeginCell().
		MustStoreSlice(t.TEETCBSVN[:], 8*tcbSVNLen).
		MustStoreSlice(t.CPUSVN[:], 8*tcbSVNLen).
		MustStoreUInt(uint64(t.PCESVN), 16).
		EndCell()
}

func stringCell(s string) *cell.Cell {
	return cell.BeginCell().MustStoreSlice([]byte(s), uint(8*len(s))).EndCell()
}

func (f Fees) cell() (*cell.Cell, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return cell.BeginCell().
		MustStoreUInt(uint64(f.ProxyFeePPM), 32).
		MustStoreBigCoins(f.MinDeposit).
		MustStoreUInt(uint64(f.SettlementPeriod/time.Second), 32).
		MustStoreUInt(uint64(f.DisputeTimeout/time.Second), 32).
		EndCell(), nil
}

func bootstrapDict(list []peer.AddrInfo) (*cell.Dictionary, error) {
	if len(list) > MaxBootstrap {
		return nil, fmt.Errorf("bootstrap: %d entries, at most %d", len(list), MaxBootstrap)
	}
	d := cell.NewDict(8)
	for i, ai := range list {
		s, err := bootstrapString(ai)
		if err != nil {
			return nil, fmt.Errorf("bootstrap[%d]: %w", i, err)
		}
		if err := d.SetIntKey(big.NewInt(int64(i)), refValue(stringCell(s))); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func measurementDict(list []Measurement) (*cell.Dictionary, error) {
	if len(list) > MaxMeasurements {
		return nil, fmt.Errorf("measurements: %d entries, at most %d", len(list), MaxMeasurements)
	}
	d := cell.NewDict(8)
	for i, m := range list {
		pair := func(a, b [measurementLen]byte) *cell.Cell {
			return cell.BeginCell().MustStoreSlice(a[:], 8*measurementLen).MustStoreSlice(b[:], 8*measurementLen).EndCell()
		}
		v := cell.BeginCell().
			MustStoreSlice(m.MRTD[:], 8*measurementLen).
			MustStoreRef(pair(m.RTMR[0], m.RTMR[1])).
			MustStoreRef(pair(m.RTMR[2], m.RTMR[3])).
			EndCell()
		if err := d.SetIntKey(big.NewInt(int64(i)), refValue(v)); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func modelDict(list []Model) (*cell.Dictionary, error) {
	if len(list) > MaxModels {
		return nil, fmt.Errorf("models: %d entries, at most %d", len(list), MaxModels)
	}
	d := cell.NewDict(256)
	for i, m := range list {
		if err := checkString(m.Name); err != nil {
			return nil, fmt.Errorf("models[%d] %q: name: %w", i, m.Name, err)
		}
		if err := d.SetIntKey(new(big.Int).SetBytes(m.Hash[:]), refValue(stringCell(m.Name))); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// refValue is a dictionary value that is one reference (^Cell).
func refValue(c *cell.Cell) *cell.Cell { return cell.BeginCell().MustStoreRef(c).EndCell() }

func header(op uint32, queryID uint64) *cell.Builder {
	return cell.BeginCell().MustStoreUInt(uint64(op), 32).MustStoreUInt(queryID, 64)
}

// SetBootstrap builds the owner's message replacing the bootstrap list.
func SetBootstrap(queryID uint64, list []peer.AddrInfo) (*cell.Cell, error) {
	d, err := bootstrapDict(list)
	if err != nil {
		return nil, err
	}
	return header(OpSetBootstrap, queryID).MustStoreDict(d).EndCell(), nil
}

// SetMeasurements builds the owner's message replacing the allowed TEE images.
func SetMeasurements(queryID uint64, list []Measurement) (*cell.Cell, error) {
	d, err := measurementDict(list)
	if err != nil {
		return nil, err
	}
	return header(OpSetMeasurements, queryID).MustStoreDict(d).EndCell(), nil
}

// SetModels builds the owner's message replacing the allowed models.
func SetModels(queryID uint64, list []Model) (*cell.Cell, error) {
	d, err := modelDict(list)
	if err != nil {
		return nil, err
	}
	return header(OpSetModels, queryID).MustStoreDict(d).EndCell(), nil
}

// SetDevAttestation builds the owner's message turning dev attestation on or off.
func SetDevAttestation(queryID uint64, allow bool) *cell.Cell {
	return header(OpSetDevAttestation, queryID).MustStoreBoolBit(allow).EndCell()
}

// SetFees builds the owner's message replacing the fee parameters.
func SetFees(queryID uint64, f Fees) (*cell.Cell, error) {
	c, err := f.cell()
	if err != nil {
		return nil, err
	}
	return header(OpSetFees, queryID).MustStoreRef(c).EndCell(), nil
}

// SetProtocolVersion builds the owner's message changing the protocol version.
func SetProtocolVersion(queryID uint64, version uint16) (*cell.Cell, error) {
	if version == 0 {
		return nil, errors.New("protocol_version: must be at least 1")
	}
	return header(OpSetProtocolVersion, queryID).MustStoreUInt(uint64(version), 16).EndCell(), nil
}

// TransferOwnership builds the owner's message handing the contract to a new owner.
func TransferOwnership(queryID uint64, newOwner *address.Address) (*cell.Cell, error) {
	if newOwner == nil || newOwner.Type() != address.StdAddress {
		return nil, errors.New("new owner: must be a standard address")
	}
	return header(OpTransferOwnership, queryID).MustStoreAddr(newOwner).EndCell(), nil
}

// SetMinTCB builds the owner's message replacing the minimum TDX TCB; the
// zero TCB accepts any.
func SetMinTCB(queryID uint64, t TCB) *cell.Cell {
	return header(OpSetMinTCB, queryID).MustStoreRef(t.cell()).EndCell()
}
