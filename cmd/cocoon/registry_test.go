package main

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/discovery/registry"
)

// The owner's set_min_tcb message as the command prints it: the body
// decodes to the minimum given, and a mistake on the command line is a
// usage error (exit code 2) that names the flag.
func TestRegistrySetMinTCB(t *testing.T) {
	svn := "03000400000000000000000000000000"
	root := "0:" + strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		args    []string
		want    registry.TCB
		link    bool   // with --root: a ton://transfer link too
		wantErr string // a usage error containing this
	}{
		{"tee svn", []string{"--tee-tcb-svn", svn}, registry.TCB{TEETCBSVN: [16]byte{3, 0, 4}}, false, ""},
		{"every component and root", []string{"--tee-tcb-svn", "0x" + svn, "--cpu-svn", "05050202030100030000000000000000", "--pce-svn", "11", "--root", root},
			registry.TCB{TEETCBSVN: [16]byte{3, 0, 4}, CPUSVN: [16]byte{5, 5, 2, 2, 3, 1, 0, 3}, PCESVN: 11}, true, ""},
		{"any", []string{"--any"}, registry.TCB{}, false, ""},
		{"nothing given", nil, registry.TCB{}, false, "give --tee-tcb-svn, --cpu-svn or --pce-svn (or --any"},
		{"any with a component", []string{"--any", "--pce-svn", "1"}, registry.TCB{}, false, "--any sets every component to zero"},
		{"bad hex", []string{"--tee-tcb-svn", "zz"}, registry.TCB{}, false, `--tee-tcb-svn: "zz" is not hex`},
		{"short svn", []string{"--cpu-svn", "0505"}, registry.TCB{}, false, `--cpu-svn: "0505" is 2 bytes, want 16 (32 hex digits)`},
		{"pce svn too big", []string{"--pce-svn", "65536"}, registry.TCB{}, false, "--pce-svn: 65536 is over 65535"},
		{"bad root", []string{"--any", "--root", "nowhere"}, registry.TCB{}, false, `--root: "nowhere" is not a TON address`},
		{"extra argument", []string{"--any", "now"}, registry.TCB{}, false, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(t.Context(), append([]string{"registry", "set-min-tcb"}, tt.args...), env(nil), &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || exitCode(err) != 2 {
					t.Fatalf("err = %v (exit code %d), want a usage error containing %q", err, exitCode(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`body \(BoC, base64\): (\S+)`).FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("no body in %q", out.String())
			}
			boc, err := base64.StdEncoding.DecodeString(m[1])
			if err != nil {
				t.Fatal(err)
			}
			if got := minTCBOf(t, boc); got != tt.want {
				t.Fatalf("the message sets %v, want %v", got, tt.want)
			}
			l := regexp.MustCompile(`ton://transfer/(\S+)\?amount=50000000&bin=(\S+)`).FindStringSubmatch(out.String())
			if (l != nil) != tt.link {
				t.Fatalf("transfer link %v, want one: %v; output %q", l, tt.link, out.String())
			}
			if l != nil {
				bin, err := base64.RawURLEncoding.DecodeString(l[2])
				if err != nil || !bytes.Equal(bin, boc) {
					t.Fatalf("the link carries %q (%v), not the body", l[2], err)
				}
				if _, err := url.Parse("ton://transfer/" + l[1]); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"registry"}, env(nil), &out, &errOut); err == nil || exitCode(err) != 2 ||
		!strings.Contains(err.Error(), "cocoon registry set-min-tcb") {
		t.Fatalf("registry without a subcommand: %v, want usage naming set-min-tcb", err)
	}
}

// minTCBOf decodes an owner's set_min_tcb body.
func minTCBOf(t *testing.T, boc []byte) registry.TCB {
	t.Helper()
	c, err := cell.FromBOC(boc)
	if err != nil {
		t.Fatal(err)
	}
	s := c.BeginParse()
	if op := s.MustLoadUInt(32); op != registry.OpSetMinTCB {
		t.Fatalf("op %#x, want set_min_tcb", op)
	}
	s.MustLoadUInt(64)
	if s.BitsLeft() != 0 || s.RefsNum() != 1 {
		t.Fatalf("%d bits and %d refs after the header, want one ref", s.BitsLeft(), s.RefsNum())
	}
	tcb, err := registry.DecodeMinTCB(s.MustLoadRef().MustToCell())
	if err != nil {
		t.Fatal(err)
	}
	return tcb
}
