package node

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// paymentRoutes serves the payment channels on the admin API:
//
//	GET  /channels              the channels, as Status.Payments
//	POST /channels/open?peer=ID open a channel to peer (a proxy, or a proxy's worker)
//	POST /channels/close?peer=ID close the channel to peer cooperatively
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
	channelOp := func(op func(ctx context.Context, p peer.ID) error) http.HandlerFunc {
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
			if err := op(ctx, p); err != nil {
				adminError(w, http.StatusConflict, err.Error())
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(n.paymentsStatus())
		}
	}
	mux.HandleFunc("POST /channels/open", channelOp(func(ctx context.Context, p peer.ID) error { return n.pay.m.Open(ctx, p) }))
	mux.HandleFunc("POST /channels/close", channelOp(func(ctx context.Context, p peer.ID) error { return n.pay.m.CloseChannel(ctx, p) }))
}

// adminError answers {"error": msg}.
func adminError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
