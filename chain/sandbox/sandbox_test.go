package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/tvm/cell"
	"go.uber.org/goleak"

	"github.com/cocoon-mesh/cocoon/chain"
	"github.com/cocoon-mesh/cocoon/contracts"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start starts a Sandbox installed in the user's cache, as `cocoon testnet`
// does, and closes it when the test ends. It skips when node is missing.
func start(t *testing.T) *Sandbox {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the sandbox chain runs @ton/sandbox in Node.js")
	}
	log := logtest.NewAt(t, slog.LevelInfo)
	s := New(Config{}, log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // npm ci, the first time
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // generous: CI machines are busy
	t.Cleanup(cancel)
	return ctx
}

// The root contract's layout, from docs/registry.md.

const (
	opSetProtocolVersion = 0x636f0006
	opSetModels          = 0x636f0003
)

func str(s string) *cell.Cell {
	return cell.BeginCell().MustStoreSlice([]byte(s), uint(8*len(s))).EndCell()
}

// dict returns a HashmapE keyBits ^Cell holding values under keys 0, 1, ...
func dict(keyBits uint, values ...*cell.Cell) *cell.Dictionary {
	d := cell.NewDict(keyBits)
	for i, v := range values {
		if err := d.SetIntKey(big.NewInt(int64(i)), cell.BeginCell().MustStoreRef(v).EndCell()); err != nil {
			panic(err)
		}
	}
	return d
}

func rootData(owner *address.Address, network string) *cell.Cell {
	fees := cell.BeginCell().
		MustStoreUInt(50000, 32).           // proxy_fee_ppm
		MustStoreBigCoins(big.NewInt(1e9)). // min_deposit
		MustStoreUInt(3600, 32).            // settlement_period
		MustStoreUInt(86400, 32).           // dispute_timeout
		EndCell()
	reg := bytes.Repeat([]byte{1}, 48)
	pair := cell.BeginCell().MustStoreSlice(reg, 384).MustStoreSlice(reg, 384).EndCell()
	measurement := cell.BeginCell().MustStoreSlice(reg, 384).MustStoreRef(pair).MustStoreRef(pair).EndCell()
	lists := cell.BeginCell().
		MustStoreDict(dict(8, str("/ip4/127.0.0.1/udp/4001/quic-v1"))).
		MustStoreDict(dict(8, measurement)).
		MustStoreDict(cell.NewDict(256)).
		EndCell()
	return cell.BeginCell().
		MustStoreAddr(owner).
		MustStoreUInt(0, 32). // seqno
		MustStoreUInt(1, 16). // protocol_version
		MustStoreBoolBit(false).
		MustStoreRef(str(network)).
		MustStoreRef(fees).
		MustStoreRef(lists).
		MustStoreRef(cell.BeginCell().MustStoreSlice(make([]byte, 34), 272).EndCell()). // min_tcb: accept any
		EndCell()
}

func update(op uint64, value func(*cell.Builder)) *cell.Cell {
	b := cell.BeginCell().MustStoreUInt(op, 32).MustStoreUInt(1, 64)
	value(b)
	return b.EndCell()
}

func setProtocolVersion(v uint64) *cell.Cell {
	return update(opSetProtocolVersion, func(b *cell.Builder) { b.MustStoreUInt(v, 16) })
}

