package seal

// ReplayWindow is how far behind a session's newest counter a request may
// arrive and still be accepted once: requests of one session travel
// concurrently and through retries, so they need not arrive in order.
const ReplayWindow = 1024

// window is a sliding replay window over a session's request counters
// (the scheme of IPsec and WireGuard): the newest counter accepted and a
// bitmap of which of the ReplayWindow counters below it were.
type window struct {
	top  uint64                    // newest counter accepted; 0: none yet
	seen [ReplayWindow / 64]uint64 // bit i: counter top-i accepted
}

// accept reports whether ctr is new, and records it. Counter 0 is never
// accepted; nor is one ReplayWindow or more behind top.
func (w *window) accept(ctr uint64) bool {
	switch {
	case ctr == 0:
		return false
	case ctr > w.top:
		w.shift(ctr - w.top)
		w.top = ctr
		w.seen[0] |= 1
		return true
	case w.top-ctr >= ReplayWindow:
		return false
	}
	i := w.top - ctr
	word, bit := i/64, uint64(1)<<(i%64)
	if w.seen[word]&bit != 0 {
		return false
	}
	w.seen[word] |= bit
	return true
}

// shift moves the bitmap n counters up: bit i becomes bit i+n.
func (w *window) shift(n uint64) {
	if n >= ReplayWindow {
		w.seen = [ReplayWindow / 64]uint64{}
		return
	}
	words, bits := int(n/64), n%64
	for i := len(w.seen) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.seen[j] << bits
			if bits != 0 && j > 0 {
				v |= w.seen[j-1] >> (64 - bits)
			}
		}
		w.seen[i] = v
	}
}
