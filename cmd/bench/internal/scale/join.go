package scale

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cocoon-mesh/cocoon/discovery/offers"
	"github.com/cocoon-mesh/cocoon/p2p"
)

// JoinResult is what the join phase measured, from the start of each new
// worker's host.
type JoinResult struct {
	Runs        int  `json:"runs"`
	Offer       Dist `json:"offer_at_proxy"` // until the proxy's book holds the worker's offer
	Routed      Dist `json:"routed"`         // until the proxy has had the worker's answer on a stream
	Republished int  `json:"republished"`    // offers published again, the last not having arrived in a second
	Failed      int  `json:"failed"`         // workers never routed to within 10 s
}

// joinLinks is how many running nodes a new worker connects to, besides
// being able to reach the proxy.
const joinLinks = 4

// pingSize is the size of the simulated request and of its answer.
const pingSize = 32

// Join starts cfg.Joins new workers, one after the other, in the running
// network. Each connects to joinLinks random nodes and publishes its offer
// once it shares the topic with one of them; the proxy (node 0), once its
// book holds the offer, opens a stream to the worker at the address the
// offer gives and sends it a request, which the worker answers. The workers
// stay in the network.
func (s *Sim) Join(ctx context.Context) error {
	var offerAt, routed []time.Duration
	r := JoinResult{Runs: s.cfg.Joins}
	for range s.cfg.Joins {
		o, rt, again, err := s.joinOne(ctx, 0)
		r.Republished += again
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.log.Warn("a new worker was not routed to", "err", err)
			r.Failed++
			continue
		}
		offerAt, routed = append(offerAt, o), append(routed, rt)
	}
	r.Offer, r.Routed = summarize(offerAt), summarize(routed)
	s.result.Join = r
	return nil
}

func (s *Sim) joinOne(ctx context.Context, proxy int) (offerAt, routed time.Duration, republished int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t0 := time.Now()
	w, err := s.addNode()
	if err != nil {
		return 0, 0, 0, err
	}
	ping := p2p.ProtocolID(s.cfg.Network, "scale-ping", "1")
	w.svc = p2p.NewService(w.h, s.log)
	w.svc.Handle(ping, 5*time.Second, echo)
	if err := s.link(w.h.ID(), s.nodes[proxy].h.ID()); err != nil {
		return 0, 0, 0, err
	}
	var pairs [][2]host.Host
	for _, j := range s.sample(s.cfg.Nodes, joinLinks) {
		pairs = append(pairs, [2]host.Host{w.h, s.nodes[j].h})
	}
	if err := s.connect(ctx, pairs); err != nil {
		return 0, 0, 0, err
	}
	if err := poll(ctx, 5*time.Second, "the new worker's first topic peer", func() bool { return len(w.gossip.Peers()) > 0 }); err != nil {
		return 0, 0, 0, err
	}

	id := w.h.ID()
	var at time.Time
	for seq := uint64(1); at.IsZero(); seq++ {
		got := s.rec.await(proxy, id, seq)
		signed, err := offers.Sign(workerOffer(s.cfg.Network, w.h, seq, time.Now()), w.key)
		if err != nil {
			return 0, 0, republished, err
		}
		if err := w.gossip.Publish(ctx, signed); err != nil {
			return 0, 0, republished, err
		}
		again := time.NewTimer(time.Second)
		select {
		case at = <-got:
		case <-again.C:
			republished++
		case <-ctx.Done():
			again.Stop()
			return 0, 0, republished, fmt.Errorf("the proxy never got the new worker's offer: %w", ctx.Err())
		}
		again.Stop()
	}
	offerAt = at.Sub(t0)

	// The proxy's side: dial the worker where its offer says, and route
	// a request to it.
	ph := s.nodes[proxy].h
	o, ok := s.nodes[proxy].book.Get(id)
	if !ok {
		return 0, 0, republished, fmt.Errorf("the new worker's offer left the proxy's book")
	}
	for _, a := range o.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			ph.Peerstore().AddAddr(id, m, peerstore.TempAddrTTL)
		}
	}
	if err := request(ctx, ph, id, ping); err != nil {
		return 0, 0, republished, fmt.Errorf("routing to the new worker: %w", err)
	}
	return offerAt, time.Since(t0), republished, nil
}

// request sends pingSize random bytes to p and checks it answers them.
func request(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID) error {
	st, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return err
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	req := make([]byte, pingSize)
	rand.Read(req)
	if _, err := st.Write(req); err != nil {
		st.Reset()
		return err
	}
	if err := st.CloseWrite(); err != nil {
		st.Reset()
		return err
	}
	resp := make([]byte, pingSize)
	if _, err := io.ReadFull(st, resp); err != nil {
		st.Reset()
		return err
	}
	if !bytes.Equal(req, resp) {
		st.Reset()
		return fmt.Errorf("answer differs from the request")
	}
	return nil
}

// echo answers a request with its own bytes.
func echo(_ context.Context, st network.Stream) error {
	b := make([]byte, pingSize)
	if _, err := io.ReadFull(st, b); err != nil {
		return err
	}
	_, err := st.Write(b)
	return err
}
