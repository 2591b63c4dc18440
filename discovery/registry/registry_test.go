package registry_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	contractAddr = address.MustParseRawAddr("0:" + strings.Repeat("ab", 32))
	ownerAddr    = address.MustParseRawAddr("0:" + strings.Repeat("01", 32))
)

func proxyInfo(t testing.TB, seed byte, addr string) peer.AddrInfo {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(strings.NewReader(strings.Repeat(string(rune('a'+seed)), 64)))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast(addr)}}
}

func sample(t testing.TB) *registry.Registry {
	var m registry.Measurement
	for i := range m.MRTD {
		m.MRTD[i] = byte(i)
	}
	for r := range m.RTMR {
		for i := range m.RTMR[r] {
			m.RTMR[r][i] = byte(16*r + i)
		}
	}
	return &registry.Registry{
		Owner:           ownerAddr,
		Seqno:           0,
		Network:         "local",
		ProtocolVersion: 1,
		DevAttestation:  true,
		Fees:            registry.DefaultFees(),
		Bootstrap: []peer.AddrInfo{
			proxyInfo(t, 1, "/ip4/127.0.0.1/tcp/4001"),
			proxyInfo(t, 2, "/ip4/127.0.0.1/udp/4002/quic-v1"),
		},
		Measurements: []registry.Measurement{m},
		Models: []registry.Model{
			{Hash: sha256.Sum256([]byte("qwen")), Name: "qwen3-8b"},
			{Hash: sha256.Sum256([]byte("llama")), Name: "llama-3.1-8b"},
		},
		MinTCB: registry.TCB{TEETCBSVN: [16]byte{3, 0, 4}, CPUSVN: [16]byte{5, 5, 2, 2, 3, 1, 0, 3}, PCESVN: 11},
	}
}

// fakeContract answers the root contract's get-methods by parsing a storage
// cell, as the contract does. Results can be overridden per method.
type fakeContract struct {
	mu       sync.Mutex
	data     *cell.Cell
	override map[string][]any
	errs     map[string]error
	onGet    func(method string) // called before answering, without mu held
}

func newFake(t testing.TB, r *registry.Registry) *fakeContract {
	t.Helper()
	c, err := r.Cell()
	if err != nil {
		t.Fatal(err)
	}
	return &fakeContract{data: c, override: map[string][]any{}, errs: map[string]error{}}
}

func (f *fakeContract) set(r *registry.Registry) {
	c, err := r.Cell()
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	f.data = c
	f.mu.Unlock()
}

