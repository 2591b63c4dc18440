package chain

import (
	"errors"
	"fmt"

	"github.com/xssnick/tonutils-go/tvm/cell"
)

// MaxBOC is the largest bag of cells ParseBOC accepts.
const MaxBOC = 1 << 20

// ErrBadBOC means bytes are not a bag of cells. Retrying cannot help.
var ErrBadBOC = errors.New("malformed bag of cells")

// ParseBOC parses a serialized bag of cells with one root. Unlike
// tonutils-go's cell.FromBOC, which panics on some malformed input, it returns
// ErrBadBOC for anything it cannot parse, and it refuses input over MaxBOC
// before parsing.
func ParseBOC(b []byte) (c *cell.Cell, err error) {
	if len(b) > MaxBOC {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadBOC, len(b), MaxBOC)
	}
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("%w: %v", ErrBadBOC, r)
		}
	}()
	if err := checkHeader(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBOC, err)
	}
	c, err = cell.FromBOC(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBOC, err)
	}
	return c, nil
}

// checkHeader checks that the counts in a bag of cells' header fit the bytes
// that follow, since cell.FromBOC allocates by them before it reads.
func checkHeader(b []byte) error {
	const magic = "\xb5\xee\x9c\x72"
	if len(b) < 6 || string(b[:4]) != magic {
		return errors.New("no bag-of-cells magic")
	}
	size, offBytes := int(b[4]&7), int(b[5])
	if size < 1 || size > 4 || offBytes < 1 || offBytes > 8 {
		return fmt.Errorf("field sizes %d and %d out of range", size, offBytes)
	}
	rest := b[6:]
	next := func(n int) (uint64, error) {
		if len(rest) < n {
			return 0, errors.New("header truncated")
		}
		var v uint64
		for _, c := range rest[:n] {
			v = v<<8 | uint64(c)
		}
		rest = rest[n:]
		return v, nil
	}
	var counts [4]uint64 // cells, roots, absent, total cell bytes
	for i, n := range []int{size, size, size, offBytes} {
		v, err := next(n)
		if err != nil {
			return err
		}
		counts[i] = v
	}
	cells, roots, total := counts[0], counts[1], counts[3]
	if roots < 1 || roots > cells || cells > uint64(len(b)) || total > uint64(len(b)) {
		return fmt.Errorf("header claims %d cells, %d roots and %d bytes in %d bytes", cells, roots, total, len(b))
	}
	return nil
}
