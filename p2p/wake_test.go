package p2p_test

import (
	"testing"
	"time"

	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

type evtTick struct{ n int }

// TestWake: a burst of events that nobody reads yet never makes the
// emitter wait (the bus alone would block it after 16), and wakes the
// reader.
func TestWake(t *testing.T) {
	h := p2ptest.NewHost(t)
	wake, stop, err := p2p.Wake(h, new(evtTick), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	em, err := h.EventBus().Emitter(new(evtTick))
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		for i := range 1000 { // far beyond the bus's queue of 16
			em.Emit(evtTick{i})
		}
	}()
	select {
	case <-emitted:
	case <-time.After(10 * time.Second):
		t.Fatal("the emitter waited for the reader")
	}
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up after 1,000 events")
	}
}