func (f *fakeContract) RunGetMethod(_ context.Context, addr *address.Address, method string, _ ...any) ([]any, error) {
	if f.onGet != nil {
		f.onGet(method)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !addr.Equals(contractAddr) {
		return nil, chain.ErrNotFound
	}
	if err := f.errs[method]; err != nil {
		return nil, err
	}
	if v, ok := f.override[method]; ok {
		return v, nil
	}
	s := f.data.BeginParse()
	owner := s.MustLoadAddr()
	seqno := s.MustLoadUInt(32)
	version := s.MustLoadUInt(16)
	dev := s.MustLoadBoolBit()
	network := s.MustLoadRef().MustToCell()
	fees := s.MustLoadRef()
	lists := s.MustLoadRef()
	minTCB := s.MustLoadRef().MustToCell()
	integer := func(v uint64) *big.Int { return new(big.Int).SetUint64(v) }
	switch method {
	case "get_owner":
		return []any{cell.BeginCell().MustStoreAddr(owner).EndCell().BeginParse()}, nil
	case "get_seqno":
		return []any{integer(seqno)}, nil
	case "get_network":
		return []any{network}, nil
	case "get_protocol_version":
		return []any{integer(version)}, nil
	case "get_dev_attestation":
		if dev {
			return []any{big.NewInt(-1)}, nil
		}
		return []any{big.NewInt(0)}, nil
	case "get_fees":
		return []any{integer(fees.MustLoadUInt(32)), fees.MustLoadBigCoins(), integer(fees.MustLoadUInt(32)), integer(fees.MustLoadUInt(32))}, nil
	case "get_bootstrap", "get_measurements", "get_models":
		var c *cell.Slice
		for range map[string]int{"get_bootstrap": 1, "get_measurements": 2, "get_models": 3}[method] {
			c = lists.MustLoadMaybeRef()
		}
		if c == nil {
			return []any{nil}, nil
		}
		return []any{c.MustToCell()}, nil
	case "get_min_tcb":
		return []any{minTCB}, nil
	}
	return nil, &chain.ExitError{Method: method, Code: 11}
}

func TestRoundTrip(t *testing.T) {
	empty := sample(t)
	empty.Bootstrap, empty.Measurements, empty.Models, empty.MinTCB = nil, nil, nil, registry.TCB{}
	for _, want := range []*registry.Registry{sample(t), empty} {
		got, err := registry.Read(context.Background(), newFake(t, want), contractAddr)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := fmt.Sprint(got), fmt.Sprint(want); a != b {
			t.Fatalf("read back\n%s\nwant\n%s", a, b)
		}
		if !got.Owner.Equals(want.Owner) || got.Fees.MinDeposit.Cmp(want.Fees.MinDeposit) != 0 ||
			got.Fees.SettlementPeriod != want.Fees.SettlementPeriod || got.Fees.DisputeTimeout != want.Fees.DisputeTimeout ||
			got.Fees.ProxyFeePPM != want.Fees.ProxyFeePPM {
			t.Fatalf("owner or fees differ: %+v vs %+v", got, want)
		}
		if len(got.Bootstrap) != len(want.Bootstrap) {
			t.Fatalf("bootstrap %v, want %v", got.Bootstrap, want.Bootstrap)
		}
		for i := range got.Bootstrap {
			if got.Bootstrap[i].String() != want.Bootstrap[i].String() {
				t.Errorf("bootstrap[%d] = %v, want %v", i, got.Bootstrap[i], want.Bootstrap[i])
			}
		}
		if fmt.Sprint(got.Measurements) != fmt.Sprint(want.Measurements) {
			t.Errorf("measurements differ")
		}
		if got.MinTCB != want.MinTCB {
			t.Errorf("min TCB %v, want %v", got.MinTCB, want.MinTCB)
		}
		models := map[string]string{}
		for _, m := range got.Models {
			models[m.Name] = fmt.Sprintf("%x", m.Hash)
		}
		for _, m := range want.Models {
			if models[m.Name] != fmt.Sprintf("%x", m.Hash) {
				t.Errorf("model %s: hash %s, want %x", m.Name, models[m.Name], m.Hash)
			}
		}
	}
}

// dict builds a dictionary whose values are each one ref to the given cell.
func dict(keyBits uint, kv map[int64]*cell.Cell) *cell.Cell {
	d := cell.NewDict(keyBits)
	for k, v := range kv {
		if err := d.SetIntKey(big.NewInt(k), cell.BeginCell().MustStoreRef(v).EndCell()); err != nil {
			panic(err)
		}
	}
	return d.AsCell()
}

func str(s string) *cell.Cell {
	return cell.BeginCell().MustStoreSlice([]byte(s), uint(8*len(s))).EndCell()
}

func TestReadRejectsMalformed(t *testing.T) {
	good := proxyInfo(t, 1, "/ip4/127.0.0.1/tcp/4001")
	goodStr := good.Addrs[0].String() + "/p2p/" + good.ID.String()
	many := map[int64]*cell.Cell{}
	for i := range 17 {
		many[int64(i)] = str(goodStr)
	}
	bits := func(n uint) *cell.Cell { return cell.BeginCell().MustStoreSlice(make([]byte, (n+7)/8), n).EndCell() }
	exit := &chain.ExitError{Method: "get_models", Code: 7}
	cases := []struct {
		name   string
		method string
		result []any
		err    error
		want   string
	}{
		{"bootstrap not a multiaddr", "get_bootstrap", []any{dict(8, map[int64]*cell.Cell{0: str(goodStr), 1: str("/nonsense/1")})}, nil, "bootstrap[1]: \"/nonsense/1\" is not a multiaddr"},
		{"bootstrap without peer", "get_bootstrap", []any{dict(8, map[int64]*cell.Cell{0: str("/ip4/1.2.3.4/tcp/1")})}, nil, "bootstrap[0]: \"/ip4/1.2.3.4/tcp/1\" has no /p2p/ peer ID"},
		{"bootstrap key out of range", "get_bootstrap", []any{dict(8, map[int64]*cell.Cell{20: str(goodStr)})}, nil, "bootstrap: key 20 is not in 0..15"},
		{"bootstrap value with refs", "get_bootstrap", []any{dict(8, map[int64]*cell.Cell{0: cell.BeginCell().MustStoreRef(str("x")).EndCell()})}, nil, "bootstrap[0]: string cell has 0 bits and 1 refs"},
		{"bootstrap too long", "get_bootstrap", []any{dict(8, many)}, nil, "get_bootstrap: 17 entries, at most 16"},
		{"bootstrap not a cell", "get_bootstrap", []any{big.NewInt(1)}, nil, "get_bootstrap: got *big.Int, want a cell"},
		{"measurement short", "get_measurements", []any{dict(8, map[int64]*cell.Cell{0: bits(380)})}, nil, "measurements[0]: mrtd cell has 380 bits and 0 refs"},
		{"measurement rtmr short", "get_measurements", []any{dict(8, map[int64]*cell.Cell{0: cell.BeginCell().MustStoreSlice(make([]byte, 48), 384).MustStoreRef(bits(768)).MustStoreRef(bits(760)).EndCell()})}, nil, "measurements[0]: rtmr2/3 cell has 760 bits"},
		{"model empty name", "get_models", []any{dict(256, map[int64]*cell.Cell{5: str("")})}, nil, "models[5]: 0 bytes, must be 1..127"},
		{"model name odd bits", "get_models", []any{dict(256, map[int64]*cell.Cell{5: bits(13)})}, nil, "models[5]: string cell has 13 bits"},
		{"fee too high", "get_fees", []any{big.NewInt(300_000), big.NewInt(1), big.NewInt(60), big.NewInt(60)}, nil, "get_fees: fees.proxy_fee_ppm: 300000 is over 200000"},
		{"settlement too short", "get_fees", []any{big.NewInt(0), big.NewInt(1), big.NewInt(10), big.NewInt(60)}, nil, "fees.settlement_period: 10s"},
		{"fees missing", "get_fees", []any{big.NewInt(0)}, nil, "get_fees: returned 1 values, want 4"},
		{"negative deposit", "get_fees", []any{big.NewInt(0), big.NewInt(-1), big.NewInt(60), big.NewInt(60)}, nil, "min_deposit: -1 does not fit"},
		{"dev flag not boolean", "get_dev_attestation", []any{big.NewInt(5)}, nil, "get_dev_attestation: 5 is not a TVM boolean"},
		{"network bad characters", "get_network", []any{str("Bad Net")}, nil, "get_network: network: \"Bad Net\" may hold only"},
		{"dev attestation off local", "get_network", []any{str("mainnet")}, nil, "dev_attestation: refused on network \"mainnet\""},
		{"owner not an address", "get_owner", []any{str("x")}, nil, "get_owner: not an address"},
		{"protocol version zero", "get_protocol_version", []any{big.NewInt(0)}, nil, "get_protocol_version: 0 is not in 1..65535"},
		{"min tcb short", "get_min_tcb", []any{bits(271)}, nil, "get_min_tcb: min_tcb cell has 271 bits and 0 refs, want 272 and 0"},
		{"min tcb long", "get_min_tcb", []any{bits(280)}, nil, "get_min_tcb: min_tcb cell has 280 bits"},
		{"min tcb with a ref", "get_min_tcb", []any{cell.BeginCell().MustStoreSlice(make([]byte, 34), 272).MustStoreRef(bits(1)).EndCell()}, nil, "get_min_tcb: min_tcb cell has 272 bits and 1 refs"},
		{"min tcb not a cell", "get_min_tcb", []any{big.NewInt(3)}, nil, "get_min_tcb: got *big.Int, want a cell"},
		{"min tcb missing", "get_min_tcb", []any{}, nil, "get_min_tcb: returned 0 values, want 1"},
		{"get-method fails", "get_models", nil, exit, "running get_models: get-method get_models: exit code 7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, sample(t))
			if tc.err != nil {
				f.errs[tc.method] = tc.err
			} else {
				f.override[tc.method] = tc.result
			}
			_, err := registry.Read(context.Background(), f, contractAddr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err = %v does not wrap %v", err, tc.err)
			}
		})
	}
}

