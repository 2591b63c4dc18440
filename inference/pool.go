package inference

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/p2p"
)

// Pool keeps a requester's idle inference streams per peer, so that a
// request usually reuses a stream instead of opening one: opening costs a
// yamux handshake, protocol negotiation and a handler goroutine at the
// other end, which was a fifth of a request's CPU through the mesh.
type Pool struct {
	h       host.Host
	proto   protocol.ID
	maxIdle int           // idle streams kept per peer
	idleFor time.Duration // an idle stream older than this is closed, not reused
	now     func() time.Time

	mu     sync.Mutex // guards idle and closed
	idle   map[peer.ID][]idleStream
	closed bool
}

type idleStream struct {
	s     network.Stream
	since time.Time
}

// PoolConfig sizes a Pool.
type PoolConfig struct {
	MaxIdlePerPeer int
	// IdleFor must stay under the server's ServeConfig.Idle, so that a
	// reused stream is not one the server is about to close.
	IdleFor time.Duration
	Now     func() time.Time
}

// DefaultPoolConfig keeps up to 64 idle streams per peer for 30 s.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{MaxIdlePerPeer: 64, IdleFor: 30 * time.Second}
}

// NewPool opens streams of network's inference protocol on h.
func NewPool(h host.Host, network string, cfg PoolConfig) *Pool {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pool{h: h, proto: p2p.ProtocolID(network, ProtocolName, ProtocolVersion),
		maxIdle: cfg.MaxIdlePerPeer, idleFor: cfg.IdleFor, now: cfg.Now, idle: make(map[peer.ID][]idleStream)}
}

// take returns the most recently used idle stream to id that is neither
// too old nor on a closed connection, if any.
func (p *Pool) take(id peer.ID) network.Stream {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[id]
	for len(list) > 0 {
		last := list[len(list)-1]
		list = list[:len(list)-1]
		if now.Sub(last.since) < p.idleFor && !last.s.Conn().IsClosed() {
			p.idle[id] = list
			return last.s
		}
		last.s.Close()
	}
	delete(p.idle, id)
	return nil
}

func (p *Pool) put(id peer.ID, s network.Stream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[id]) >= p.maxIdle {
		s.Close()
		return
	}
	p.idle[id] = append(p.idle[id], idleStream{s: s, since: p.now()})
}

// Close closes every idle stream; streams in use close when their Call is
// done.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for id, list := range p.idle {
		for _, is := range list {
			is.s.Close()
		}
		delete(p.idle, id)
	}
}

// Call is one request in flight on a pooled stream.
type Call struct {
	pool  *Pool
	peer  peer.ID
	s     network.Stream
	fr    *p2p.FrameReader
	stop  func() bool // unregisters the ctx watcher
	ended bool        // End or Error read: the stream may carry another request

	// The first frame, read by Send, handed out by the first Next.
	firstTyp byte
	first    []byte
	peeked   bool

	stopMu  sync.Mutex // guards s against Stop from another goroutine, and stopped
	stopped bool
}

// Stop asks the server to stop generating and end the answer as it is:
// the frames up to its End still come through Next. It is for a requester
// whose app went away mid-answer, billed then for what was streamed and
// no more. It may be called from another goroutine than Next's, and more
// than once.
func (c *Call) Stop() error {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.s == nil || c.stopped {
		return nil
	}
	c.stopped = true
	_, err := c.s.Write(p2p.AppendFrame(nil, FrameStop, nil))
	return err
}

