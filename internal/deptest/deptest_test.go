package deptest_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cocoon-mesh/cocoon/internal/deptest"
)

// testHelpers are the packages only tests may import: the fakes beside
// the interfaces they fake (p2p/p2ptest; a last element ending in "test",
// which attest's is not), this package, and internal/headless, which
// drives a browser for the dashboard's tests.
var testHelpers = []string{".../*test", "internal/headless"}

// rules are the project's import rules (STYLE.md, "Layout"; issue 13).
var rules = []deptest.Rule{
	{
		Why: "a domain package never imports node: node assembles them, not the reverse",
		From: []string{
			"inference/...", "payments/...", "attest/...", "discovery/...", "chain/...", "admin/...",
		},
		To: []string{"node/..."},
	},
	{
		Why:   "p2p imports no project package: everything else builds on it",
		From:  []string{"p2p/..."},
		To:    []string{"..."},
		Allow: []string{"p2p/...", "internal/secret"},
	},
	{
		Why:  "internal/secret imports no project package: p2p may import it",
		From: []string{"internal/secret"},
		To:   []string{"..."},
	},
	{
		Why:  "node never imports a command or the testnet harness: they import node",
		From: []string{"node/..."},
		To:   []string{"cmd/...", "testnet/..."},
	},
	{
		Why:  "attestation knows nothing of inference: inference asks attest for a peer's tier",
		From: []string{"attest/..."},
		To:   []string{"inference/..."},
	},
	{
		Why:  "chain only talks to TON: payments and discovery build on it, not the reverse",
		From: []string{"chain/..."},
		To:   []string{"payments/...", "discovery/..."},
	},
	{
		Why:      "production code imports no test helper",
		From:     []string{"..."},
		Except:   testHelpers,
		To:       testHelpers,
		External: []string{"testing", "go.uber.org/goleak", "net/http/httptest"},
	},
	{
		Why:    "only a command may ship the testnet harness",
		From:   []string{"..."},
		Except: []string{"cmd/...", "testnet/..."},
		To:     []string{"testnet/..."},
	},
}

// TestImportRules checks the whole module against rules.
func TestImportRules(t *testing.T) {
	g, module, problems, err := deptest.Load("../..", "./...") // from the module root
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Logf("go list: %s", p)
	}
	if len(g) < 10 {
		t.Fatalf("go list found %d packages: not the module", len(g))
	}
	for _, v := range deptest.Check(g, module, rules) {
		t.Errorf("forbidden import: %s", v)
	}
}

