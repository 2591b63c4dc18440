package procstat

import (
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		// user nice system idle iowait irq softirq steal: 100+0+50+20+10+5 ticks busy
		{"cpu  100 0 50 9999 7777 20 10 5 0 0\ncpu0 1 2 3\n", 185 * 10 * time.Millisecond},
		{"cpu 1 2\n", 0},
		{"intr 1 2 3 4 5 6 7 8 9\n", 0},
		{"", 0},
	} {
		if got := parseStat(tt.in); got != tt.want {
			t.Errorf("parseStat(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestSelfCPUGrows(t *testing.T) {
	before := SelfCPU()
	deadline := time.Now().Add(5 * time.Second)
	for SelfCPU() <= before && time.Now().Before(deadline) {
		for i := 0; i < 1e6; i++ {
			_ = i * i
		}
	}
	if SelfCPU() <= before {
		t.Fatal("SelfCPU did not grow while this test burned CPU")
	}
}
