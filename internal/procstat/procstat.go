// Package procstat reads how much CPU this process and the whole machine
// have used, so that measurements can say how much of the machine other
// processes took while they ran. Linux only; elsewhere it reports 0.
package procstat

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SelfCPU is the CPU time this process has used so far, user and system.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MachineCPU is the CPU time every process on the machine has used so far
// (the busy columns of /proc/stat's cpu line), 0 if unknown.
func MachineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	return parseStat(string(b))
}

func parseStat(stat string) time.Duration {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