func TestCellRefusesOutOfBounds(t *testing.T) {
	cases := []struct {
		name   string
		change func(*registry.Registry)
		want   string
	}{
		{"no owner", func(r *registry.Registry) { r.Owner = nil }, "owner"},
		{"long network", func(r *registry.Registry) { r.Network = strings.Repeat("a", 33) }, "network"},
		{"dev attestation on mainnet", func(r *registry.Registry) { r.Network = "mainnet" }, "dev_attestation"},
		{"version zero", func(r *registry.Registry) { r.ProtocolVersion = 0 }, "protocol_version"},
		{"fee", func(r *registry.Registry) { r.Fees.ProxyFeePPM = 200_001 }, "fees.proxy_fee_ppm"},
		{"deposit", func(r *registry.Registry) {
			r.Fees.MinDeposit = new(big.Int).Add(registry.MaxMinDeposit, big.NewInt(1))
		}, "fees.min_deposit"},
		{"dispute", func(r *registry.Registry) { r.Fees.DisputeTimeout = 31 * 24 * time.Hour }, "fees.dispute_timeout"},
		{"bootstrap with two addresses", func(r *registry.Registry) {
			r.Bootstrap[0].Addrs = append(r.Bootstrap[0].Addrs, r.Bootstrap[0].Addrs[0])
		}, "bootstrap[0]: 2 addresses"},
		{"too many bootstrap", func(r *registry.Registry) {
			for len(r.Bootstrap) <= registry.MaxBootstrap {
				r.Bootstrap = append(r.Bootstrap, r.Bootstrap[0])
			}
		}, "bootstrap: 17 entries"},
		{"model name", func(r *registry.Registry) { r.Models[1].Name = "" }, "models[1]"},
		{"model twice", func(r *registry.Registry) { r.Models[1].Hash = r.Models[0].Hash }, "listed twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := sample(t)
			tc.change(r)
			_, err := r.Cell()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
}

func TestReadNeverMixesVersions(t *testing.T) {
	r := sample(t)
	f := newFake(t, r)
	updates := 0
	f.onGet = func(method string) {
		// The owner updates the contract in the middle of the first read.
		if method == "get_models" && updates == 0 {
			updates++
			next := sample(t)
			next.Seqno = 1
			next.Models = next.Models[:1]
			f.set(next)
		}
	}
	got, err := registry.Read(context.Background(), f, contractAddr)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seqno != 1 || len(got.Models) != 1 {
		t.Fatalf("got seqno %d with %d models, want the second version whole (1, 1)", got.Seqno, len(got.Models))
	}

	seq := uint32(1)
	f.onGet = func(method string) {
		if method == "get_owner" {
			seq++
			next := sample(t)
			next.Seqno = seq
			f.set(next)
		}
	}
	if _, err := registry.Read(context.Background(), f, contractAddr); !errors.Is(err, registry.ErrChanging) {
		t.Fatalf("err = %v, want ErrChanging", err)
	}
}

func TestMessages(t *testing.T) {
	r := sample(t)
	bootstrap, err := registry.SetBootstrap(7, r.Bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	fees, err := registry.SetFees(8, r.Fees)
	if err != nil {
		t.Fatal(err)
	}
	version, err := registry.SetProtocolVersion(9, 2)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := registry.TransferOwnership(10, contractAddr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body  *cell.Cell
		op    uint64
		query uint64
	}{
		{bootstrap, registry.OpSetBootstrap, 7},
		{fees, registry.OpSetFees, 8},
		{version, registry.OpSetProtocolVersion, 9},
		{owner, registry.OpTransferOwnership, 10},
		{registry.SetDevAttestation(11, true), registry.OpSetDevAttestation, 11},
		{registry.SetMinTCB(12, r.MinTCB), registry.OpSetMinTCB, 12},
	} {
		s := tc.body.BeginParse()
		if op, q := s.MustLoadUInt(32), s.MustLoadUInt(64); op != tc.op || q != tc.query {
			t.Errorf("op %#x query %d, want %#x %d", op, q, tc.op, tc.query)
		}
	}
	s := bootstrap.BeginParse()
	s.MustLoadUInt(96)
	got, err := registry.DecodeBootstrap(s.MustLoadMaybeRef().MustToCell())
	if err != nil || len(got) != 2 || got[1].String() != r.Bootstrap[1].String() {
		t.Fatalf("bootstrap message holds %v (%v)", got, err)
	}
	s = registry.SetMinTCB(12, r.MinTCB).BeginParse()
	s.MustLoadUInt(96)
	if s.BitsLeft() != 0 || s.RefsNum() != 1 {
		t.Fatalf("min TCB message: %d bits and %d refs after the header, want one ref", s.BitsLeft(), s.RefsNum())
	}
	if got, err := registry.DecodeMinTCB(s.MustLoadRef().MustToCell()); err != nil || got != r.MinTCB {
		t.Fatalf("min TCB message holds %v (%v), want %v", got, err, r.MinTCB)
	}
	if _, err := registry.SetProtocolVersion(1, 0); err == nil {
		t.Error("version 0 accepted")
	}
	if _, err := registry.SetFees(1, registry.Fees{ProxyFeePPM: 1}); err == nil {
		t.Error("fees without deposit accepted")
	}
}

func TestParseSVN(t *testing.T) {
	svn := "03000400000000000000000000000000"
	cases := []struct {
		name, in  string
		want      [16]byte
		wantError string
	}{
		{"hex", svn, [16]byte{3, 0, 4}, ""},
		{"0x", "0x0505020203010003" + strings.Repeat("00", 8), [16]byte{5, 5, 2, 2, 3, 1, 0, 3}, ""},
		{"empty is zero", "", [16]byte{}, ""},
		{"not hex", "zz" + svn[2:], [16]byte{}, `"zz` + svn[2:] + `" is not hex`},
		{"short", "0505", [16]byte{}, `"0505" is 2 bytes, want 16 (32 hex digits)`},
		{"long", svn + "00", [16]byte{}, `"` + svn + `00" is 17 bytes`},
		{"odd digits", "030", [16]byte{}, `"030" is not hex`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := registry.ParseSVN(tc.in)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantError)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSVN = %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func TestParseMeasurement(t *testing.T) {
	reg := func(b byte) string { return strings.Repeat(fmt.Sprintf("%02x", b), 48) }
	good := strings.Join([]string{reg(1), reg(2), reg(3), reg(4), "0x" + reg(5)}, ":")
	m, err := registry.ParseMeasurement(good)
	if err != nil {
		t.Fatal(err)
	}
	if m.MRTD[0] != 1 || m.RTMR[0][47] != 2 || m.RTMR[1][0] != 3 || m.RTMR[2][0] != 4 || m.RTMR[3][47] != 5 {
		t.Fatalf("parsed %x %x", m.MRTD, m.RTMR)
	}
	for _, tc := range []struct{ in, want string }{
		{reg(1) + ":" + reg(2), "2 colon-separated values, want 5"},
		{good + ":" + reg(6), "6 colon-separated values"},
		{strings.Replace(good, reg(3), "zz"+reg(3)[2:], 1), `rtmr1: "zz`},
		{strings.Replace(good, reg(4), reg(4)[:94], 1), "rtmr2: 47 bytes, want 48 (96 hex digits)"},
		{"", "1 colon-separated values"},
	} {
		if _, err := registry.ParseMeasurement(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseMeasurement(%.20q...) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestReader(t *testing.T) {
	f := newFake(t, sample(t))
	rd := registry.NewReader(registry.ReaderConfig{Address: contractAddr, Network: "local", Interval: time.Hour}, f, logtest.Discard)
	changes := make(chan uint32, 4)
	rd.OnChange(func(r *registry.Registry) { changes <- r.Seqno })
	if err := rd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if got := rd.Current(); got == nil || got.Seqno != 0 {
		t.Fatalf("Current after Start = %v", got)
	}
	if err := rd.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := sample(t)
	next.Seqno = 1
	next.Bootstrap = next.Bootstrap[:1]
	f.set(next)
	if err := rd.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := <-changes; got != 1 {
		t.Fatalf("OnChange got seqno %d, want 1", got)
	}
	select {
	case s := <-changes:
		t.Fatalf("OnChange called again with %d for an unchanged registry", s)
	default:
	}

	f.errs["get_seqno"] = errors.New("liteserver down")
	if err := rd.Refresh(context.Background()); err == nil {
		t.Fatal("refresh with the chain down succeeded")
	}
	if got := rd.Current(); got.Seqno != 1 || len(got.Bootstrap) != 1 {
		t.Fatalf("a failed refresh lost the last registry: %v", got)
	}
}

func TestReaderRefusesOtherNetwork(t *testing.T) {
	r := sample(t)
	r.Network, r.DevAttestation = "testnet", false
	rd := registry.NewReader(registry.ReaderConfig{Address: contractAddr, Network: "local"}, newFake(t, r), logtest.Discard)
	err := rd.Start(context.Background())
	var ne *registry.NetworkError
	if !errors.As(err, &ne) || ne.Got != "testnet" {
		t.Fatalf("err = %v, want a NetworkError naming testnet", err)
	}
	rd.Close()
}

func FuzzDecode(f *testing.F) {
	r := sample(f)
	c, err := r.Cell()
	if err != nil {
		f.Fatal(err)
	}
	s := c.BeginParse()
	s.MustLoadAddr()
	s.MustLoadUInt(49)
	s.MustLoadRef()
	s.MustLoadRef()
	l := s.MustLoadRef()
	for range 3 {
		if d := l.MustLoadMaybeRef(); d != nil {
			f.Add(d.MustToCell().ToBOC())
		}
	}
	f.Add(s.MustLoadRef().MustToCell().ToBOC()) // min_tcb
	f.Fuzz(func(t *testing.T, boc []byte) {
		if len(boc) > 1<<16 {
			return
		}
		c, err := chain.ParseBOC(boc)
		if err != nil {
			return
		}
		// None may panic; whatever they accept must be within bounds.
		if b, err := registry.DecodeBootstrap(c); err == nil && len(b) > registry.MaxBootstrap {
			t.Fatalf("%d bootstrap entries accepted", len(b))
		}
		if m, err := registry.DecodeMeasurements(c); err == nil && len(m) > registry.MaxMeasurements {
			t.Fatalf("%d measurements accepted", len(m))
		}
		if tcb, err := registry.DecodeMinTCB(c); err == nil && (c.BitsSize() != 272 || c.RefsNum() != 0) {
			t.Fatalf("min TCB %v accepted from a cell of %d bits and %d refs", tcb, c.BitsSize(), c.RefsNum())
		}
		if m, err := registry.DecodeModels(c); err == nil {
			for _, x := range m {
				if x.Name == "" || len(x.Name) > registry.MaxStringLen {
					t.Fatalf("model name %q accepted", x.Name)
				}
			}
		}
	})
}
