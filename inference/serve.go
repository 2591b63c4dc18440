package inference

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cocoon-mesh/cocoon/p2p"
)

// RequestHandler serves one request: it writes the whole response to fw
// (Chunk frames, then End or Error) and flushes it. Returning nil keeps the
// stream for the requester's next request; returning an error resets it.
type RequestHandler func(ctx context.Context, req *Request, fw *p2p.FrameWriter) error

// ServeConfig bounds a served stream.
type ServeConfig struct {
	FirstRequest time.Duration // the wait for the first request of a new stream
	Idle         time.Duration // the wait for each later request
	MaxDuration  time.Duration // the longest one request may take
}

// DefaultServeConfig waits 10 s for a first request, keeps an idle stream
// a minute (requesters reuse theirs for less, see Pool), and lets a request
// stream for 30 minutes.
func DefaultServeConfig() ServeConfig {
	return ServeConfig{FirstRequest: 10 * time.Second, Idle: time.Minute, MaxDuration: 30 * time.Minute}
}

// ErrCancelled means the requester reset the stream while its request was
// served. Nothing is left to answer.
var ErrCancelled = errors.New("requester went away")

// ErrStopped is the cause of a request's ctx when the requester sent Stop
// (FrameStop): the handler stops generating and ends the answer as it is,
// on a stream that stays open. Stopped reports it.
var ErrStopped = errors.New("requester stopped the answer")

// Stopped reports whether ctx ended because the requester sent Stop.
func Stopped(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrStopped) }

// incoming is one read by a served stream's reader: a request or the error
// that ended the stream.
type incoming struct {
	req *Request
	err error
}

// server is the state of one served stream.
type server struct {
	s    network.Stream
	reqs chan incoming
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex // guards current and stop
	current context.CancelFunc
	stop    context.CancelFunc // stops the request being served
}

// ServeRequests serves the requests a requester sends on s, one after
// another, until it closes the stream, resets it, or leaves it idle past
// cfg. check runs before each request: a non-nil *Error is answered and
// ends the stream (it is how unattested peers are refused). A reset while
// a request is served cancels that request's ctx, so the engine stops. s is
// closed or reset when ServeRequests returns.
func ServeRequests(ctx context.Context, s network.Stream, cfg ServeConfig, check func() *Error, handle RequestHandler) error {
	sv := &server{s: s, reqs: make(chan incoming, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go sv.read()
	fw := p2p.NewFrameWriter(s, 16<<10)
	err := sv.loop(ctx, cfg, check, handle, fw)
	if err != nil {
		s.Reset()
	} else {
		s.Close()
	}
	close(sv.quit)
	<-sv.done
	fw.Release()
	return err
}

// read owns the stream's read side for its whole life. While a request is
// served it sits in Read, so a reset reaches it at once and cancels the
// request: no goroutine per request and no read deadlines.
func (sv *server) read() {
	defer close(sv.done)
	fr := p2p.NewFrameReader(sv.s, MaxRequestFrame, 0)
	defer fr.Release()
	for {
		var in incoming
		typ, p, err := fr.Next()
		switch {
		case err != nil:
			in.err = err
		case typ == FrameStop:
			// Stops the request being served; one that already ended
			// (the Stop crossed its End) is left alone.
			sv.mu.Lock()
			if sv.stop != nil && len(p) == 0 {
				sv.stop()
			}
			sv.mu.Unlock()
			continue
		case typ != FrameRequest:
			in.err = fmt.Errorf("%w: want a request frame, got type %d", ErrMalformed, typ)
		default:
			in.req, in.err = DecodeRequest(p)
		}
		if in.err != nil && !errors.Is(in.err, io.EOF) {
			// A reset or garbage: whatever is being served is abandoned.
			sv.mu.Lock()
			if sv.current != nil {
				sv.current()
			}
			sv.mu.Unlock()
		}
		select {
		case sv.reqs <- in:
		case <-sv.quit:
			return
		}
		if in.err != nil {
			return
		}
	}
}

func (sv *server) loop(ctx context.Context, cfg ServeConfig, check func() *Error, handle RequestHandler, fw *p2p.FrameWriter) error {
	refuse := func(e *Error) error {
		if err := WriteError(fw, e); err != nil {
			return err
		}
		return fw.Flush()
	}
	wait := time.NewTimer(cfg.FirstRequest)
	defer wait.Stop()
	for {
		var in incoming
		select {
		case in = <-sv.reqs:
		case <-wait.C:
			return nil // idle: close
		case <-ctx.Done():
			return ctx.Err()
		}
		switch {
		case errors.Is(in.err, io.EOF):
			return nil // the requester is done with the stream
		case errors.Is(in.err, ErrMalformed):
			return refuse(&Error{Code: CodeBadRequest, Message: in.err.Error()})
		case in.err != nil:
			return in.err
		}
		if e := check(); e != nil {
			return refuse(e)
		}
		if err := sv.serveOne(ctx, cfg, in.req, handle, fw); err != nil {
			return err
		}
		wait.Reset(cfg.Idle)
	}
}

func (sv *server) serveOne(ctx context.Context, cfg ServeConfig, req *Request, handle RequestHandler, fw *p2p.FrameWriter) error {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sv.mu.Lock()
	sv.current = func() { cancel(ErrCancelled) }
	sv.stop = func() { cancel(ErrStopped) }
	sv.mu.Unlock()
	limit := time.AfterFunc(cfg.MaxDuration, func() {
		cancel(fmt.Errorf("%w (%s): %w", errTooLong, cfg.MaxDuration, context.DeadlineExceeded))
	})
	// A request cancelled or past MaxDuration may be blocked writing to a
	// requester that stopped reading: resetting the stream frees it. A
	// stopped one is still read: its answer ends with an End.
	stop := context.AfterFunc(rctx, func() {
		if !Stopped(rctx) {
			sv.s.Reset()
		}
	})
	err := handle(rctx, req, fw)
	stopped := stop()
	limit.Stop()
	sv.mu.Lock()
	sv.current, sv.stop = nil, nil
	sv.mu.Unlock()
	switch {
	case !stopped && !Stopped(rctx):
		return fmt.Errorf("%w: %v", ErrCancelled, context.Cause(rctx))
	case err != nil:
		return err
	}
	return nil
}

// errTooLong ends a request that ran past ServeConfig.MaxDuration.
var errTooLong = errors.New("request ran past its maximum duration")
