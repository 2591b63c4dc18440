package main

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// heyArgs runs Debian's hey with the spec's load: Telegram Cocoon's own
// harness drives its proxies with it.
func (s loadSpec) heyArgs() []string {
	args := []string{"-c", strconv.Itoa(s.Concurrency), "-m", "POST", "-T", "application/json", "-d", s.Body}
	if s.Requests > 0 {
		args = append(args, "-n", strconv.Itoa(s.Requests))
	} else {
		args = append(args, "-z", s.Duration.String())
	}
	if !s.KeepAlive {
		args = append(args, "-disable-keepalive")
	}
	return append(args, s.URL)
}

// parseHey reads hey's summary: requests per second, the latency
// percentiles, the mean response wait (its nearest to time to first byte),
// and the status codes.
func parseHey(out string) (*loadResult, error) {
	res := &loadResult{}
	secs := func(v string) time.Duration {
		f, _ := strconv.ParseFloat(v, 64)
		return time.Duration(f * float64(time.Second))
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && f[0] == "Requests/sec:":
			res.ReqPerSec, _ = strconv.ParseFloat(f[1], 64)
		case len(f) >= 2 && f[0] == "Total:":
			res.Elapsed = secs(f[1])
		case len(f) >= 4 && f[0] == "50%" && f[1] == "in":
			res.Latency.P50 = secs(f[2])
		case len(f) >= 4 && f[0] == "90%" && f[1] == "in":
			res.Latency.P90 = secs(f[2])
		case len(f) >= 4 && f[0] == "99%" && f[1] == "in":
			res.Latency.P99 = secs(f[2])
		case len(f) >= 3 && f[0] == "resp" && f[1] == "wait:":
			res.TTFB.P50 = secs(f[2])
		case len(f) >= 3 && strings.HasPrefix(f[0], "[") && f[2] == "responses":
			n, _ := strconv.Atoi(f[1])
			if f[0] == "[200]" {
				res.OK += n
			} else {
				res.Errors += n
				res.ErrorKind = append(res.ErrorKind, "status "+strings.Trim(f[0], "[]"))
			}
		case len(f) >= 2 && strings.HasPrefix(f[0], "[") && strings.HasSuffix(f[0], "]") && !strings.HasSuffix(sc.Text(), "responses"):
			// Error distribution: "[n]	Get ...: error".
			if n, err := strconv.Atoi(strings.Trim(f[0], "[]")); err == nil {
				res.Errors += n
				if len(res.ErrorKind) < 3 {
					res.ErrorKind = append(res.ErrorKind, strings.Join(f[1:], " "))
				}
			}
		}
	}
	if res.ReqPerSec == 0 && res.OK == 0 {
		return nil, fmt.Errorf("hey printed no summary: %.300s", out)
	}
	res.Latency.N, res.TTFB.N = res.OK, res.OK
	return res, nil
}
