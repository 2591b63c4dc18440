package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

func TestJoinSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the sandbox chain and real nodes")
	}
	var out strings.Builder
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, []string{"-join", "2", "-json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Join []joinResult `json:"join"`
	}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("%v in %q", err, out.String())
	}
	if len(rep.Join) != 2 {
		t.Fatalf("%d results, want 2", len(rep.Join))
	}
	for _, r := range rep.Join {
		if r.Started <= 0 || r.Routed < r.Started {
			t.Errorf("result %+v: routed before started", r)
		}
	}
}
