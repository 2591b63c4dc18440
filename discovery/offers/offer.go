// Package offers is what workers sell and proxies charge, as signed offers
// gossiped on /cocoon/<network>/offers/1, and the offer book every node
// keeps from them.
//
// An offer is a JSON payload signed by its peer's libp2p key (Ed25519)
// over "cocoon-offer-v1" || payload. Validation rejects, before an offer
// can enter any book: payloads over MaxOfferBytes, bad signatures, a signer
// other than the gossip sender, another network, sequence numbers not above
// the last one seen from that peer (stale or replayed), expiries passed or
// more than MaxTTL away, and absurd values (see Offer.Check).
package offers

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/payments"
)

// Limits on an offer. Anything beyond them is absurd for a real node and
// rejected.
const (
	MaxOfferBytes   = 16 << 10
	MaxTTL          = 2 * time.Minute
	MaxModels       = 64
	MaxModelID      = 256
	MaxPrice        = 1_000_000_000_000_000 // nanoTON per million tokens: a million TON
	MaxConcurrency  = 100_000
	MaxTTFT         = 10 * time.Minute
	MaxTokensPerSec = 1_000_000
	MaxFeePPM       = 500_000 // a proxy's fee, in millionths of the price: at most half
	signingTag      = "cocoon-offer-v1"
)

// Role says who makes an offer.
type Role string

// The roles that gossip offers.
const (
	RoleWorker Role = "worker"
	RoleProxy  Role = "proxy"
)

// ModelOffer is one model a worker sells.
type ModelOffer struct {
	ID    string         `json:"id"`
	Price payments.Price `json:"price"`
}

// Offer is a peer's announcement.
type Offer struct {
	Network string `json:"network"`
	Peer    string `json:"peer"` // the signer's peer ID
	Role    Role   `json:"role"`
	Seq     uint64 `json:"seq"`    // strictly increasing per peer
	Expiry  int64  `json:"expiry"` // unix milliseconds

	// Workers.
	Models        []ModelOffer `json:"models,omitempty"`
	MaxConcurrent int          `json:"max_concurrent,omitempty"`
	Load          int          `json:"load,omitempty"`           // requests being served
	TTFTMillis    int64        `json:"ttft_ms,omitempty"`        // measured time to first token
	TokensPerSec  float64      `json:"tokens_per_sec,omitempty"` // measured generation speed
	Tier          string       `json:"tier,omitempty"`           // dev, tee or tee-gpu
	Attestation   []byte       `json:"attestation,omitempty"`    // digest of the evidence it holds
	FeePPM        int64        `json:"fee_ppm,omitempty"`        // proxies: fee in millionths of the price
	Addrs         []string     `json:"addrs,omitempty"`          // proxies: where they are reachable
}

// Signed is an offer as it travels: the payload that was signed, and the
// signature.
type Signed struct {
	Payload   []byte `json:"payload"`
	Signature []byte `json:"signature"`
}

// Rejection reasons. None is helped by retrying the same bytes.
var (
	ErrTooLarge  = errors.New("offer too large")
	ErrMalformed = errors.New("malformed offer")
	ErrSignature = errors.New("bad offer signature")
	ErrSigner    = errors.New("offer signed by another peer than its sender")
	ErrNetwork   = errors.New("offer for another network")
	ErrStale     = errors.New("offer sequence number not above the last one seen (stale or replayed)")
	ErrExpired   = errors.New("offer expired")
	ErrFarExpiry = errors.New("offer expiry too far ahead")
	ErrAbsurd    = errors.New("offer value out of bounds")
	ErrFlood     = errors.New("publisher over its offer rate")
	// ErrPeerFlood means a neighbour delivered offers, under any keys,
	// faster than gossip.peer_rate.
	ErrPeerFlood = errors.New("neighbour over its offer rate")
)

// Sign encodes o and signs it with key, which must be o.Peer's.
func Sign(o *Offer, key crypto.PrivKey) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if o.Peer != id.String() {
		return nil, fmt.Errorf("%w: offer names %s, key is %s's", ErrSigner, o.Peer, id)
	}
	payload, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(append([]byte(signingTag), payload...))
	if err != nil {
		return nil, fmt.Errorf("signing offer: %w", err)
	}
	b, err := json.Marshal(Signed{Payload: payload, Signature: sig})
	if err != nil {
		return nil, err
	}
	if len(b) > MaxOfferBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// Open checks the size and signature of a gossiped offer and decodes it.
