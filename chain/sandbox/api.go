package sandbox

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain"
)

// ErrNotAccepted means the emulator refused an external message: the
// contract did not accept it, or failed before it did. On a real network
// such a message is dropped and never lands. Sending it again against the
// same state gives the same result.
var ErrNotAccepted = errors.New("external message not accepted")

// txJSON is a transaction as the sidecar reports it.
type txJSON struct {
	Address       string `json:"address"`
	LT            string `json:"lt"`
	Hash          string `json:"hash"`
	InMessageHash string `json:"inMessageHash"` // "" for none
	Success       bool   `json:"success"`
	ExitCode      *int   `json:"exitCode"`
	Aborted       bool   `json:"aborted"`
}

// entryJSON is a stack entry as the sidecar reports it.
type entryJSON struct {
	Type  string      `json:"type"`
	Value string      `json:"value"`
	BoC   []byte      `json:"boc"`
	Items []entryJSON `json:"items"`
}

// Account returns addr's current state.
func (s *Sandbox) Account(ctx context.Context, addr *address.Address) (*chain.Account, error) {
	raw, err := rawAddr(addr)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status     string `json:"status"`
		Balance    string `json:"balance"`
		Code       []byte `json:"code"`
		Data       []byte `json:"data"`
		LastTxLT   string `json:"lastTxLt"`
		LastTxHash string `json:"lastTxHash"`
	}
	if err := s.call(ctx, "/account", map[string]any{"address": raw}, &resp); err != nil {
		return nil, err
	}
	a := &chain.Account{Status: chain.Status(resp.Status)}
	switch a.Status {
	case chain.StatusNonexist, chain.StatusUninit, chain.StatusActive, chain.StatusFrozen:
	default:
		return nil, fmt.Errorf("sandbox: account %s: unknown status %q", raw, resp.Status)
	}
	var ok bool
	if a.Balance, ok = new(big.Int).SetString(resp.Balance, 10); !ok {
		return nil, fmt.Errorf("sandbox: account %s: balance %q is not a number", raw, resp.Balance)
	}
	if a.LastTxLT, err = strconv.ParseUint(resp.LastTxLT, 10, 64); err != nil {
		return nil, fmt.Errorf("sandbox: account %s: last lt: %w", raw, err)
	}
	if a.LastTxHash, err = hash32(resp.LastTxHash); err != nil {
		return nil, fmt.Errorf("sandbox: account %s: last transaction hash: %w", raw, err)
	}
	if a.Status == chain.StatusActive {
		if a.Code, err = fromBoC(resp.Code); err != nil {
			return nil, fmt.Errorf("sandbox: account %s: code: %w", raw, err)
		}
		if a.Data, err = fromBoC(resp.Data); err != nil {
			return nil, fmt.Errorf("sandbox: account %s: data: %w", raw, err)
		}
	}
	return a, nil
}

