package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments/channels"
)

// paymentRoutes serves the payment channels on the admin API:
//
//	GET  /channels              the channels, as Status.Payments
//	POST /channels/open?peer=ID open a channel to peer (a proxy, or a proxy's worker)
//	POST /channels/close?peer=ID  close the channel with peer: cooperatively when
//	                              this node pays it; when peer pays this node,
//	                              start an uncooperative close with its newest state
//	                              (&uncooperative=1: uncooperatively in both cases,
//	                              for a payee that is gone)
//	POST /channels/finish?peer=ID finish an uncooperative close after its quarantine
//
// Opening and closing wait for the chain (up to two minutes).
func (n *Node) paymentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /channels", func(w http.ResponseWriter, r *http.Request) {
		if n.pay == nil {
			adminError(w, http.StatusNotFound, "payments are off on this node (payments.enabled)")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.paymentsStatus())
	})
	channelOp := func(op func(ctx context.Context, r *http.Request, p peer.ID) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if n.pay == nil {
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
			if err := op(ctx, r, p); err != nil {
				adminError(w, http.StatusConflict, err.Error())
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(n.paymentsStatus())
		}
	}
	mux.HandleFunc("POST /channels/open", channelOp(func(ctx context.Context, _ *http.Request, p peer.ID) error { return n.pay.m.Open(ctx, p) }))
	mux.HandleFunc("POST /channels/close", channelOp(func(ctx context.Context, r *http.Request, p peer.ID) error {
		if r.URL.Query().Get("uncooperative") == "1" {
			return n.pay.m.Dispute(ctx, p)
		}
		err := n.pay.m.CloseChannel(ctx, p)
		if errors.Is(err, channels.ErrNoChannel) {
			err = n.pay.m.Dispute(ctx, p)
		}
		return err
	}))
	mux.HandleFunc("POST /channels/finish", channelOp(func(ctx context.Context, _ *http.Request, p peer.ID) error { return n.pay.m.FinishClose(ctx, p) }))
}

// adminError answers {"error": msg}.
func adminError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
