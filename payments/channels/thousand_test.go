//go:build !race

package channels_test

import "testing"

// TestOldStateChallengedAmongThousand: TestOldStateChallenged with a
// thousand other channels open on chain that the proxy watches: its watch
// passes read them in parallel, so the old state is still challenged.
// Without the race detector (make test runs it beside the soak): the
// sandbox's emulator answers each read on one thread, and under the race
// detector a pass over a thousand channels outlasts the wait.
func TestOldStateChallengedAmongThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("a thousand channels: not in -short")
	}
	oldStateChallenged(t, 1000)
}
