package registry

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// Getter runs get-methods; chain.Chain is one.
type Getter interface {
	RunGetMethod(ctx context.Context, addr *address.Address, method string, args ...any) ([]any, error)
}

// ErrChanging means the contract was updated on every attempt to read it; a
// later read will most likely succeed.
var ErrChanging = errors.New("registry changed while being read")

// Read reads the whole registry from the root contract at addr. It reads the
// sequence number first and last, and reads again if it changed in between,
// so the result is never a mix of two versions.
func Read(ctx context.Context, g Getter, addr *address.Address) (*Registry, error) {
	for range 3 {
		before, err := readSeqno(ctx, g, addr)
		if err != nil {
			return nil, err
		}
		r, err := readFields(ctx, g, addr)
		if err != nil {
			return nil, err
		}
		after, err := readSeqno(ctx, g, addr)
		if err != nil {
			return nil, err
		}
		if before == after {
			r.Seqno = after
			return r, nil
		}
	}
	return nil, ErrChanging
}

func readSeqno(ctx context.Context, g Getter, addr *address.Address) (uint32, error) {
	st, err := get(ctx, g, addr, "get_seqno", 1)
	if err != nil {
		return 0, err
	}
	n, err := uintValue(st[0], 32)
	if err != nil {
		return 0, fmt.Errorf("get_seqno: %w", err)
	}
	return uint32(n.Uint64()), nil
}

// get runs a get-method and checks it returned at least n values.
func get(ctx context.Context, g Getter, addr *address.Address, method string, n int) ([]any, error) {
	st, err := g.RunGetMethod(ctx, addr, method)
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", method, err)
	}
	if len(st) < n {
		return nil, fmt.Errorf("%s: returned %d values, want %d", method, len(st), n)
	}
	return st, nil
}