// Send sends req to id and waits for the first frame of the response.
// Cancelling ctx resets the stream, which cancels the request at the other
// end. A reused stream that turns out dead before answering (the server
// closed it while idle, or its connection died) is replaced by a new one
// once, and the pool's other idle streams on that connection are dropped;
// if a new stream on that same connection fails too, the connection is
// closed and dialled again, once.
func (p *Pool) Send(ctx context.Context, id peer.ID, req *Request) (*Call, error) {
	// The frame in one allocation, the body copied once: a sealed body is
	// a few KiB, and every hop sends it.
	var scratch [maxHeaderBytes]byte
	header, err := AppendHeader(scratch[:0], req)
	if err != nil {
		return nil, err
	}
	frame := make([]byte, 0, len(header)+len(req.Body)+binary.MaxVarintLen64+2)
	frame = binary.AppendUvarint(frame, uint64(len(header)+len(req.Body)+2))
	frame = append(frame, p2p.FrameVersion, FrameRequest)
	frame = append(append(frame, header...), req.Body...)
	var failed network.Conn
	if s := p.take(id); s != nil {
		failed = s.Conn()
		c, err := p.start(ctx, id, s, frame)
		if err == nil || ctx.Err() != nil {
			return c, err
		}
		// The other idle streams on that connection are as old or older
		// (take returns the newest): if the connection died, as when the
		// peer restarted, so did they. The retry opens a new stream.
		p.drop(id, failed)
	}
	s, err := p.h.NewStream(ctx, id, p.proto)
	if err != nil {
		return nil, fmt.Errorf("opening stream: %w", err)
	}
	c, err := p.start(ctx, id, s, frame)
	if err == nil || ctx.Err() != nil || failed == nil || s.Conn() != failed {
		return c, err
	}
	// A pooled stream and a new one both failed on the same connection:
	// it died before this side saw it close (the peer restarted a moment
	// ago). Close it, so the last try dials afresh.
	failed.Close()
	if s, err = p.h.NewStream(ctx, id, p.proto); err != nil {
		return nil, fmt.Errorf("opening stream: %w", err)
	}
	return p.start(ctx, id, s, frame)
}

// drop closes every idle stream to id on conn.
func (p *Pool) drop(id peer.ID, conn network.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[id][:0]
	for _, is := range p.idle[id] {
		if is.s.Conn() == conn {
			is.s.Close()
			continue
		}
		list = append(list, is)
	}
	if len(list) == 0 {
		delete(p.idle, id)
		return
	}
	p.idle[id] = list
}

func (p *Pool) start(ctx context.Context, id peer.ID, s network.Stream, frame []byte) (*Call, error) {
	c := &Call{pool: p, peer: id, s: s}
	c.stop = context.AfterFunc(ctx, func() { s.Reset() })
	if _, err := s.Write(frame); err != nil {
		c.Done()
		return nil, fmt.Errorf("sending request: %w", err)
	}
	c.fr = p2p.NewFrameReader(s, MaxChunkFrame, 16<<10)
	typ, b, err := c.fr.Next()
	if err != nil {
		c.Done()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return nil, fmt.Errorf("reading the first frame: %w", err)
	}
	c.firstTyp, c.first, c.peeked = typ, b, true
	c.ended = typ == FrameEnd || typ == FrameError
	return c, nil
}

// Next returns the next raw frame of the response; the payload is valid
// until the following call. After End or Error it returns io.EOF.
func (c *Call) Next() (byte, []byte, error) {
	if c.peeked {
		c.peeked = false
		return c.firstTyp, c.first, nil
	}
	if c.ended {
		return 0, nil, errEnded
	}
	typ, b, err := c.fr.Next()
	if err != nil {
		return 0, nil, err
	}
	c.ended = typ == FrameEnd || typ == FrameError
	return typ, b, nil
}

var errEnded = errors.New("response already ended")

// Buffered reports whether more of the response is already waiting.
func (c *Call) Buffered() bool { return c.peeked || (c.fr != nil && c.fr.Buffered() > 0) }

// Done releases the call: a stream whose response ended cleanly goes back
// to the pool, any other is reset.
func (c *Call) Done() {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.s == nil {
		return
	}
	live := c.stop()
	clean := live && c.ended && !c.peeked && (c.fr == nil || c.fr.Buffered() == 0)
	if c.fr != nil {
		c.fr.Release()
		c.fr = nil
	}
	if clean {
		c.pool.put(c.peer, c.s)
	} else {
		c.s.Reset()
	}
	c.s = nil
}
