package p2p

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
)

// Wake subscribes to the events of evtType (a pointer to the event type,
// as for EventBus().Subscribe) on h's event bus and turns those that keep
// accepts into wake-ups on a one-slot channel: a burst of events wakes a
// loop once, and the emitter never waits for the loop (the bus makes an
// emitter wait while a subscriber's queue is full). name names the
// subscription in the bus's metrics. stop ends the subscription and waits
// for the goroutine Wake started.
func Wake(h host.Host, evtType any, name string, keep func(evt any) bool) (wake <-chan struct{}, stop func(), err error) {
	sub, err := h.EventBus().Subscribe(evtType, eventbus.Name(name))
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for e := range sub.Out() {
			if keep != nil && !keep(e) {
				continue
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	})
	return ch, func() { sub.Close(); wg.Wait() }, nil
}
