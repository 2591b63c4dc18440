package edverify

import (
	"crypto/ed25519"
	"sync"
)

// A Cache verifies signatures by any key, keeping Tables for the keys it
// verifies most: a key gets its table once BuildAfter of its signatures
// have verified (so keys seen once or twice, or only with bad signatures,
// cost no table), and at most the Cache's size are kept, the least
// recently used dropped first. Keys without a table verify through
// crypto/ed25519. It is safe for concurrent use.
type Cache struct {
	size int

	mu     sync.Mutex
	tick   uint64
	tables map[string]*entry // by public key
	seen   map[string]int    // valid signatures of keys without a table
}

type entry struct {
	t    *Table
	used uint64 // tick of the last use
}

// BuildAfter is how many valid signatures a key shows before it gets a
// table; maxSeen bounds the keys counted towards it (the count starts
// over when it is reached).
const (
	BuildAfter = 8
	maxSeen    = 4096
)

// NewCache returns a cache that keeps at most size tables (41 KiB each).
func NewCache(size int) *Cache {
	return &Cache{size: max(1, size), tables: make(map[string]*entry), seen: make(map[string]int)}
}

// Verify reports whether sig is pub's valid Ed25519 signature of msg, as
// crypto/ed25519.Verify would; a pub that is not 32 bytes is false, not a
// panic.
func (c *Cache) Verify(pub, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	c.mu.Lock()
	if e := c.tables[string(pub)]; e != nil {
		c.tick++
		e.used = c.tick
		c.mu.Unlock()
		return e.t.Verify(msg, sig)
	}
	c.mu.Unlock()
	if !ed25519.Verify(pub, msg, sig) {
		return false
	}
	c.mu.Lock()
	n := c.seen[string(pub)] + 1
	if n < BuildAfter {
		if len(c.seen) >= maxSeen {
			clear(c.seen)
		}
		c.seen[string(pub)] = n
		c.mu.Unlock()
		return true
	}
	delete(c.seen, string(pub))
	c.mu.Unlock()
	t, err := NewTable(pub)
	if err != nil {
		return true // cannot happen: pub verified a signature, so it decodes
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.tables[string(pub)]; !ok && len(c.tables) >= c.size {
		c.evictLocked()
	}
	c.tick++
	c.tables[string(pub)] = &entry{t: t, used: c.tick}
	return true
}

// evictLocked drops the least recently used table.
func (c *Cache) evictLocked() {
	var oldest string
	at := ^uint64(0)
	for k, e := range c.tables {
		if e.used < at {
			oldest, at = k, e.used
		}
	}
	delete(c.tables, oldest)
}
