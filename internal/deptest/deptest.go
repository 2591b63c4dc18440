// Package deptest checks the project's import rules: which of its packages
// may depend on which. Its test, TestImportRules (run by make lint and by
// go test ./...), reads the import graph with go list and fails on every
// forbidden dependency, naming the chain of imports that makes it.
//
// Only the packages' own imports count, not their tests': a test may
// import what its package may not. A chain is walked through the
// project's packages only, so a dependency of a third-party library (the
// DHT library imports "testing") is not the project's doing.
package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

// Graph is an import graph: each package's import path and the packages
// its non-test files import.
type Graph map[string][]string

// Rule forbids some of the project's packages to depend, directly or
// through other project packages, on others.
//
// Patterns name project packages relative to the module path: "node" is
// the package module/node; "inference/..." is inference and every package
// below it; "..." alone is every package of the module; "*" matches within
// one path element, so ".../*test" is every package below the module whose
// last element ends in "test" (p2p/p2ptest, not attest).
type Rule struct {
	Why    string   // what the rule keeps, printed with each failure
	From   []string // the packages it applies to...
	Except []string // ...but for these
	To     []string // the project packages they must not depend on...
	Allow  []string // ...but for these
	// External are packages outside the module (full import paths, such
	// as "testing") that the packages must not import themselves.
	External []string
}

// Violation is one forbidden dependency.
type Violation struct {
	Why    string
	Chain  []string // import paths: each imports the next; the last is forbidden
	module string
}

// String is the chain, module prefix trimmed, and the rule it breaks:
// "discovery -> node: domain packages never import node".
func (v Violation) String() string {
	names := make([]string, len(v.Chain))
	for i, p := range v.Chain {
		names[i] = strings.TrimPrefix(p, v.module+"/")
	}
	return strings.Join(names, " -> ") + ": " + v.Why
}

// Check returns every forbidden dependency in g under rules, for the
// packages of module. For each package a rule applies to, it walks the
// imports breadth first through project packages and reports each
// forbidden package it reaches, with the shortest chain to it; it does not
// walk on from a forbidden package, whose own imports are a later fix.
// The result is sorted by rule, then by package.
func Check(g Graph, module string, rules []Rule) []Violation {
	pkgs := make([]string, 0, len(g))
	for p := range g {
		if inModule(module, p) {
			pkgs = append(pkgs, p)
		}
	}
	slices.Sort(pkgs)
	var out []Violation
	for _, r := range rules {
		from, except := compile(module, r.From), compile(module, r.Except)
		to, allow := compile(module, r.To), compile(module, r.Allow)
		forbidden := func(p string) bool {
			if inModule(module, p) {
				return matchAny(to, p) && !matchAny(allow, p)
			}
			return slices.Contains(r.External, p)
		}
		for _, p := range pkgs {
			if !matchAny(from, p) || matchAny(except, p) {
				continue
			}
			for _, chain := range walk(g, module, p, forbidden) {
				out = append(out, Violation{Why: r.Why, Chain: chain, module: module})
			}
		}
	}
	return out
}

// walk searches the imports of start breadth first, through project
// packages only, and returns the shortest chain from start to each package
// bad reports, in the order it reaches them.
func walk(g Graph, module, start string, bad func(string) bool) [][]string {
	parent := map[string]string{start: ""}
	queue := []string{start}
	var chains [][]string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, q := range g[p] {
			if _, seen := parent[q]; seen {
				continue
			}
			parent[q] = p
			if bad(q) {
				chains = append(chains, chainTo(parent, q))
				continue
			}
			if inModule(module, q) {
				queue = append(queue, q)
			}
		}
	}
	return chains
}

// chainTo is the path from the walk's start to p, following parent.
func chainTo(parent map[string]string, p string) []string {
	var chain []string
	for ; p != ""; p = parent[p] {
		chain = append(chain, p)
	}
	slices.Reverse(chain)
	return chain
}

func inModule(module, p string) bool {
	return p == module || strings.HasPrefix(p, module+"/")
}

// compile turns patterns (see Rule) into regular expressions on full
// import paths.
func compile(module string, patterns []string) []*regexp.Regexp {
	res := make([]*regexp.Regexp, len(patterns))
	for i, pat := range patterns {
		re := regexp.QuoteMeta(module + "/" + pat)
		if rest, ok := strings.CutSuffix(re, `/\.\.\.`); ok {
			re = rest + `(/.*)?` // "x/..." is x too
		}
		re = strings.ReplaceAll(re, `\.\.\.`, `.*`)
		re = strings.ReplaceAll(re, `\*`, `[^/]*`)
		res[i] = regexp.MustCompile("^" + re + "$")
	}
	return res
}

func matchAny(res []*regexp.Regexp, p string) bool {
	return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(p) })
}

// Load runs go list -e -deps in dir on patterns and returns the import
// graph, the path of the main module and what go list found wrong with
// packages (an import cycle, a missing package), one line each. Packages
// need only parse, not compile.
func Load(dir string, patterns ...string) (g Graph, module string, problems []string, err error) {
	cmd := exec.Command("go", append([]string{"list", "-e", "-deps", "-json=ImportPath,Imports,Module,Error"}, patterns...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, "", nil, fmt.Errorf("go list: %w: %s", err, stderr.Bytes())
	}
	g = make(Graph)
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Module     *struct {
				Path string
				Main bool
			}
			Error *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, "", nil, fmt.Errorf("decoding go list: %w", err)
		}
		g[p.ImportPath] = p.Imports
		if p.Module != nil && p.Module.Main {
			module = p.Module.Path
		}
		if p.Error != nil {
			problems = append(problems, p.ImportPath+": "+p.Error.Err)
		}
	}
	if module == "" {
		return nil, "", nil, errors.New("go list: no package of the main module")
	}
	return g, module, problems, nil
}
