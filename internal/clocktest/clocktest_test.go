package clocktest_test

import (
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/internal/clocktest"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	c := clocktest.New(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now() = %v, want %v", got, t0)
	}
	c.Advance(time.Minute)
	c.Advance(-time.Second)
	if got, want := c.Now(), t0.Add(59*time.Second); !got.Equal(want) {
		t.Fatalf("after advancing: Now() = %v, want %v", got, want)
	}
	c.Set(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("after Set: Now() = %v, want %v", got, t0)
	}
}
