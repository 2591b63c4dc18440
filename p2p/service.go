package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// HandlerFunc serves one inbound stream. Returning nil closes the stream
// gracefully; returning an error resets it. ctx ends when the service
// closes (the stream is reset then too).
type HandlerFunc func(ctx context.Context, s network.Stream) error

// Service registers stream handlers on a host and owns the goroutines
// libp2p starts for them: Close removes the handlers, resets streams still
// being served and waits for every handler to return.
type Service struct {
	h      host.Host
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards protos, closed and wg.Add
	protos []protocol.ID
	closed bool
}

// NewService serves protocols on h.
func NewService(h host.Host, log *slog.Logger) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{h: h, log: log, ctx: ctx, cancel: cancel}
}

// Handle serves id with fn, following the one recipe every handler uses:
// recover panics, set a deadline on the whole stream (timeout; zero means
// none), reset on error or panic, close on success. Handlers cap message
// sizes themselves by reading through a FrameReader.
func (sv *Service) Handle(id protocol.ID, timeout time.Duration, fn HandlerFunc) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.closed {
		return
	}
	sv.protos = append(sv.protos, id)
	sv.h.SetStreamHandler(id, func(s network.Stream) { sv.serve(id, timeout, fn, s) })
}

func (sv *Service) serve(id protocol.ID, timeout time.Duration, fn HandlerFunc, s network.Stream) {
	sv.mu.Lock()
	if sv.closed {
		sv.mu.Unlock()
		s.Reset()
		return
	}
	sv.wg.Add(1)
	sv.mu.Unlock()
	defer sv.wg.Done()

	ok := false
	defer func() {
		if r := recover(); r != nil {
			sv.log.Error("stream handler panicked", "protocol", id, "peer", s.Conn().RemotePeer(), "panic", r, "stack", string(debug.Stack()))
		}
		if !ok {
			s.Reset()
		}
	}()
	if timeout > 0 {
		if err := s.SetDeadline(time.Now().Add(timeout)); err != nil {
			sv.log.Debug("setting stream deadline", "protocol", id, "err", err)
		}
	}
	// Close resets the stream through this AfterFunc; whoever loses the
	// race to stop it waits for the reset, so the stream never ends
	// gracefully once Close began and no goroutine outlives Close.
	reset := make(chan struct{})
	stop := context.AfterFunc(sv.ctx, func() {
		s.Reset()
		close(reset)
	})
	stopped := false
	defer func() {
		if !stopped && !stop() {
			<-reset
		}
	}()
	if err := fn(sv.ctx, s); err != nil {
		sv.log.Debug("stream handler failed", "protocol", id, "peer", s.Conn().RemotePeer(), "err", err)
		return
	}
	stopped = true
	if !stop() {
		<-reset // the service is closing: reset, not a graceful close
		return
	}
	ok = true
	if err := s.Close(); err != nil {
		sv.log.Debug("closing stream", "protocol", id, "err", fmt.Errorf("closing: %w", err))
	}
}

// Close removes every handler, resets the streams being served and waits
// for their handlers to return.
func (sv *Service) Close() {
	sv.mu.Lock()
	if sv.closed {
		sv.mu.Unlock()
		return
	}
	sv.closed = true
	for _, id := range sv.protos {
		sv.h.RemoveStreamHandler(id)
	}
	sv.mu.Unlock()
	sv.cancel()
	sv.wg.Wait()
}
