package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments/channels"
)

// PaymentsStatus is what a node has earned and spent through its payment
// channels, in nanoTON.
type PaymentsStatus struct {
	// Earned is what payers signed over to this node, on every channel;
	// Spent what this node signed over to its payees.
	Earned int64 `json:"earned_nanoton"`
	Spent  int64 `json:"spent_nanoton"`
	// InFlight is what is served or owed beyond the newest signed states:
	// answers delivered whose payment has not landed yet.
	InFlight int64 `json:"in_flight_nanoton"`
	// Reserved is what answers in flight have set aside in the channels
	// this node is paid on: their worst case, until they are served.
	Reserved int64 `json:"reserved_nanoton"`
	// Settled is the part of Earned on channels closed on chain: paid out
	// to the wallet.
	Settled int64 `json:"settled_nanoton"`
	// Withdrawable is the wallet's balance, what the operator can move
	// out now; absent when the chain cannot be read.
	Withdrawable *int64          `json:"withdrawable_nanoton,omitempty"`
	Channels     []ChannelStatus `json:"channels,omitempty"`
}

// ChannelStatus is one payment channel as this node holds it.
type ChannelStatus struct {
	Peer     string `json:"peer"`
	Address  string `json:"address"`
	Role     string `json:"role"` // "payer" or "payee": this node's side of the channel
	Deposit  int64  `json:"deposit_nanoton"`
	Sent     int64  `json:"sent_nanoton"`
	Received int64  `json:"received_nanoton"`
	Unsigned int64  `json:"unsigned_nanoton"` // credit beyond the last signed state
	Reserved int64  `json:"reserved_nanoton"` // payee: set aside for answers in flight
	Seqno    uint64 `json:"seqno"`
	State    string `json:"state"`
}

// paymentsStatus is the node's channels, for Status; nil without
// payments.
func (s *Server) paymentsStatus(ctx context.Context) *PaymentsStatus {
	if s.pay == nil {
		return nil
	}
	ps := &PaymentsStatus{}
	if s.pay.Wallet != nil {
		bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if b, err := s.pay.Wallet.Balance(bctx); err == nil && b != nil && b.IsInt64() {
			v := b.Int64()
			ps.Withdrawable = &v
		}
		cancel()
	}
	for _, c := range s.pay.Channels.List() {
		role := "payee"
		if c.Payer {
			role = "payer"
		}
		ps.Channels = append(ps.Channels, ChannelStatus{Peer: c.Peer.String(), Address: c.Address, Role: role,
			Deposit: int64(c.Deposit), Sent: int64(c.Sent), Received: int64(c.Received), Unsigned: int64(c.Unsigned),
			Reserved: int64(c.Reserved), Seqno: c.Seqno, State: c.State})
		ps.Spent += int64(c.Sent)
		ps.Earned += int64(c.Received)
		ps.Reserved += int64(c.Reserved)
		ps.InFlight += int64(c.Unsigned)
		if !c.Payer && c.State == "closed" {
			ps.Settled += int64(c.Received)
		}
	}
	return ps
}

// paymentRoutes serves the payment channels on the admin API:
//
//	GET  /channels              the channels, as Status.Payments
//	POST /channels/open?peer=ID open a channel to peer: an attested peer this node
//	                              pays (a client's proxy, a proxy's worker); 403 otherwise
//	POST /channels/close?peer=ID  close the channel with peer: cooperatively when
//	                              this node pays it; when peer pays this node,
//	                              start an uncooperative close with its newest state
//	                              (&uncooperative=1: uncooperatively in both cases,
//	                              for a payee that is gone)
//	POST /channels/finish?peer=ID finish an uncooperative close after its quarantine
//
// Opening and closing wait for the chain (up to two minutes).
func (s *Server) paymentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /channels", func(w http.ResponseWriter, r *http.Request) {
		if s.pay == nil {
			adminError(w, http.StatusNotFound, "payments are off on this node (payments.enabled)")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.paymentsStatus(r.Context()))
	})
	channelOp := func(op func(ctx context.Context, r *http.Request, ch Channels, p peer.ID) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s.pay == nil {
				adminError(w, http.StatusNotFound, "payments are off on this node (payments.enabled)")
				return
			}
			p, err := peer.Decode(r.URL.Query().Get("peer"))
			if err != nil {
				adminError(w, http.StatusBadRequest, "peer: "+err.Error())
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
			defer cancel()
			if err := op(ctx, r, s.pay.Channels, p); err != nil {
				status := http.StatusConflict
				if _, ok := errors.AsType[refusal](err); ok {
					status = http.StatusForbidden
				}
				adminError(w, status, err.Error())
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(s.paymentsStatus(r.Context()))
		}
	}
	mux.HandleFunc("POST /channels/open", channelOp(func(ctx context.Context, _ *http.Request, ch Channels, p peer.ID) error {
		if err := s.payable(p); err != nil {
			return err
		}
		return ch.Open(ctx, p)
	}))
	mux.HandleFunc("POST /channels/close", channelOp(func(ctx context.Context, r *http.Request, ch Channels, p peer.ID) error {
		if r.URL.Query().Get("uncooperative") == "1" {
			return ch.Dispute(ctx, p)
		}
		err := ch.CloseChannel(ctx, p)
		if errors.Is(err, channels.ErrNoChannel) {
			err = ch.Dispute(ctx, p)
		}
		return err
	}))
	mux.HandleFunc("POST /channels/finish", channelOp(func(ctx context.Context, _ *http.Request, ch Channels, p peer.ID) error {
		return ch.FinishClose(ctx, p)
	}))
}

// refusal is a request the admin API will not carry out, answered 403;
// asking again does not help until what it names changes.
type refusal string

func (r refusal) Error() string { return string(r) }

// payable says why the node must not open a channel to p: a deposit sent
// to any peer that speaks the payment protocol would be lost to it. p
// must be one of the node's payees (a client's proxies that are up and
// attested, a proxy's workers that are up) and have passed the
// attestation handshake.
func (s *Server) payable(p peer.ID) error {
	if s.pay.Payees == nil {
		return refusal(fmt.Sprintf("refusing to open a channel to %s: this %s pays no one", p, s.role.name()))
	}
	if !slices.Contains(s.pay.Payees.Payees(), p) {
		return refusal(fmt.Sprintf("refusing to open a channel to %s: it is not a peer this %s pays now "+
			"(a client pays the attested proxies it keeps up, a proxy the workers it routes to)", p, s.role.name()))
	}
	if _, ok := s.att.Handshaker.Verified(p); !ok {
		return refusal(fmt.Sprintf("refusing to open a channel to %s: it has not passed the attestation handshake", p))
	}
	return nil
}

// adminError answers {"error": msg}.
func adminError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