// from is the peer that published it; the offer must be its own.
func Open(b []byte, from peer.ID) (*Offer, error) {
	if len(b) > MaxOfferBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	var s Signed
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var o Offer
	if err := json.Unmarshal(s.Payload, &o); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	signer, err := peer.Decode(o.Peer)
	if err != nil {
		return nil, fmt.Errorf("%w: peer %q: %v", ErrMalformed, o.Peer, err)
	}
	if signer != from {
		return nil, fmt.Errorf("%w: offer of %s sent by %s", ErrSigner, signer, from)
	}
	pub, err := signer.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: no key in peer ID %s", ErrSignature, signer)
	}
	ok, err := pub.Verify(append([]byte(signingTag), s.Payload...), s.Signature)
	if err != nil || !ok {
		return nil, ErrSignature
	}
	return &o, nil
}

// Check validates what an offer says, at now, for network.
func (o *Offer) Check(network string, now time.Time) error {
	if o.Network != network {
		return fmt.Errorf("%w: %q, this is %q", ErrNetwork, o.Network, network)
	}
	expiry := time.UnixMilli(o.Expiry)
	if !now.Before(expiry) {
		return ErrExpired
	}
	if expiry.Sub(now) > MaxTTL {
		return fmt.Errorf("%w: %s > %s", ErrFarExpiry, expiry.Sub(now).Round(time.Second), MaxTTL)
	}
	absurd := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrAbsurd, fmt.Sprintf(format, args...))
	}
	switch o.Role {
	case RoleWorker:
		if len(o.Models) == 0 || len(o.Models) > MaxModels {
			return absurd("%d models (1 to %d)", len(o.Models), MaxModels)
		}
		seen := make(map[string]bool, len(o.Models))
		for _, m := range o.Models {
			if m.ID == "" || len(m.ID) > MaxModelID || !utf8.ValidString(m.ID) || seen[m.ID] {
				return absurd("model ID %q (empty, too long, not UTF-8 or repeated)", m.ID)
			}
			seen[m.ID] = true
			for _, p := range []int64{m.Price.Prompt, m.Price.Cached, m.Price.Completion} {
				if p < 0 || p > MaxPrice {
					return absurd("price %d for %q (0 to %d nanoTON per million tokens)", p, m.ID, int64(MaxPrice))
				}
			}
		}
		if o.MaxConcurrent < 1 || o.MaxConcurrent > MaxConcurrency {
			return absurd("max_concurrent %d", o.MaxConcurrent)
		}
		if o.Load < 0 || o.Load > o.MaxConcurrent {
			return absurd("load %d of %d", o.Load, o.MaxConcurrent)
		}
		if o.TTFTMillis < 0 || time.Duration(o.TTFTMillis)*time.Millisecond > MaxTTFT {
			return absurd("ttft %d ms", o.TTFTMillis)
		}
		if o.TokensPerSec < 0 || o.TokensPerSec > MaxTokensPerSec || o.TokensPerSec != o.TokensPerSec {
			return absurd("tokens_per_sec %v", o.TokensPerSec)
		}
		switch o.Tier {
		case "dev", "tee", "tee-gpu":
		default:
			return absurd("tier %q", o.Tier)
		}
		if len(o.Attestation) > 64 {
			return absurd("attestation digest of %d bytes", len(o.Attestation))
		}
	case RoleProxy:
		if o.FeePPM < 0 || o.FeePPM > MaxFeePPM {
			return absurd("fee %d ppm (0 to %d)", o.FeePPM, MaxFeePPM)
		}
		if len(o.Addrs) == 0 || len(o.Addrs) > 16 {
			return absurd("%d addresses (1 to 16)", len(o.Addrs))
		}
	default:
		return absurd("role %q", o.Role)
	}
	return nil
}

// errFarOverRate marks an ErrPeerFlood past hardPeerRate times the rate:
// the neighbour is scored down even if it only relayed.
var errFarOverRate = errors.New("far over the rate")