// TestCheck shows that Check fails where it should, naming the shortest
// chain, on a small made-up module.
func TestCheck(t *testing.T) {
	const m = "example.com/m"
	// discovery reaches node two ways; the shorter is through offers,
	// though dht comes first.
	g := deptest.Graph{
		m + "/discovery":           {"context", m + "/discovery/dht", m + "/discovery/offers"},
		m + "/discovery/offers":    {m + "/node", m + "/p2p"},
		m + "/discovery/dht":       {m + "/discovery/dht/table"},
		m + "/discovery/dht/table": {m + "/node"},
		m + "/node":                {m + "/discovery", m + "/p2p"}, // a cycle: the walk must end
		m + "/p2p":                 {"fmt", m + "/p2p/frame", m + "/internal/secret"},
		m + "/p2p/frame":           {"io"},
		m + "/p2p/p2ptest":         {"testing", m + "/p2p"},
		m + "/internal/secret":     {"os"},
		m + "/attest":              {m + "/p2p"},
		m + "/cmd/bench":           {m + "/node", m + "/testnet"},
		m + "/testnet":             {m + "/node"},
		m + "/inference":           {m + "/attest", m + "/inference/worker"},
		m + "/inference/worker":    {m + "/p2p/p2ptest"},
		"context":                  nil,
	}
	tests := []struct {
		name string
		rule deptest.Rule
		want []string // Violation.String of each, in order
	}{
		{
			name: "domain imports node, shortest chain",
			rule: deptest.Rule{Why: "no node", From: []string{"discovery/...", "attest/..."}, To: []string{"node"}},
			want: []string{
				"discovery -> discovery/offers -> node: no node",
				"discovery/dht -> discovery/dht/table -> node: no node",
				"discovery/dht/table -> node: no node",
				"discovery/offers -> node: no node",
			},
		},
		{
			name: "allowed and excepted packages",
			rule: deptest.Rule{
				Why: "leaf", From: []string{"p2p/..."}, Except: []string{"p2p/p2ptest"},
				To: []string{"..."}, Allow: []string{"p2p/...", "internal/secret"},
			},
		},
		{
			name: "test helper reached through another package",
			rule: deptest.Rule{
				Why: "no helpers", From: []string{"..."}, Except: []string{".../*test"},
				To: []string{".../*test"}, External: []string{"testing"},
			},
			want: []string{
				"inference -> inference/worker -> p2p/p2ptest: no helpers",
				"inference/worker -> p2p/p2ptest: no helpers",
			},
		},
		{
			name: "an external package imported directly",
			rule: deptest.Rule{Why: "no testing", From: []string{"p2p/..."}, External: []string{"testing"}},
			want: []string{"p2p/p2ptest -> testing: no testing"},
		},
		{
			name: "no rule broken",
			rule: deptest.Rule{Why: "x", From: []string{"cmd/..."}, To: []string{"inference/..."}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range deptest.Check(g, m, []deptest.Rule{tt.rule}) {
				got = append(got, v.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Check found\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// TestCheckProjectRules runs the project's own rules on a made-up graph of
// the module, today's kind of edges plus one forbidden import, so that a
// rule that can never fail (a mistyped pattern) shows here.
func TestCheckProjectRules(t *testing.T) {
	const m = "github.com/cocoon-mesh/cocoon"
	allowed := deptest.Graph{
		m + "/cmd/cocoon":       {m + "/node", m + "/testnet"},
		m + "/testnet":          {m + "/node"},
		m + "/node":             {m + "/p2p", m + "/inference/router", m + "/internal/secret"},
		m + "/inference/router": {m + "/attest", m + "/p2p"},
		m + "/p2p":              {m + "/internal/secret"},
		m + "/p2p/p2ptest":      {"testing", m + "/p2p"},
		m + "/internal/secret":  {"os"},
	}
	if v := deptest.Check(allowed, m, rules); len(v) != 0 {
		t.Fatalf("allowed imports reported: %v", v)
	}
	tests := []struct {
		from, to string // the forbidden import; "std:" marks a package outside the module
		want     string // the chain of one violation
	}{
		{"discovery/offers", "node", "discovery/offers -> node"},
		{"admin", "node", "admin -> node"},
		{"chain/liteclient", "node", "chain/liteclient -> node"},
		{"attest", "node", "attest -> node"},
		{"p2p", "inference", "p2p -> inference"},
		{"p2p/p2ptest", "attest", "p2p/p2ptest -> attest"},
		{"internal/secret", "payments/ledger", "internal/secret -> payments/ledger"},
		{"node", "cmd/cocoon", "node -> cmd/cocoon"},
		{"node", "testnet", "node -> testnet"},
		{"attest/tdx", "inference/router", "attest/tdx -> inference/router"},
		{"chain", "payments", "chain -> payments"},
		{"chain/sandbox", "discovery/dht", "chain/sandbox -> discovery/dht"},
		{"payments/channels", "p2p/p2ptest", "payments/channels -> p2p/p2ptest"},
		{"inference/router", "internal/headless", "inference/router -> internal/headless"},
		{"inference", "std:testing", "inference -> testing"},
		{"payments/ledger", "std:go.uber.org/goleak", "payments/ledger -> go.uber.org/goleak"},
		{"cmd/bench", "std:net/http/httptest", "cmd/bench -> net/http/httptest"},
		{"examples/chat", "testnet", "examples/chat -> testnet"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			g := maps.Clone(allowed)
			from, to := m+"/"+tt.from, m+"/"+tt.to
			if ext, ok := strings.CutPrefix(tt.to, "std:"); ok {
				to = ext
			}
			g[from] = append(slices.Clone(g[from]), to)
			var got []string
			for _, v := range deptest.Check(g, m, rules) {
				got = append(got, v.String())
			}
			if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, tt.want+": ") }) {
				t.Fatalf("Check found\n\t%s\nwant a violation %q", strings.Join(got, "\n\t"), tt.want)
			}
		})
	}
}