// stateInitAddr returns the basechain address of code and data.
func stateInitAddr(t *testing.T, code, data *cell.Cell) *address.Address {
	si, err := tlb.ToCell(&tlb.StateInit{Code: code, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return address.NewAddress(0, 0, si.Hash())
}

func getInt(t *testing.T, s *Sandbox, addr *address.Address, method string) int64 {
	t.Helper()
	stack, err := s.RunGetMethod(ctxFor(t), addr, method)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if len(stack) != 1 {
		t.Fatalf("%s returned %d values, want 1", method, len(stack))
	}
	n, ok := stack[0].(*big.Int)
	if !ok {
		t.Fatalf("%s returned %T, want *big.Int", method, stack[0])
	}
	return n.Int64()
}

// deployRoot deploys the root contract owned by the treasury "owner".
func deployRoot(t *testing.T, s *Sandbox) (root, owner *address.Address) {
	t.Helper()
	ctx := ctxFor(t)
	owner, err := s.Treasury(ctx, "owner")
	if err != nil {
		t.Fatal(err)
	}
	code, data := contracts.RootCode(), rootData(owner, "local")
	want := stateInitAddr(t, code, data)

	before, err := s.Account(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if before.Status != chain.StatusNonexist || before.Balance.Sign() != 0 || before.Code != nil {
		t.Fatalf("before deploy: %+v, want nonexist and empty", before)
	}
	if _, err := s.RunGetMethod(ctx, want, "get_seqno"); !errors.Is(err, chain.ErrNotFound) {
		t.Fatalf("get-method before deploy: err = %v, want chain.ErrNotFound", err)
	}

	root, err = s.Deploy(ctx, code, data, big.NewInt(1e9))
	if err != nil {
		t.Fatal(err)
	}
	if !root.Equals(want) {
		t.Fatalf("deployed to %s, want %s", root.StringRaw(), want.StringRaw())
	}
	after, err := s.Account(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != chain.StatusActive || after.Balance.Sign() <= 0 || after.LastTxLT == 0 || len(after.LastTxHash) != 32 {
		t.Fatalf("after deploy: %+v", after)
	}
	if !bytes.Equal(after.Code.Hash(), code.Hash()) || !bytes.Equal(after.Data.Hash(), data.Hash()) {
		t.Fatal("deployed code or data differ")
	}
	return root, owner
}

func TestRootContract(t *testing.T) {
	s := start(t)
	root, owner := deployRoot(t, s)
	ctx := ctxFor(t)

	t.Run("get-methods", func(t *testing.T) {
		stack, err := s.RunGetMethod(ctx, root, "get_owner")
		if err != nil {
			t.Fatal(err)
		}
		sl, ok := stack[0].(*cell.Slice)
		if !ok {
			t.Fatalf("get_owner returned %T, want *cell.Slice", stack[0])
		}
		if got := sl.MustLoadAddr(); !got.Equals(owner) {
			t.Errorf("owner %s, want %s", got.StringRaw(), owner.StringRaw())
		}
		if n := getInt(t, s, root, "get_seqno"); n != 0 {
			t.Errorf("seqno %d, want 0", n)
		}
		if n := getInt(t, s, root, "get_dev_attestation"); n != 0 {
			t.Errorf("dev attestation %d, want 0", n)
		}
		stack, err = s.RunGetMethod(ctx, root, "get_network")
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := stack[0].(*cell.Cell); !ok || string(c.BeginParse().MustLoadSlice(c.BitsSize())) != "local" {
			t.Errorf("network %v, want a cell holding local", stack[0])
		}
		stack, err = s.RunGetMethod(ctx, root, "get_fees")
		if err != nil {
			t.Fatal(err)
		}
		var fees []int64
		for _, v := range stack {
			fees = append(fees, v.(*big.Int).Int64())
		}
		if want := []int64{50000, 1e9, 3600, 86400}; len(fees) != 4 || fees[0] != want[0] || fees[1] != want[1] || fees[2] != want[2] || fees[3] != want[3] {
			t.Errorf("fees %v, want %v", fees, want)
		}
		stack, err = s.RunGetMethod(ctx, root, "get_bootstrap")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := stack[0].(*cell.Cell); !ok {
			t.Errorf("bootstrap %T, want a dictionary cell", stack[0])
		}
		stack, err = s.RunGetMethod(ctx, root, "get_models")
		if err != nil {
			t.Fatal(err)
		}
		if stack[0] != nil {
			t.Errorf("models %v, want nil for an empty dictionary", stack[0])
		}
	})

	t.Run("unknown get-method", func(t *testing.T) {
		_, err := s.RunGetMethod(ctx, root, "no_such_method")
		var exit *chain.ExitError
		if !errors.As(err, &exit) || exit.Code != 11 || exit.Method != "no_such_method" {
			t.Fatalf("err = %v, want *chain.ExitError with code 11", err)
		}
	})

	t.Run("arguments round-trip", func(t *testing.T) {
		// A get-method leaves its arguments under its result.
		big1 := new(big.Int).Lsh(big.NewInt(-3), 200)
		args := []any{big1, 42, uint64(1 << 63), str("c"), str("s").BeginParse(), nil, []any{int8(-1), []any{}}}
		stack, err := s.RunGetMethod(ctx, root, "get_seqno", args...)
		if err != nil {
			t.Fatal(err)
		}
		if len(stack) != len(args)+1 {
			t.Fatalf("stack has %d values, want %d", len(stack), len(args)+1)
		}
		checkInt := func(i int, want *big.Int) {
			if n, ok := stack[i].(*big.Int); !ok || n.Cmp(want) != 0 {
				t.Errorf("stack[%d] = %v, want %v", i, stack[i], want)
			}
		}
		checkInt(0, big1)
		checkInt(1, big.NewInt(42))
		checkInt(2, new(big.Int).SetUint64(1<<63))
		if c, ok := stack[3].(*cell.Cell); !ok || !bytes.Equal(c.Hash(), str("c").Hash()) {
			t.Errorf("stack[3] = %v, want the cell", stack[3])
		}
		if sl, ok := stack[4].(*cell.Slice); !ok || !bytes.Equal(sl.MustToCell().Hash(), str("s").Hash()) {
			t.Errorf("stack[4] = %v, want the slice", stack[4])
		}
		if stack[5] != nil {
			t.Errorf("stack[5] = %v, want nil", stack[5])
		}
		tup, ok := stack[6].([]any)
		if !ok || len(tup) != 2 {
			t.Fatalf("stack[6] = %v, want a 2-tuple", stack[6])
		}
		if n, ok := tup[0].(*big.Int); !ok || n.Int64() != -1 {
			t.Errorf("tuple[0] = %v, want -1", tup[0])
		}
		if inner, ok := tup[1].([]any); !ok || len(inner) != 0 {
			t.Errorf("tuple[1] = %v, want an empty tuple", tup[1])
		}
		checkInt(7, big.NewInt(0))

		if _, err := s.RunGetMethod(ctx, root, "get_seqno", 1.5); err == nil {
			t.Error("a float argument was accepted")
		}
	})

	t.Run("owner update", func(t *testing.T) {
		txs, err := s.SendInternal(ctx, "owner", root, big.NewInt(1e8), setProtocolVersion(7))
		if err != nil {
			t.Fatal(err)
		}
		if len(txs) < 2 {
			t.Fatalf("%d transactions, want the treasury's and the root's", len(txs))
		}
		tx := txs[1]
		if !tx.Success || tx.ExitCode != 0 || tx.Aborted {
			t.Fatalf("root transaction %+v, want success", tx)
		}
		got, err := s.WaitTransaction(ctx, root, tx.InMessageHash)
		if err != nil {
			t.Fatal(err)
		}
		if got.LT != tx.LT || !bytes.Equal(got.Hash, tx.Hash) {
			t.Fatalf("WaitTransaction found %+v, want %+v", got, tx)
		}
		if n := getInt(t, s, root, "get_seqno"); n != 1 {
			t.Errorf("seqno %d, want 1", n)
		}
		if n := getInt(t, s, root, "get_protocol_version"); n != 7 {
			t.Errorf("protocol version %d, want 7", n)
		}
	})

	t.Run("stranger update", func(t *testing.T) {
		seqno := getInt(t, s, root, "get_seqno")
		if _, err := s.Treasury(ctx, "stranger"); err != nil {
			t.Fatal(err)
		}
		txs, err := s.SendInternal(ctx, "stranger", root, big.NewInt(1e8), setProtocolVersion(8))
		if err != nil {
			t.Fatal(err)
		}
		// The treasury's transaction, the root's, the bounce back.
		if len(txs) != 3 {
			t.Fatalf("%d transactions, want 3", len(txs))
		}
		onRoot, err := s.WaitTransaction(ctx, root, txs[1].InMessageHash)
		if err != nil {
			t.Fatal(err)
		}
		if onRoot.Success || onRoot.ExitCode != 401 || !onRoot.Aborted {
			t.Fatalf("root transaction %+v, want exit code 401", onRoot)
		}
		if n := getInt(t, s, root, "get_seqno"); n != seqno {
			t.Errorf("seqno %d, want %d", n, seqno)
		}
	})

	t.Run("bound refused", func(t *testing.T) {
		txs, err := s.SendInternal(ctx, "owner", root, big.NewInt(1e8), setProtocolVersion(0))
		if err != nil {
			t.Fatal(err)
		}
		if tx := txs[1]; tx.ExitCode != 414 || tx.Success {
			t.Fatalf("root transaction %+v, want exit code 414", tx)
		}
	})
}

// treasuryTransfer builds the external message the sandbox's treasury
// wallets take: subwallet id (sha256 of "TESTSEED" and the name), then a
// dictionary of (send mode, ^message) by index.
func treasuryTransfer(t *testing.T, name string, treasury, to *address.Address, value *big.Int, body *cell.Cell) *cell.Cell {
	out, err := tlb.ToCell(&tlb.InternalMessage{IHRDisabled: true, Bounce: true, DstAddr: to, Amount: tlb.FromNanoTON(value), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	msgs := cell.NewDict(16)
	if err := msgs.SetIntKey(big.NewInt(0), cell.BeginCell().MustStoreUInt(3, 8).MustStoreRef(out).EndCell()); err != nil {
		t.Fatal(err)
	}
	sub := sha256.Sum256([]byte("TESTSEED" + name))
	transfer := cell.BeginCell().MustStoreSlice(sub[:], 256).MustStoreDict(msgs).EndCell()
	msg, err := tlb.ToCell(&tlb.ExternalMessage{DstAddr: treasury, Body: transfer})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestExternalMessages(t *testing.T) {
	s := start(t)
	root, owner := deployRoot(t, s)
	ctx := ctxFor(t)

	t.Run("wallet transfer", func(t *testing.T) {
		msg := treasuryTransfer(t, "owner", owner, root, big.NewInt(5e7), setProtocolVersion(9))
		hash, err := s.SendExternal(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range [][]byte{hash, msg.Hash()} {
			tx, err := s.WaitTransaction(ctx, owner, h)
			if err != nil {
				t.Fatal(err)
			}
			if !tx.Success || !bytes.Equal(tx.InMessageHash, hash) {
				t.Fatalf("wallet transaction %+v", tx)
			}
		}
		if n := getInt(t, s, root, "get_protocol_version"); n != 9 {
			t.Errorf("protocol version %d, want 9", n)
		}
	})

	t.Run("refused by the contract", func(t *testing.T) {
		msg, err := tlb.ToCell(&tlb.ExternalMessage{DstAddr: root, Body: setProtocolVersion(10)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.SendExternal(ctx, msg)
		if !errors.Is(err, ErrNotAccepted) {
			t.Fatalf("err = %v, want ErrNotAccepted", err)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		for name, msg := range map[string]*cell.Cell{
			"not a message": str("hello"),
			"internal": func() *cell.Cell {
				c, err := tlb.ToCell(&tlb.InternalMessage{DstAddr: root, Amount: tlb.MustFromTON("1")})
				if err != nil {
					t.Fatal(err)
				}
				return c
			}(),
		} {
			_, err := s.SendExternal(ctx, msg)
			var api *apiError
			if !errors.As(err, &api) || api.Status != 400 {
				t.Errorf("%s: err = %v, want a 400 from the sidecar", name, err)
			}
		}
		if _, err := s.SendExternal(ctx, nil); err == nil {
			t.Error("a nil message was accepted")
		}
	})
}

func TestWaitTransaction(t *testing.T) {
	s := start(t)
	root, _ := deployRoot(t, s)
	ctx := ctxFor(t)

	// A transaction not yet seen: the wait ends with its context.
	unknown := sha256.Sum256([]byte("never sent"))
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.WaitTransaction(short, root, unknown[:]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}

	// A wait in flight sees a transaction that lands later.
	owner := mustTreasury(t, s, "owner")
	msg := treasuryTransfer(t, "owner", owner, root, big.NewInt(1e7), nil)
	waited := make(chan error, 1)
	go func() {
		_, err := s.WaitTransaction(ctx, owner, msg.Hash())
		waited <- err
	}()
	if _, err := s.SendExternal(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}

	// A wait in flight ends when the Sandbox closes.
	go func() {
		_, err := s.WaitTransaction(ctx, root, unknown[:])
		waited <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; !errors.Is(err, ErrNotStarted) {
		t.Fatalf("err = %v, want ErrNotStarted after Close", err)
	}
}

func mustTreasury(t *testing.T, s *Sandbox, name string) *address.Address {
	t.Helper()
	a, err := s.Treasury(ctxFor(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestTime(t *testing.T) {
	s := start(t)
	ctx := ctxFor(t)
	at := time.Unix(1_900_000_000, 0)
	if err := s.SetTime(ctx, at); err != nil {
		t.Fatal(err)
	}
	now, err := s.Now(ctx)
	if err != nil || !now.Equal(at) {
		t.Fatalf("Now = %v, %v; want %v", now, err, at)
	}
	now, err = s.AdvanceTime(ctx, time.Hour)
	if err != nil || !now.Equal(at.Add(time.Hour)) {
		t.Fatalf("AdvanceTime = %v, %v; want %v", now, err, at.Add(time.Hour))
	}
}

func TestCloseLeavesNoProcess(t *testing.T) {
	s := start(t)
	s.mu.Lock()
	pid := s.proc.cmd.Process.Pid
	s.mu.Unlock()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("sidecar %d not running: %v", pid, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("sidecar %d still there after Close: %v", pid, err)
	}
	if _, err := s.Treasury(ctxFor(t), "x"); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("after Close: err = %v, want ErrNotStarted", err)
	}
	if err := s.Start(ctxFor(t)); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func TestSidecarCrash(t *testing.T) {
	s := start(t)
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	_, err := s.Treasury(ctxFor(t), "x")
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("sidecar exited")) {
		t.Fatalf("err = %v, want one saying the sidecar exited", err)
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close after a crash reported a clean exit")
	}
}

func TestNotStarted(t *testing.T) {
	s := New(Config{}, nil)
	ctx := ctxFor(t)
	a := address.NewAddress(0, 0, make([]byte, 32))
	if _, err := s.Account(ctx, a); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Account: %v", err)
	}
	if _, err := s.RunGetMethod(ctx, a, "get_seqno"); !errors.Is(err, ErrNotStarted) {
		t.Errorf("RunGetMethod: %v", err)
	}
	if _, err := s.WaitTransaction(ctx, a, make([]byte, 32)); !errors.Is(err, ErrNotStarted) {
		t.Errorf("WaitTransaction: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAttach: a Sandbox attached to another's sidecar sees the same chain,
// and closing it leaves the sidecar running. Fund reaches an account not
// deployed yet.
func TestAttach(t *testing.T) {
	s := start(t)
	ctx := ctxFor(t)
	a := Attach(s.URL(), s.Token(), nil)
	to := address.NewAddress(0, 0, make([]byte, 32))
	if err := a.Fund(ctx, to, big.NewInt(5_000_000)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	acc, err := s.Account(ctx, to)
	if err != nil {
		t.Fatalf("the sidecar after the attached Sandbox closed: %v", err)
	}
	if acc.Balance.Cmp(big.NewInt(5_000_000)) != 0 {
		t.Errorf("funded account holds %s, want 5000000", acc.Balance)
	}
	if _, err := a.Treasury(ctx, "x"); err == nil {
		t.Error("a closed attached Sandbox still answers")
	}
}

// TestSidecarOnlyParent: the sidecar answers only the Sandbox that started
// it. A web page's request (text/plain, no token), a local process's
// without the token or with another, and a text/plain one with the token
// are refused, and none moves the chain's clock; the token is in neither
// the sidecar's argv nor its environment.
func TestSidecarOnlyParent(t *testing.T) {
	s := start(t)
	ctx := ctxFor(t)
	before, err := s.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	token := s.Token()
	if len(token) != 64 {
		t.Fatalf("token %q, want 64 hex digits", token)
	}
	for _, c := range []struct {
		typ, auth string
		want      int
	}{
		{"text/plain", "", http.StatusUnauthorized}, // a cross-site form or fetch, no preflight
		{"application/json", "", http.StatusUnauthorized},
		{"application/json", "Bearer " + strings.Repeat("0", 64), http.StatusUnauthorized},
		{"text/plain", "Bearer " + token, http.StatusUnsupportedMediaType},
		{"application/x-www-form-urlencoded", "Bearer " + token, http.StatusUnsupportedMediaType},
	} {
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL()+"/time", strings.NewReader(`{"advance":86400}`))
		req.Header.Set("Content-Type", c.typ)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.want || err != nil || e.Message == "" {
			t.Errorf("POST /time as %s with %q: %d %+v (%v), want %d with an error", c.typ, c.auth, resp.StatusCode, e, err, c.want)
		}
	}
	if now, err := s.Now(ctx); err != nil || now.Sub(before) >= 24*time.Hour {
		t.Errorf("the chain's clock went from %v to %v (%v): a refused request moved it", before, now, err)
	}

	s.mu.Lock()
	pid := s.proc.cmd.Process.Pid
	s.mu.Unlock()
	for _, f := range []string{"cmdline", "environ"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		if strings.Contains(string(b), token) {
			t.Errorf("the token is in the sidecar's %s", f)
		}
	}
}
