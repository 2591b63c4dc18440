package payments

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Million is the number of tokens a price is quoted for, and the number of
// parts per million a fee is quoted in.
const Million = 1_000_000

// Price is in nanoTON per million tokens, as a worker quotes it for one
// model in its offer. The same type is the worker's configured price, the
// offer's and the receipt's.
type Price struct {
	Prompt     int64 `json:"prompt" toml:"prompt"`         // uncached prompt tokens
	Cached     int64 `json:"cached" toml:"cached"`         // prompt tokens served from the engine's cache
	Completion int64 `json:"completion" toml:"completion"` // generated tokens
}

// Tokens are the counts an answer is billed for. Cached tokens are part of
// the prompt, as engines report them: Cached <= Prompt.
type Tokens struct {
	Prompt     int64
	Cached     int64
	Completion int64
}

// Bill is what one answer costs, in nanoTON: the worker's amount for its
// tokens, the proxy's fee on top, and their sum, which the client pays. Its
// JSON is the cost_nanoton object apps get from the gateway.
type Bill struct {
	Worker int64 `json:"worker"`
	Fee    int64 `json:"proxy_fee"`
	Total  int64 `json:"total"`
}

// Errors from Cost. They describe the input; retrying the same input cannot
// help.
var (
	// ErrOverflow means an amount does not fit in int64 nanoTON.
	ErrOverflow = errors.New("amount overflows int64 nanoTON")
	// ErrNegative means a token count, price or fee is below zero.
	ErrNegative = errors.New("negative token count, price or fee")
	// ErrCachedAbovePrompt means more cached tokens than prompt tokens.
	ErrCachedAbovePrompt = errors.New("cached tokens exceed prompt tokens")
)

// Cost bills t at p, with the proxy's fee in parts per million of the
// worker's amount. All arithmetic is exact integer arithmetic:
//
//	worker = ceil(((prompt-cached)*p.Prompt + cached*p.Cached + completion*p.Completion) / 1e6)
//	fee    = ceil(worker * feePPM / 1e6)
//	total  = worker + fee
//
// Intermediate products are 128-bit, so only a result that does not fit in
// int64 fails, with ErrOverflow.
func Cost(t Tokens, p Price, feePPM int64) (Bill, error) {
	switch {
	case t.Prompt < 0 || t.Cached < 0 || t.Completion < 0:
		return Bill{}, fmt.Errorf("%w: tokens %+v", ErrNegative, t)
	case p.Prompt < 0 || p.Cached < 0 || p.Completion < 0:
		return Bill{}, fmt.Errorf("%w: price %+v", ErrNegative, p)
	case feePPM < 0:
		return Bill{}, fmt.Errorf("%w: fee %d ppm", ErrNegative, feePPM)
	case t.Cached > t.Prompt:
		return Bill{}, fmt.Errorf("%w: %d > %d", ErrCachedAbovePrompt, t.Cached, t.Prompt)
	}
	// Each product is below 2^126, so the sum of three, plus the rounding
	// term, stays below 2^128.
	var acc u128
	acc = acc.addMul(uint64(t.Prompt-t.Cached), uint64(p.Prompt))
	acc = acc.addMul(uint64(t.Cached), uint64(p.Cached))
	acc = acc.addMul(uint64(t.Completion), uint64(p.Completion))
	worker, ok := acc.divCeilMillion()
	if !ok {
		return Bill{}, fmt.Errorf("worker amount: %w", ErrOverflow)
	}
	fee, ok := u128{}.addMul(uint64(worker), uint64(feePPM)).divCeilMillion()
	if !ok {
		return Bill{}, fmt.Errorf("proxy fee: %w", ErrOverflow)
	}
	if worker > math.MaxInt64-fee {
		return Bill{}, fmt.Errorf("total: %w", ErrOverflow)
	}
	return Bill{Worker: worker, Fee: fee, Total: worker + fee}, nil
}

// u128 is an unsigned 128-bit integer.
type u128 struct{ hi, lo uint64 }

func (a u128) addMul(x, y uint64) u128 {
	hi, lo := bits.Mul64(x, y)
	lo, c := bits.Add64(a.lo, lo, 0)
	hi, _ = bits.Add64(a.hi, hi, c)
	return u128{hi, lo}
}

// divCeilMillion returns ceil(a / 1e6) if it fits in int64.
func (a u128) divCeilMillion() (int64, bool) {
	lo, c := bits.Add64(a.lo, Million-1, 0)
	hi, c2 := bits.Add64(a.hi, 0, c)
	if c2 != 0 || hi >= Million {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, Million)
	if q > math.MaxInt64 {
		return 0, false
	}
	return int64(q), true
}
