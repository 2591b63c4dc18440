package channels

import "time"

// SetOpenerTick makes o look for payees every d instead of every second,
// so a test can tell a wake-up from a tick.
func SetOpenerTick(o *Opener, d time.Duration) { o.every = d }
