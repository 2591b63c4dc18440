package attest

import (
	"crypto/sha256"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/time/rate"
)

// Limits bound what peers can make a responder do. Zero fields take the
// defaults (DefaultLimits).
type Limits struct {
	// PeerRate and PeerBurst are the token bucket of handshakes one peer
	// may start, per second and at once. An honest peer handshakes once
	// per validity window, or on each check when it presents no evidence.
	PeerRate  float64
	PeerBurst int
	// IPRate and IPBurst are the bucket of every peer at one IP address
	// (a relay's, for relayed connections): many identities cost an
	// attacker nothing, addresses do. Loopback has no such bucket, as
	// libp2p exempts it from its per-address connection limit: the
	// peers there are this machine's (a testnet, a benchmark's nodes).
	IPRate  float64
	IPBurst int
	// Remember is how many rejected evidences are remembered (by digest
	// of the presenting key and the evidence), each for RememberFor: a
	// replay is refused after one lookup, without running the validator.
	Remember    int
	RememberFor time.Duration
}

// DefaultLimits: a peer may handshake twice a second after a burst of 16;
// one address 50 a second after a burst of 256; 4096 rejections
// remembered for 10 minutes, so that a policy change (a measurement
// added) is honoured within that.
var DefaultLimits = Limits{PeerRate: 2, PeerBurst: 16, IPRate: 50, IPBurst: 256, Remember: 4096, RememberFor: 10 * time.Minute}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.PeerRate <= 0 || l.PeerBurst <= 0 {
		l.PeerRate, l.PeerBurst = d.PeerRate, d.PeerBurst
	}
	if l.IPRate <= 0 || l.IPBurst <= 0 {
		l.IPRate, l.IPBurst = d.IPRate, d.IPBurst
	}
	if l.Remember <= 0 {
		l.Remember = d.Remember
	}
	if l.RememberFor <= 0 {
		l.RememberFor = d.RememberFor
	}
	return l
}

// maxBuckets bounds each bucket map; past it, full buckets (peers that
// have not handshaken lately) are dropped, and if none is, all are.
const maxBuckets = 8192

// guard is a responder's admission: token buckets per peer and per IP,
// the peers being served (one handshake per peer at a time) and the
// rejected evidence it remembers. Its owner's mutex guards it.
type guard struct {
	lim      Limits
	peers    map[peer.ID]*rate.Limiter
	ips      map[string]*rate.Limiter
	serving  map[peer.ID]chan struct{} // closed when that peer's handshake ends
	rejected map[digest]rejection
	order    []digest // rejected's keys, oldest first
}

type digest [sha256.Size]byte

type rejection struct {
	err   error
	until time.Time
}

func newGuard(lim Limits) guard {
	return guard{
		lim: lim.withDefaults(), peers: make(map[peer.ID]*rate.Limiter), ips: make(map[string]*rate.Limiter),
		serving: make(map[peer.ID]chan struct{}), rejected: make(map[digest]rejection),
	}
}

// admitLocked reports why p, at ip, may not start a handshake now, or
// "" when it may: it takes a token from p's bucket and from ip's (none
// for ip ""). An admitted handshake then waits for its turn (turnLocked).
func (g *guard) admitLocked(p peer.ID, ip string, now time.Time) string {
	pl := bucketLocked(g.peers, p, now, g.lim.PeerRate, g.lim.PeerBurst)
	var il *rate.Limiter
	if ip != "" {
		il = bucketLocked(g.ips, ip, now, g.lim.IPRate, g.lim.IPBurst)
	}
	// Take from both or neither: a peer refused for its address does not
	// also lose its own tokens.
	if pl.TokensAt(now) < 1 {
		return "too many handshakes from this peer; retry later"
	}
	if il != nil && il.TokensAt(now) < 1 {
		return "too many handshakes from this address; retry later"
	}
	pl.AllowN(now, 1)
	if il != nil {
		il.AllowN(now, 1)
	}
	return ""
}

// turnLocked makes the handshake with p the one being served and
// returns nil, or returns a channel closed when the one being served
// ends: one handshake per peer at a time, the others (at most its bucket's
// burst) wait.
func (g *guard) turnLocked(p peer.ID) <-chan struct{} {
	if ch, ok := g.serving[p]; ok {
		return ch
	}
	g.serving[p] = make(chan struct{})
	return nil
}

// doneLocked ends p's turn.
func (g *guard) doneLocked(p peer.ID) {
	if ch, ok := g.serving[p]; ok {
		close(ch)
		delete(g.serving, p)
	}
}

// bucketLocked is m's bucket for k, made full when new.
func bucketLocked[K comparable](m map[K]*rate.Limiter, k K, now time.Time, r float64, burst int) *rate.Limiter {
	if l, ok := m[k]; ok {
		return l
	}
	if len(m) >= maxBuckets {
		for id, l := range m {
			if l.TokensAt(now) >= float64(burst) {
				delete(m, id)
			}
		}
		if len(m) >= maxBuckets {
			clear(m)
		}
	}
	l := rate.NewLimiter(rate.Limit(r), burst)
	m[k] = l
	return l
}

// rejectedLocked returns the remembered rejection of d, if live.
func (g *guard) rejectedLocked(d digest, now time.Time) (error, bool) {
	r, ok := g.rejected[d]
	if !ok || !now.Before(r.until) {
		return nil, false
	}
	return r.err, true
}

// rememberLocked keeps err as d's rejection, forgetting the oldest past
// the bound.
func (g *guard) rememberLocked(d digest, err error, now time.Time) {
	if _, ok := g.rejected[d]; !ok {
		g.order = append(g.order, d)
	}
	g.rejected[d] = rejection{err: err, until: now.Add(g.lim.RememberFor)}
	for len(g.order) > g.lim.Remember {
		delete(g.rejected, g.order[0])
		g.order = g.order[1:]
	}
	if cap(g.order) > 4*g.lim.Remember { // let the slid-off head go
		g.order = append([]digest(nil), g.order...)
	}
}

// forgetRejectionsLocked drops every remembered rejection: the policy
// changed, and what it refused may now pass.
func (g *guard) forgetRejectionsLocked() {
	clear(g.rejected)
	g.order = nil
}

// evidenceDigest names payload as presented by the holder of pubBytes: a
// rejection may depend on the key (the binding), so the key is part of it.
func evidenceDigest(pubBytes, payload []byte) digest {
	h := sha256.New()
	h.Write(pubBytes)
	h.Write([]byte{0})
	h.Write(payload)
	var d digest
	h.Sum(d[:0])
	return d
}

// remoteIP is the first IP address in the connection's remote address
// (the relay's, for a relayed connection), the whole address when it has
// none, or "" when it is loopback (no bucket).
func remoteIP(c network.Conn) string {
	a := c.RemoteMultiaddr()
	if a == nil {
		return "unknown"
	}
	if manet.IsIPLoopback(a) {
		return ""
	}
	for _, comp := range a {
		if comp.Code() == ma.P_IP4 || comp.Code() == ma.P_IP6 {
			return comp.Value()
		}
	}
	return a.String()
}