func readFields(ctx context.Context, g Getter, addr *address.Address) (*Registry, error) {
	var r Registry
	st, err := get(ctx, g, addr, "get_owner", 1)
	if err != nil {
		return nil, err
	}
	if r.Owner, err = addressValue(st[0]); err != nil {
		return nil, fmt.Errorf("get_owner: %w", err)
	}

	if st, err = get(ctx, g, addr, "get_network", 1); err != nil {
		return nil, err
	}
	if r.Network, err = stringValue(st[0]); err != nil {
		return nil, fmt.Errorf("get_network: %w", err)
	}
	if err := ValidateNetwork(r.Network); err != nil {
		return nil, fmt.Errorf("get_network: %w", err)
	}

	if st, err = get(ctx, g, addr, "get_protocol_version", 1); err != nil {
		return nil, err
	}
	v, err := uintValue(st[0], 16)
	if err != nil || v.Sign() == 0 {
		return nil, fmt.Errorf("get_protocol_version: %v is not in 1..%d (%v)", st[0], maxProtocolVersion, err)
	}
	r.ProtocolVersion = uint16(v.Uint64())

	if st, err = get(ctx, g, addr, "get_dev_attestation", 1); err != nil {
		return nil, err
	}
	if r.DevAttestation, err = boolValue(st[0]); err != nil {
		return nil, fmt.Errorf("get_dev_attestation: %w", err)
	}

	if st, err = get(ctx, g, addr, "get_fees", 4); err != nil {
		return nil, err
	}
	if r.Fees, err = feesValue(st); err != nil {
		return nil, fmt.Errorf("get_fees: %w", err)
	}

	if st, err = get(ctx, g, addr, "get_bootstrap", 1); err != nil {
		return nil, err
	}
	if r.Bootstrap, err = DecodeBootstrap(st[0]); err != nil {
		return nil, fmt.Errorf("get_bootstrap: %w", err)
	}
	if st, err = get(ctx, g, addr, "get_measurements", 1); err != nil {
		return nil, err
	}
	if r.Measurements, err = DecodeMeasurements(st[0]); err != nil {
		return nil, fmt.Errorf("get_measurements: %w", err)
	}
	if st, err = get(ctx, g, addr, "get_models", 1); err != nil {
		return nil, err
	}
	if r.Models, err = DecodeModels(st[0]); err != nil {
		return nil, fmt.Errorf("get_models: %w", err)
	}
	if st, err = get(ctx, g, addr, "get_min_tcb", 1); err != nil {
		return nil, err
	}
	if r.MinTCB, err = DecodeMinTCB(st[0]); err != nil {
		return nil, fmt.Errorf("get_min_tcb: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

func uintValue(v any, bits int) (*big.Int, error) {
	n, ok := v.(*big.Int)
	if !ok {
		return nil, fmt.Errorf("got %T, want an integer", v)
	}
	if n.Sign() < 0 || n.BitLen() > bits {
		return nil, fmt.Errorf("%v does not fit %d unsigned bits", n, bits)
	}
	return n, nil
}

func boolValue(v any) (bool, error) {
	n, ok := v.(*big.Int)
	if !ok {
		return false, fmt.Errorf("got %T, want an integer", v)
	}
	if n.IsInt64() {
		switch n.Int64() {
		case 0:
			return false, nil
		case -1:
			return true, nil
		}
	}
	return false, fmt.Errorf("%v is not a TVM boolean (0 or -1)", n)
}

// cellValue accepts a cell or a slice (get-methods may return either).
func cellValue(v any) (*cell.Cell, error) {
	switch c := v.(type) {
	case *cell.Cell:
		return c, nil
	case *cell.Slice:
		return c.ToCell()
	}
	return nil, fmt.Errorf("got %T, want a cell", v)
}

func addressValue(v any) (*address.Address, error) {
	c, err := cellValue(v)
	if err != nil {
		return nil, err
	}
	a, err := c.BeginParse().LoadAddr()
	if err != nil {
		return nil, fmt.Errorf("not an address: %w", err)
	}
	if a.Type() != address.StdAddress {
		return nil, errors.New("not a standard address")
	}
	return a, nil
}

// stringValue reads a string cell: whole bytes, no refs.
func stringValue(v any) (string, error) {
	c, err := cellValue(v)
	if err != nil {
		return "", err
	}
	return cellString(c)
}

func cellString(c *cell.Cell) (string, error) {
	if c.RefsNum() != 0 || c.BitsSize()%8 != 0 {
		return "", fmt.Errorf("string cell has %d bits and %d refs, want whole bytes and none", c.BitsSize(), c.RefsNum())
	}
	b, err := c.BeginParse().LoadSlice(c.BitsSize())
	if err != nil {
		return "", err
	}
	s := string(b)
	if err := checkString(s); err != nil {
		return "", err
	}
	return s, nil
}

func feesValue(st []any) (Fees, error) {
	names := []string{"proxy_fee_ppm", "min_deposit", "settlement_period", "dispute_timeout"}
	bits := []int{32, 120, 32, 32}
	var n [4]*big.Int
	for i := range n {
		v, err := uintValue(st[i], bits[i])
		if err != nil {
			return Fees{}, fmt.Errorf("%s: %w", names[i], err)
		}
		n[i] = v
	}
	f := Fees{
		ProxyFeePPM:      uint32(n[0].Uint64()),
		MinDeposit:       n[1],
		SettlementPeriod: time.Duration(n[2].Uint64()) * time.Second,
		DisputeTimeout:   time.Duration(n[3].Uint64()) * time.Second,
	}
	return f, f.Validate()
}

// entries loads a dictionary (nil for an empty one) whose values are one
// reference each, checking keys fit max entries.
func entries(v any, keyBits uint, max int) ([]entry, error) {
	if v == nil {
		return nil, nil
	}
	root, err := cellValue(v)
	if err != nil {
		return nil, err
	}
	kvs, err := root.AsDict(keyBits).LoadAll()
	if err != nil {
		return nil, fmt.Errorf("malformed dictionary: %w", err)
	}
	if len(kvs) > max {
		return nil, fmt.Errorf("%d entries, at most %d", len(kvs), max)
	}
	out := make([]entry, 0, len(kvs))
	for _, kv := range kvs {
		key, err := kv.Key.LoadBigUInt(keyBits)
		if err != nil {
			return nil, fmt.Errorf("malformed key: %w", err)
		}
		if kv.Value.BitsLeft() != 0 || kv.Value.RefsNum() != 1 {
			return nil, fmt.Errorf("entry %v: value has %d bits and %d refs, want one ref", key, kv.Value.BitsLeft(), kv.Value.RefsNum())
		}
		c, err := kv.Value.LoadRefCell()
		if err != nil {
			return nil, fmt.Errorf("entry %v: %w", key, err)
		}
		out = append(out, entry{key, c})
	}
	slices.SortFunc(out, func(a, b entry) int { return a.key.Cmp(b.key) })
	return out, nil
}

type entry struct {
	key   *big.Int
	value *cell.Cell
}

// indexed checks a small-integer-keyed list is keyed 0..max-1.
func indexed(e entry, max int) error {
	if !e.key.IsInt64() || e.key.Int64() >= int64(max) {
		return fmt.Errorf("key %v is not in 0..%d", e.key, max-1)
	}
	return nil
}

// DecodeBootstrap decodes the get_bootstrap result: a dictionary (or null) of
// index -> multiaddr string, in index order.
func DecodeBootstrap(v any) ([]peer.AddrInfo, error) {
	es, err := entries(v, 8, MaxBootstrap)
	if err != nil {
		return nil, err
	}
	out := make([]peer.AddrInfo, 0, len(es))
	for _, e := range es {
		if err := indexed(e, MaxBootstrap); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		s, err := cellString(e.value)
		if err != nil {
			return nil, fmt.Errorf("bootstrap[%v]: %w", e.key, err)
		}
		ai, err := parseBootstrap(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap[%v]: %w", e.key, err)
		}
		out = append(out, ai)
	}
	return out, nil
}

// DecodeMeasurements decodes the get_measurements result.
func DecodeMeasurements(v any) ([]Measurement, error) {
	es, err := entries(v, 8, MaxMeasurements)
	if err != nil {
		return nil, err
	}
	out := make([]Measurement, 0, len(es))
	for _, e := range es {
		if err := indexed(e, MaxMeasurements); err != nil {
			return nil, fmt.Errorf("measurements: %w", err)
		}
		m, err := measurementValue(e.value)
		if err != nil {
			return nil, fmt.Errorf("measurements[%v]: %w", e.key, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func measurementValue(c *cell.Cell) (Measurement, error) {
	var m Measurement
	const bits = 8 * measurementLen
	if c.BitsSize() != bits || c.RefsNum() != 2 {
		return m, fmt.Errorf("mrtd cell has %d bits and %d refs, want %d and 2", c.BitsSize(), c.RefsNum(), bits)
	}
	s := c.BeginParse()
	b, err := s.LoadSlice(bits)
	if err != nil {
		return m, err
	}
	copy(m.MRTD[:], b)
	for i := range 2 {
		r, err := s.LoadRefCell()
		if err != nil {
			return m, err
		}
		if r.BitsSize() != 2*bits || r.RefsNum() != 0 {
			return m, fmt.Errorf("rtmr%d/%d cell has %d bits and %d refs, want %d and 0", 2*i, 2*i+1, r.BitsSize(), r.RefsNum(), 2*bits)
		}
		rs := r.BeginParse()
		for j := range 2 {
			b, err := rs.LoadSlice(bits)
			if err != nil {
				return m, err
			}
			copy(m.RTMR[2*i+j][:], b)
		}
	}
	return m, nil
}

// DecodeModels decodes the get_models result: sha256 of weights -> name,
// in hash order.
func DecodeModels(v any) ([]Model, error) {
	es, err := entries(v, 256, MaxModels)
	if err != nil {
		return nil, err
	}
	out := make([]Model, 0, len(es))
	for _, e := range es {
		name, err := cellString(e.value)
		if err != nil {
			return nil, fmt.Errorf("models[%x]: %w", e.key, err)
		}
		var m Model
		e.key.FillBytes(m.Hash[:])
		m.Name = name
		out = append(out, m)
	}
	return out, nil
}

// DecodeMinTCB decodes the get_min_tcb result: a cell of exactly
// tee_tcb_svn:bits128 cpu_svn:bits128 pce_svn:uint16, no refs.
func DecodeMinTCB(v any) (TCB, error) {
	var t TCB
	c, err := cellValue(v)
	if err != nil {
		return t, err
	}
	if c.BitsSize() != minTCBBits || c.RefsNum() != 0 {
		return t, fmt.Errorf("min_tcb cell has %d bits and %d refs, want %d and 0", c.BitsSize(), c.RefsNum(), minTCBBits)
	}
	s := c.BeginParse()
	for _, out := range []*[tcbSVNLen]byte{&t.TEETCBSVN, &t.CPUSVN} {
		b, err := s.LoadSlice(8 * tcbSVNLen)
		if err != nil {
			return TCB{}, err
		}
		copy(out[:], b)
	}
	pce, err := s.LoadUInt(16)
	if err != nil {
		return TCB{}, err
	}
	t.PCESVN = uint16(pce)
	return t, nil
}