// RunGetMethod runs method on addr's current state. Arguments may be nil,
// Go integers, *big.Int, *cell.Cell, *cell.Slice or []any (a tuple). An
// account that is not active gives an error wrapping chain.ErrNotFound.
func (s *Sandbox) RunGetMethod(ctx context.Context, addr *address.Address, method string, args ...any) ([]any, error) {
	raw, err := rawAddr(addr)
	if err != nil {
		return nil, err
	}
	in := make([]any, len(args))
	for i, a := range args {
		if in[i], err = entryIn(a); err != nil {
			return nil, fmt.Errorf("sandbox: get-method %s argument %d: %w", method, i, err)
		}
	}
	var resp struct {
		ExitCode int         `json:"exitCode"`
		Stack    []entryJSON `json:"stack"`
	}
	err = s.call(ctx, "/get", map[string]any{"address": raw, "method": method, "args": in}, &resp)
	var api *apiError
	if errors.As(err, &api) && api.Status == 404 {
		return nil, fmt.Errorf("sandbox: get-method %s on %s: %s: %w", method, raw, api.Message, chain.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if resp.ExitCode != 0 && resp.ExitCode != 1 {
		return nil, &chain.ExitError{Method: method, Code: resp.ExitCode}
	}
	out := make([]any, len(resp.Stack))
	for i, e := range resp.Stack {
		if out[i], err = entryOut(e); err != nil {
			return nil, fmt.Errorf("sandbox: get-method %s result %d: %w", method, i, err)
		}
	}
	return out, nil
}

// SendExternal runs msg, an external-in message, and everything it causes.
// It returns the hash of the message as the emulator recorded it, which
// WaitTransaction finds at once; msg's own hash works there too. A message
// the contract does not accept gives an error wrapping ErrNotAccepted.
func (s *Sandbox) SendExternal(ctx context.Context, msg *cell.Cell) ([]byte, error) {
	if msg == nil {
		return nil, errors.New("sandbox: sending a nil message")
	}
	var resp struct {
		Hash         string   `json:"hash"`
		Transactions []txJSON `json:"transactions"`
	}
	err := s.call(ctx, "/external", map[string]any{"message": msg.ToBOC()}, &resp)
	var api *apiError
	if errors.As(err, &api) && api.Status == 422 {
		code := "none"
		if api.ExitCode != nil {
			code = strconv.Itoa(*api.ExitCode)
		}
		return nil, fmt.Errorf("sandbox: %w (exit code %s): %s", ErrNotAccepted, code, api.Message)
	}
	if err != nil {
		return nil, err
	}
	hash, err := hash32(resp.Hash)
	if err != nil {
		return nil, fmt.Errorf("sandbox: /external: message hash: %w", err)
	}
	txs, err := s.record(resp.Transactions, msg.Hash())
	if err != nil {
		return nil, err
	}
	if len(txs) == 0 {
		return nil, errors.New("sandbox: /external: the message caused no transaction")
	}
	return hash, nil
}

// WaitTransaction returns addr's transaction whose inbound message has hash
// msgHash. Everything sent through this Sandbox has already run, so it
// returns at once for those; otherwise it waits until such a transaction is
// seen, ctx ends or the Sandbox closes.
func (s *Sandbox) WaitTransaction(ctx context.Context, addr *address.Address, msgHash []byte) (*chain.Transaction, error) {
	raw, err := rawAddr(addr)
	if err != nil {
		return nil, err
	}
	if len(msgHash) != 32 {
		return nil, fmt.Errorf("sandbox: message hash has %d bytes, want 32", len(msgHash))
	}
	key := txKey{addr: raw, msg: [32]byte(msgHash)}
	for {
		s.mu.Lock()
		tx, ok := s.txs[key]
		changed, p := s.changed, s.proc
		s.mu.Unlock()
		if ok {
			return &tx, nil
		}
		if p == nil {
			return nil, ErrNotStarted
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("sandbox: waiting for a transaction on %s: %w", raw, ctx.Err())
		case <-s.closing:
			return nil, ErrNotStarted
		case <-p.done:
			return nil, fmt.Errorf("sandbox: waiting for a transaction on %s: %w", raw, p.exited())
		}
	}
}

// Deploy deploys a contract with code and data to the basechain, sending
// value from the treasury "deployer", and returns its address. Deploying the
// same code and data again tops it up. A deploy whose transaction fails is
// an error.
func (s *Sandbox) Deploy(ctx context.Context, code, data *cell.Cell, value *big.Int) (*address.Address, error) {
	return s.DeployWith(ctx, code, data, value, nil)
}

// DeployWith is Deploy with a message body the contract's first
// transaction reads (an init message); nil sends none.
func (s *Sandbox) DeployWith(ctx context.Context, code, data *cell.Cell, value *big.Int, body *cell.Cell) (*address.Address, error) {
	if code == nil || data == nil || value == nil {
		return nil, errors.New("sandbox: deploy needs code, data and value")
	}
	if value.Sign() < 0 {
		return nil, fmt.Errorf("sandbox: deploy value %s is negative", value)
	}
	var resp struct {
		Address      string   `json:"address"`
		Transactions []txJSON `json:"transactions"`
	}
	req := map[string]any{"code": code.ToBOC(), "data": data.ToBOC(), "value": value.String()}
	if body != nil {
		req["body"] = body.ToBOC()
	}
	if err := s.call(ctx, "/deploy", req, &resp); err != nil {
		return nil, err
	}
	if _, err := s.record(resp.Transactions, nil); err != nil {
		return nil, err
	}
	addr, err := address.ParseRawAddr(resp.Address)
	if err != nil {
		return nil, fmt.Errorf("sandbox: /deploy: address %q: %w", resp.Address, err)
	}
	return addr, nil
}

// Treasury returns the address of the treasury called name: a wallet the
// emulator owns, created with a million TON on first use.
func (s *Sandbox) Treasury(ctx context.Context, name string) (*address.Address, error) {
	var resp struct {
		Address string `json:"address"`
	}
	if err := s.call(ctx, "/treasury", map[string]any{"name": name}, &resp); err != nil {
		return nil, err
	}
	addr, err := address.ParseRawAddr(resp.Address)
	if err != nil {
		return nil, fmt.Errorf("sandbox: /treasury: address %q: %w", resp.Address, err)
	}
	return addr, nil
}

// SendInternal sends value and body (nil for none) from the treasury called
// from to to, as a bounceable internal message, and returns every
// transaction that caused in the order they ran: the treasury's, then to's,
// then whatever followed (a bounce, messages to sends). A refused message is
// no error; to's transaction says so.
func (s *Sandbox) SendInternal(ctx context.Context, from string, to *address.Address, value *big.Int, body *cell.Cell) ([]chain.Transaction, error) {
	raw, err := rawAddr(to)
	if err != nil {
		return nil, err
	}
	if value == nil || value.Sign() < 0 {
		return nil, fmt.Errorf("sandbox: send value %v: want zero or more", value)
	}
	req := map[string]any{"from": from, "to": raw, "value": value.String(), "bounce": true}
	if body != nil {
		req["body"] = body.ToBOC()
	}
	var resp struct {
		Transactions []txJSON `json:"transactions"`
	}
	if err := s.call(ctx, "/internal", req, &resp); err != nil {
		return nil, err
	}
	return s.record(resp.Transactions, nil)
}

// Fund sends value from the treasury "faucet" to to as a non-bounceable
// message, so that it reaches an account not deployed yet (a new wallet,
// which deploys itself with its first send).
func (s *Sandbox) Fund(ctx context.Context, to *address.Address, value *big.Int) error {
	raw, err := rawAddr(to)
	if err != nil {
		return err
	}
	if value == nil || value.Sign() <= 0 {
		return fmt.Errorf("sandbox: fund value %v: want more than zero", value)
	}
	req := map[string]any{"from": "faucet", "to": raw, "value": value.String(), "bounce": false}
	var resp struct {
		Transactions []txJSON `json:"transactions"`
	}
	if err := s.call(ctx, "/internal", req, &resp); err != nil {
		return err
	}
	_, err = s.record(resp.Transactions, nil)
	return err
}

// SetTime sets the emulator's clock, which then stands still until set or
// advanced again.
func (s *Sandbox) SetTime(ctx context.Context, now time.Time) error {
	_, err := s.clock(ctx, map[string]any{"now": now.Unix()})
	return err
}

// AdvanceTime moves the emulator's clock by d (whole seconds) and returns the
// new time. Before the first SetTime or AdvanceTime the clock follows the
// wall clock.
func (s *Sandbox) AdvanceTime(ctx context.Context, d time.Duration) (time.Time, error) {
	return s.clock(ctx, map[string]any{"advance": int64(d / time.Second)})
}

// Now returns the emulator's clock.
func (s *Sandbox) Now(ctx context.Context) (time.Time, error) {
	return s.clock(ctx, map[string]any{})
}

func (s *Sandbox) clock(ctx context.Context, req map[string]any) (time.Time, error) {
	var resp struct {
		Now int64 `json:"now"`
	}
	if err := s.call(ctx, "/time", req, &resp); err != nil {
		return time.Time{}, err
	}
	return time.Unix(resp.Now, 0), nil
}

// record remembers txs for WaitTransaction and returns them converted.
// alias, when not nil, is another hash to find the first transaction by: that
// of its inbound message as the caller encoded it, when the emulator encoded
// it differently.
func (s *Sandbox) record(txs []txJSON, alias []byte) ([]chain.Transaction, error) {
	out := make([]chain.Transaction, len(txs))
	keys := make([]txKey, len(txs))
	for i, j := range txs {
		tx, addr, err := toTransaction(j)
		if err != nil {
			return nil, err
		}
		out[i] = tx
		if tx.InMessageHash != nil { // else a tick-tock: nothing to find it by
			keys[i] = txKey{addr: addr, msg: [32]byte(tx.InMessageHash)}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range keys {
		if k.addr == "" {
			continue
		}
		s.txs[k] = out[i]
		if i == 0 && len(alias) == 32 {
			s.txs[txKey{addr: k.addr, msg: [32]byte(alias)}] = out[i]
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return out, nil
}

// toTransaction converts a sidecar transaction, returning its account too.
func toTransaction(j txJSON) (chain.Transaction, string, error) {
	addr, err := address.ParseRawAddr(j.Address)
	if err != nil {
		return chain.Transaction{}, "", fmt.Errorf("sandbox: transaction address %q: %w", j.Address, err)
	}
	tx := chain.Transaction{Success: j.Success, Aborted: j.Aborted, ExitCode: -1}
	if j.ExitCode != nil {
		tx.ExitCode = *j.ExitCode
	}
	if tx.LT, err = strconv.ParseUint(j.LT, 10, 64); err != nil {
		return chain.Transaction{}, "", fmt.Errorf("sandbox: transaction lt: %w", err)
	}
	if tx.Hash, err = hash32(j.Hash); err != nil {
		return chain.Transaction{}, "", fmt.Errorf("sandbox: transaction hash: %w", err)
	}
	if j.InMessageHash != "" {
		if tx.InMessageHash, err = hash32(j.InMessageHash); err != nil {
			return chain.Transaction{}, "", fmt.Errorf("sandbox: transaction inbound message hash: %w", err)
		}
	}
	return tx, addr.StringRaw(), nil
}

// entryIn converts a get-method argument to its JSON form.
func entryIn(v any) (any, error) {
	switch v := v.(type) {
	case nil:
		return map[string]any{"type": "null"}, nil
	case *big.Int:
		if v == nil {
			return map[string]any{"type": "null"}, nil
		}
		return map[string]any{"type": "int", "value": v.String()}, nil
	case int, int8, int16, int32, int64:
		return map[string]any{"type": "int", "value": strconv.FormatInt(reflect.ValueOf(v).Int(), 10)}, nil
	case uint, uint8, uint16, uint32, uint64:
		return map[string]any{"type": "int", "value": strconv.FormatUint(reflect.ValueOf(v).Uint(), 10)}, nil
	case *cell.Cell:
		if v == nil {
			return map[string]any{"type": "null"}, nil
		}
		return map[string]any{"type": "cell", "boc": v.ToBOC()}, nil
	case *cell.Slice:
		c, err := v.ToCell()
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "slice", "boc": c.ToBOC()}, nil
	case []any:
		items := make([]any, len(v))
		for i, x := range v {
			var err error
			if items[i], err = entryIn(x); err != nil {
				return nil, fmt.Errorf("tuple item %d: %w", i, err)
			}
		}
		return map[string]any{"type": "tuple", "items": items}, nil
	default:
		return nil, fmt.Errorf("unsupported type %T", v)
	}
}

// entryOut converts a get-method result to its Go form, as tonutils-go does.
func entryOut(e entryJSON) (any, error) {
	switch e.Type {
	case "null":
		return nil, nil
	case "int":
		n, ok := new(big.Int).SetString(e.Value, 10)
		if !ok {
			return nil, fmt.Errorf("int %q is not a number", e.Value)
		}
		return n, nil
	case "cell":
		return fromBoC(e.BoC)
	case "slice":
		c, err := fromBoC(e.BoC)
		if err != nil {
			return nil, err
		}
		return c.BeginParse(), nil
	case "tuple":
		items := make([]any, len(e.Items))
		for i, x := range e.Items {
			var err error
			if items[i], err = entryOut(x); err != nil {
				return nil, fmt.Errorf("tuple item %d: %w", i, err)
			}
		}
		return items, nil
	default:
		return nil, fmt.Errorf("unknown stack entry type %q", e.Type)
	}
}

func fromBoC(b []byte) (*cell.Cell, error) {
	if len(b) == 0 {
		return nil, errors.New("no BoC")
	}
	return cell.FromBOC(b)
}

// hash32 decodes a 64-digit hex hash.
func hash32(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("%d bytes, want 32", len(b))
	}
	return b, nil
}

// rawAddr returns addr as the sidecar takes it, "wc:hex".
func rawAddr(addr *address.Address) (string, error) {
	if addr == nil {
		return "", errors.New("sandbox: nil address")
	}
	if addr.Type() != address.StdAddress {
		return "", fmt.Errorf("sandbox: address %s is not a standard address", addr)
	}
	return addr.StringRaw(), nil
}
