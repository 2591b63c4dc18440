package gateway

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/discovery/directory"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// choose seals a request only to workers the client verified serving its
// model, at or above its minimum tier, within its max price, with a
// sealing key; with none, the error names the condition that left none.
func TestChoose(t *testing.T) {
	key := []byte("a sealing key, as the evidence binds it")
	w := func(id string, tier attest.Tier, sealKey []byte, price *payments.Price, models ...string) directory.Worker {
		d := directory.Worker{Peer: peer.ID(id), Verdict: attest.Verdict{Tier: tier, SealKey: sealKey, Expiry: time.Now().Add(time.Hour)}}
		for _, m := range models {
			d.Models = append(d.Models, directory.Model{ID: m, Price: price})
		}
		return d
	}
	cheap := &payments.Price{Prompt: 10, Completion: 20}
	embedder := func(id string, sealKey []byte, model string) directory.Worker {
		d := w(id, attest.TierTEE, sealKey, cheap, model)
		d.Models[0].Endpoints = []string{"embedding"}
		return d
	}
	dear := &payments.Price{Prompt: 1000, Completion: 2000}
	many := make([]directory.Worker, 9)
	for i := range many {
		many[i] = w(string(rune('a'+i)), attest.TierTEE, key, cheap, "m")
	}
	for _, tt := range []struct {
		name     string
		ws       []directory.Worker
		req      inference.Request
		want     []peer.ID // in any order; nil with code set
		wantN    int       // how many, when want is nil and code is 0
		wantCode inference.Code
	}{
		{name: "the model's workers", ws: []directory.Worker{w("a", attest.TierDev, key, cheap, "m"), w("b", attest.TierTEE, key, cheap, "other")},
			req: inference.Request{Kind: inference.KindChat, Model: "m"}, want: []peer.ID{"a"}},
		{name: "at or above the minimum tier", ws: []directory.Worker{w("a", attest.TierDev, key, cheap, "m"), w("b", attest.TierTEEGPU, key, cheap, "m")},
			req: inference.Request{Kind: inference.KindChat, Model: "m", MinTier: attest.TierTEE}, want: []peer.ID{"b"}},
		{name: "an unknown tier trusts nothing", ws: []directory.Worker{w("a", attest.Tier(9), key, cheap, "m")},
			req: inference.Request{Kind: inference.KindChat, Model: "m", MinTier: attest.TierDev}, wantCode: inference.CodeUntrusted},
		{name: "within the max price", ws: []directory.Worker{w("a", attest.TierTEE, key, dear, "m"), w("b", attest.TierTEE, key, cheap, "m"), w("c", attest.TierTEE, key, nil, "m")},
			req: inference.Request{Kind: inference.KindChat, Model: "m", MaxPrice: 100}, want: []peer.ID{"b"}},
		{name: "at most MaxCandidates", ws: many, req: inference.Request{Kind: inference.KindChat, Model: "m"}, wantN: MaxCandidates},
		{name: "embeddings from an embedding model", ws: []directory.Worker{w("a", attest.TierTEE, key, cheap, "m"), embedder("b", key, "m")},
			req: inference.Request{Kind: inference.KindEmbedding, Model: "m"}, want: []peer.ID{"b"}},
		{name: "no worker serves the model for the endpoint", ws: []directory.Worker{w("a", attest.TierTEE, key, cheap, "m")},
			req: inference.Request{Kind: inference.KindEmbedding, Model: "m"}, wantCode: inference.CodeBadRequest},
		{name: "no worker serves the model", ws: []directory.Worker{w("a", attest.TierTEE, key, cheap, "other")},
			req: inference.Request{Kind: inference.KindChat, Model: "m"}, wantCode: inference.CodeUnknownModel},
		{name: "none trusted enough", ws: []directory.Worker{w("a", attest.TierDev, key, cheap, "m")},
			req: inference.Request{Kind: inference.KindChat, Model: "m", MinTier: attest.TierTEE}, wantCode: inference.CodeUntrusted},
		{name: "none with a sealing key", ws: []directory.Worker{w("a", attest.TierTEE, nil, cheap, "m")},
			req: inference.Request{Kind: inference.KindChat, Model: "m"}, wantCode: inference.CodeNoWorker},
		{name: "none cheap enough", ws: []directory.Worker{w("a", attest.TierTEE, key, dear, "m")},
			req: inference.Request{Kind: inference.KindChat, Model: "m", MaxPrice: 100}, wantCode: inference.CodeTooExpensive},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, e := choose(tt.ws, &tt.req)
			if tt.wantCode != 0 {
				if e == nil || e.Code != tt.wantCode || len(got) != 0 {
					t.Fatalf("got %v, %v; want none and %v", got, e, tt.wantCode)
				}
				return
			}
			if e != nil {
				t.Fatal(e)
			}
			if tt.want == nil {
				if len(got) != tt.wantN {
					t.Fatalf("%d candidates, want %d", len(got), tt.wantN)
				}
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("candidates %v, want %v", got, tt.want)
			}
			for i, c := range got {
				if c.w.Peer != tt.want[i] {
					t.Fatalf("candidates %v, want %v", got, tt.want)
				}
			}
		})
	}
}
