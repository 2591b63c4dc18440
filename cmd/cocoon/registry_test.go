package main

import (
	"bytes"
	"encoding/base64"
	"math/big"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/internal/logtest"
	"github.com/cocoon-mesh/cocoon/testnet"
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
			out, ok := registryCmd(t, "set-min-tcb", tt.args, tt.wantErr)
			if !ok {
				return
			}
			body := messageBody(t, out)
			boc := body.ToBOC()
			if got := minTCBOf(t, body); got != tt.want {
				t.Fatalf("the message sets %v, want %v", got, tt.want)
			}
			l := regexp.MustCompile(`ton://transfer/(\S+)\?amount=50000000&bin=(\S+)`).FindStringSubmatch(out)
			if (l != nil) != tt.link {
				t.Fatalf("transfer link %v, want one: %v; output %q", l, tt.link, out)
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
func minTCBOf(t *testing.T, c *cell.Cell) registry.TCB {
	t.Helper()
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

// The owner's set_measurements message as the command prints it.
func TestRegistrySetMeasurements(t *testing.T) {
	reg := strings.Repeat("7d", 48)
	img := strings.Join([]string{reg, reg, reg, reg, reg}, ":")
	tests := []struct {
		name    string
		args    []string
		images  int
		wantErr string
	}{
		{"two images", []string{"--measurement", img, "--measurement", img}, 2, ""},
		{"none", []string{"--none"}, 0, ""},
		{"nothing given", nil, 0, "give --measurement (or --none"},
		{"none with an image", []string{"--none", "--measurement", img}, 0, "--none allows no image"},
		{"four registers", []string{"--measurement", strings.Join([]string{reg, reg, reg, reg}, ":")}, 0, "--measurement 1: 4 colon-separated values, want 5"},
		{"bad hex", []string{"--measurement", img, "--measurement", "zz" + img[2:]}, 0, `--measurement 2: mrtd: "zz`},
		{"short register", []string{"--measurement", img[:len(img)-2]}, 0, "--measurement 1: rtmr3: 47 bytes, want 48"},
		{"too many", slices.Repeat([]string{"--measurement", img}, 17), 0, "--measurement: 17 given, at most 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := registryCmd(t, "set-measurements", tt.args, tt.wantErr)
			if !ok {
				return
			}
			s := messageBody(t, out).BeginParse()
			if op := s.MustLoadUInt(32); op != registry.OpSetMeasurements {
				t.Fatalf("op %#x, want set_measurements", op)
			}
			s.MustLoadUInt(64)
			var root any
			if d := s.MustLoadMaybeRef(); d != nil {
				root = d.MustToCell()
			}
			ms, err := registry.DecodeMeasurements(root)
			if err != nil || len(ms) != tt.images {
				t.Fatalf("the message holds %d images (%v), want %d", len(ms), err, tt.images)
			}
			for _, m := range ms {
				if m.MRTD[0] != 0x7d || m.RTMR[3][47] != 0x7d {
					t.Fatalf("image %x, want 7d throughout", m.MRTD)
				}
			}
		})
	}
}

// messageBody finds the body an owner's message command printed.
func messageBody(t *testing.T, out string) *cell.Cell {
	t.Helper()
	m := regexp.MustCompile(`body \(BoC, base64\): (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no body in %q", out)
	}
	boc, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	c, err := cell.FromBOC(boc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The messages the commands print are what the real root contract, run
// by the sandbox emulator, accepts from its owner: the registry read back
// holds the minimum TCB and the image given on the command line.
func TestRegistryMessagesAcceptedByContract(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the sandbox chain runs @ton/sandbox in Node.js")
	}
	ctx := t.Context()
	c, err := testnet.StartChain(ctx, "local", []string{"sim-small"}, logtest.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	reg := strings.Repeat("42", 48)
	for _, args := range [][]string{
		{"set-min-tcb", "--tee-tcb-svn", "03000400000000000000000000000000", "--pce-svn", "11", "--query-id", "5"},
		{"set-measurements", "--measurement", strings.Join([]string{reg, reg, reg, reg, reg}, ":")},
	} {
		out, _ := registryCmd(t, args[0], args[1:], "")
		txs, err := c.Sandbox.SendInternal(ctx, "owner", c.Root, big.NewInt(50_000_000), messageBody(t, out))
		if err != nil {
			t.Fatal(err)
		}
		if len(txs) < 2 || !txs[1].Success {
			t.Fatalf("%s: the root contract refused the message: %+v", args[0], txs)
		}
	}
	got, err := registry.Read(ctx, c.Sandbox, c.Root)
	if err != nil {
		t.Fatal(err)
	}
	if want := (registry.TCB{TEETCBSVN: [16]byte{3, 0, 4}, PCESVN: 11}); got.MinTCB != want {
		t.Fatalf("the contract holds min TCB %v, want %v", got.MinTCB, want)
	}
	if len(got.Measurements) != 1 || got.Measurements[0].MRTD[0] != 0x42 {
		t.Fatalf("the contract holds images %v, want the one given", got.Measurements)
	}
}

// registryCmd runs `cocoon registry sub args`: with wantErr, it checks the
// command fails as a usage error saying it and reports false; else it
// returns what the command printed.
func registryCmd(t *testing.T, sub string, args []string, wantErr string) (string, bool) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"registry", sub}, args...), env(nil), &out, &errOut)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) || exitCode(err) != 2 {
			t.Fatalf("err = %v (exit code %d), want a usage error containing %q", err, exitCode(err), wantErr)
		}
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), true
}
