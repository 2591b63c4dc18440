// Package contracts embeds the compiled contracts and the sandbox sidecar.
//
// The sources live beside this file: root.tolk is the root contract
// (docs/registry.md), compiled by build.mjs into root.boc, which is committed;
// sandbox.mjs runs @ton/sandbox behind a loopback JSON API for chain/sandbox.
// `make contracts` checks that root.boc is up to date and runs their tests.
package contracts

import (
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/xssnick/tonutils-go/tvm/cell"
)

//go:embed root.boc
var rootBoC []byte

//go:embed sandbox.mjs package.json package-lock.json
var sidecar embed.FS

var rootCode = sync.OnceValue(func() *cell.Cell { return mustParse("root.boc", rootBoC) })

// RootCode returns the root contract's code cell, parsed once. It panics
// only if the embedded root.boc is corrupt, which the package's tests rule
// out. Cells are immutable; callers share the one returned.
func RootCode() *cell.Cell {
	return rootCode()
}

// SidecarFiles returns the sandbox sidecar: sandbox.mjs, package.json and
// package-lock.json at the root of the file system. Write them to a
// directory, run `npm ci` there, then `node sandbox.mjs`.
func SidecarFiles() fs.FS {
	return sidecar
}

// mustParse parses a one-root BoC, panicking when it is corrupt.
func mustParse(name string, boc []byte) *cell.Cell {
	c, err := cell.FromBOC(boc)
	if err != nil {
		panic(fmt.Sprintf("contracts: embedded %s is corrupt: %v", name, err))
	}
	return c
}
