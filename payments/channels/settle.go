package channels

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// This file is a payee asking its payers to close their channels now, as
// a draining worker does (SettleAll), and a payer doing so (settleAsked).

// SettleAll asks the payer of every channel this node is paid on to close
// it cooperatively as soon as every state is delivered, which pays this
// node out on chain, and returns once each payer has answered. It returns
// the channels whose payer could not be asked: for those an
// uncooperative close (Dispute) is left.
func (m *Manager) SettleAll(ctx context.Context) (asked int, failed map[peer.ID]error) {
	m.mu.Lock()
	m.draining = true
	var ins []*incoming
	for _, in := range m.inAddr {
		ins = append(ins, in)
	}
	m.mu.Unlock()
	failed = make(map[peer.ID]error)
	for _, in := range ins {
		in.mu.Lock()
		broken := in.broken
		in.mu.Unlock()
		if broken != nil {
			continue // closing already
		}
		if err := m.askSettle(ctx, in); err != nil {
			failed[in.peer] = err
			continue
		}
		asked++
	}
	return asked, failed
}

// askSettle sends in's payer a settle message.
func (m *Manager) askSettle(ctx context.Context, in *incoming) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := m.h.NewStream(network.WithAllowLimitedConn(ctx, "pay"), in.peer, m.proto)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = roundTrip(s, &request{Type: typeSettle, Channel: in.ch.Address().String()})
	return err
}

// settleAsked answers a payee that asks to close the channel this node pays
// it on: the close runs in the background once the payee holds every
// state (at most settleWait).
func (m *Manager) settleAsked(from peer.ID, q *request) *reply {
	m.mu.Lock()
	var o *outgoing
	for _, x := range m.outs {
		if x.peer == from && x.ch.Address().String() == q.Channel {
			o = x
		}
	}
	m.mu.Unlock()
	if o == nil {
		return &reply{Code: codeUnknown, Message: fmt.Sprintf("this node pays %s on no channel %s", from, q.Channel)}
	}
	o.mu.Lock()
	o.settle = true
	o.mu.Unlock()
	m.wakeOpener()
	m.wg.Go(func() {
		if err := m.closeWhenDelivered(o); err != nil && m.ctx.Err() == nil {
			m.log.Warn("closing a channel its payee asked to settle", "peer", from, "channel", o.ch.Address(), "err", err)
		}
	})
	return &reply{}
}

// settleWait bounds how long a payer waits for every state of a channel
// its payee asked to settle to be delivered before it closes it.
const settleWait = time.Minute

// closeWhenDelivered closes o cooperatively once its payee holds every
// state.
func (m *Manager) closeWhenDelivered(o *outgoing) error {
	ctx, cancel := context.WithTimeout(m.ctx, settleWait+time.Minute)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(settleWait)
	for {
		o.mu.Lock()
		done, closing := o.acked == o.sent && len(o.pending) == 0 && o.synced, o.broken
		o.mu.Unlock()
		if closing != nil {
			if errors.Is(closing, errClosing) {
				return nil // closed or closing by another path
			}
			return closing
		}
		if done {
			return m.closeOut(ctx, o)
		}
		select {
		case <-t.C:
		case <-deadline:
			return fmt.Errorf("the payee still lacks states after %v", settleWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
