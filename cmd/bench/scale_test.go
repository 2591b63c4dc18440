package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseTuning(t *testing.T) {
	tests := []struct {
		in   string
		opts int
		ok   bool
	}{
		{"", 0, true},
		{"flood-publish=false", 1, true},
		{"heartbeat=500ms,d=8", 1, true}, // one set of gossipsub parameters
		{"heartbeat=500ms,validate-workers=4", 2, true},
		{"heartbeat=0s", 0, false},
		{"d=2", 0, false},
		{"nonsense", 0, false},
		{"colour=blue", 0, false},
	}
	for _, tt := range tests {
		opts, _, err := parseTuning(tt.in)
		if (err == nil) != tt.ok || len(opts) != tt.opts {
			t.Errorf("parseTuning(%q) = %d options, %v; want %d, ok %v", tt.in, len(opts), err, tt.opts, tt.ok)
		}
	}
}

// The scale group end to end on a small network: it runs, prints a table
// and JSON with every check. No timing is checked.
func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates two small networks")
	}
	for _, asJSON := range []bool{false, true} {
		sf := addScaleFlags(flag.NewFlagSet("bench", flag.ContinueOnError))
		*sf.nodes, *sf.publishers, *sf.joins, *sf.spread = "12", 4, 1, 0
		var out strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := runScale(ctx, sf, asJSON, &out, io.Discard)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !asJSON {
			if !strings.Contains(out.String(), "no bad offer in any book: PASS") {
				t.Errorf("table:\n%s", out.String())
			}
			continue
		}
		var rep scaleReport
		if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Runs) != 1 || rep.Checks != 4 || rep.Runs[0].Result.Gossip.Pairs != 4*11 {
			t.Errorf("report: %d runs, %d checks", len(rep.Runs), rep.Checks)
		}
	}
}
