package payments_test

import (
	"errors"
	"math"
	"testing"

	"github.com/cocoon-mesh/cocoon/payments"
)

func TestCost(t *testing.T) {
	const max = math.MaxInt64
	for _, tc := range []struct {
		name   string
		tok    payments.Tokens
		price  payments.Price
		feePPM int64
		want   payments.Bill
		err    error
	}{
		{"zero", payments.Tokens{}, payments.Price{1, 1, 1}, 0, payments.Bill{}, nil},
		{"one million prompt", payments.Tokens{Prompt: 1e6}, payments.Price{Prompt: 5}, 0, payments.Bill{5, 0, 5}, nil},
		{"one token rounds up", payments.Tokens{Completion: 1}, payments.Price{Completion: 1}, 0, payments.Bill{1, 0, 1}, nil},
		{"exact multiple no rounding", payments.Tokens{Completion: 2}, payments.Price{Completion: 500_000}, 0, payments.Bill{1, 0, 1}, nil},
		{"just above multiple", payments.Tokens{Completion: 2}, payments.Price{Completion: 500_001}, 0, payments.Bill{2, 0, 2}, nil},
		{"cached billed at cached price", payments.Tokens{Prompt: 1000, Cached: 400, Completion: 100},
			payments.Price{Prompt: 2e6, Cached: 1e6, Completion: 8e6}, 0,
			// 600*2 + 400*1 + 100*8 = 2400 nanoTON
			payments.Bill{2400, 0, 2400}, nil},
		{"fee 1%", payments.Tokens{Prompt: 1e6}, payments.Price{Prompt: 1000}, 10_000, payments.Bill{1000, 10, 1010}, nil},
		{"fee rounds up", payments.Tokens{Prompt: 1e6}, payments.Price{Prompt: 1}, 1, payments.Bill{1, 1, 2}, nil},
		{"fee zero on zero", payments.Tokens{}, payments.Price{}, 999_999, payments.Bill{}, nil},
		{"max int64 worker", payments.Tokens{Prompt: 1e6}, payments.Price{Prompt: max}, 0, payments.Bill{max, 0, max}, nil},
		{"huge products fit in 128 bits", payments.Tokens{Prompt: max, Cached: 0, Completion: max},
			payments.Price{Prompt: 1, Completion: 1}, 0, payments.Bill{18446744073710, 0, 18446744073710}, nil},
		{"large but fits", payments.Tokens{Prompt: max}, payments.Price{Prompt: 1}, 0,
			payments.Bill{9223372036855, 0, 9223372036855}, nil},
		{"worker overflow", payments.Tokens{Prompt: max}, payments.Price{Prompt: max}, 0, payments.Bill{}, payments.ErrOverflow},
		{"worker just over", payments.Tokens{Prompt: 1e6 + 1}, payments.Price{Prompt: max}, 0, payments.Bill{}, payments.ErrOverflow},
		{"fee overflow", payments.Tokens{Prompt: 1e6}, payments.Price{Prompt: max}, 2e6, payments.Bill{}, payments.ErrOverflow},
		{"total overflow", payments.Tokens{Prompt: 1e6}, payments.Price{Prompt: max}, 1, payments.Bill{}, payments.ErrOverflow},
		{"negative tokens", payments.Tokens{Completion: -1}, payments.Price{}, 0, payments.Bill{}, payments.ErrNegative},
		{"negative price", payments.Tokens{}, payments.Price{Cached: -1}, 0, payments.Bill{}, payments.ErrNegative},
		{"negative fee", payments.Tokens{}, payments.Price{}, -1, payments.Bill{}, payments.ErrNegative},
		{"cached above prompt", payments.Tokens{Prompt: 1, Cached: 2}, payments.Price{}, 0, payments.Bill{}, payments.ErrCachedAbovePrompt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := payments.Cost(tc.tok, tc.price, tc.feePPM)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Cost error = %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("Cost = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzCost checks the invariants: total = worker + fee, the amounts are not
// negative, the worker amount is the exact cost rounded up, and the bill
// does not go down when prompt or completion tokens go up.
func FuzzCost(f *testing.F) {
	f.Add(int64(1000), int64(10), int64(50), int64(2e6), int64(1e6), int64(8e6), int64(10_000))
	f.Add(int64(math.MaxInt64), int64(0), int64(0), int64(1), int64(0), int64(0), int64(0))
	f.Add(int64(1), int64(1), int64(1), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), int64(1e6))
	f.Fuzz(func(t *testing.T, prompt, cached, completion, pp, pc, po, fee int64) {
		tok := payments.Tokens{Prompt: prompt, Cached: cached, Completion: completion}
		price := payments.Price{Prompt: pp, Cached: pc, Completion: po}
		b, err := payments.Cost(tok, price, fee)
		if err != nil {
			if b != (payments.Bill{}) {
				t.Fatalf("error %v with bill %+v", err, b)
			}
			return
		}
		if b.Worker < 0 || b.Fee < 0 || b.Total != b.Worker+b.Fee || b.Total < b.Worker {
			t.Fatalf("bill %+v breaks total = worker + fee", b)
		}
		// worker = ceil(exact/1e6), checked where exact fits in int64.
		if prompt < 1e9 && completion < 1e9 && pp < 1e9 && pc < 1e9 && po < 1e9 {
			exact := (prompt-cached)*pp + cached*pc + completion*po
			if b.Worker*1e6 < exact || (b.Worker > 0 && (b.Worker-1)*1e6 >= exact) {
				t.Fatalf("worker %d is not ceil(%d/1e6)", b.Worker, exact)
			}
		}
		for _, more := range []payments.Tokens{
			{Prompt: prompt + 1, Cached: cached, Completion: completion},
			{Prompt: prompt, Cached: cached, Completion: completion + 1},
		} {
			if more.Prompt < 0 || more.Completion < 0 {
				continue // wrapped at MaxInt64
			}
			b2, err := payments.Cost(more, price, fee)
			if err != nil {
				if !errors.Is(err, payments.ErrOverflow) {
					t.Fatalf("more tokens: %v", err)
				}
				continue
			}
			if b2.Worker < b.Worker || b2.Fee < b.Fee || b2.Total < b.Total {
				t.Fatalf("more tokens %+v cost %+v, less than %+v for %+v", more, b2, b, tok)
			}
		}
	})
}
