package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cocoon-mesh/cocoon/p2p"
)

// Handshake protocol name and frame types.
const (
	ProtocolName    = "attest"
	ProtocolVersion = "1"

	frameEvidence byte = 1
	frameReject   byte = 2
	// frameNone says the sender presents no evidence (a client, or a
	// proxy without TEE hardware): it gets no verdict, and is trusted for
	// nothing a verdict is needed for. Its payload is empty.
	frameNone byte = 3
	// frameAsk asks the peer to present its evidence first: the sender
	// did not dial this connection, and shows its own evidence only to a
	// peer whose evidence it accepted. The peer answers only if it dialed
	// the connection itself; the exchange then runs with roles swapped.
	// Its payload is empty.
	frameAsk byte = 4

	handshakeTimeout = 10 * time.Second
)

// Config configures a Handshaker.
type Config struct {
	Network  string
	Validity time.Duration    // how long own evidence is valid; renewed (by Run) when a third is left
	Now      func() time.Time // the clock; time.Now if nil
	Limits   Limits           // the responder's admission; zero fields take DefaultLimits
}

// Handshaker runs the mutual attestation protocol and caches verdicts.
type Handshaker struct {
	h         host.Host
	proto     protocol.ID
	issuer    Issuer
	sealKeys  SealKeys // nil: own evidence binds no sealing key
	validator Validator
	cfg       Config
	log       *slog.Logger

	mu       sync.Mutex // guards verdicts, pruneAt, own, renewal and guard
	verdicts map[peer.ID]checked
	pruneAt  int // prune expired verdicts when this many are held
	own      *Evidence
	renewal  Renewal // the failures since own was issued; Expiry unset
	guard    guard

	issueMu sync.Mutex    // serialises Issue calls so a window is issued once
	wake    chan struct{} // wakes Run: renewal is due
}

// checked is a peer's verdict and the evidence it was reached on, kept so
// a proxy can relay the evidence to clients (PeerEvidence). One per peer:
// a newer exchange replaces both, Forget drops both.
type checked struct {
	verdict  Verdict
	evidence *Evidence
	digest   digest // of the evidence as presented: a replay is a lookup
}

// ErrNoEvidence is Attest's error when the peer presents no evidence: it
// answered the handshake, and has no verdict. Whether that will do is the
// caller's to decide (a client may use a proxy without one).
var ErrNoEvidence = errors.New("peer presents no evidence")

// NewHandshaker attests h's key with issuer and checks peers with
// validator. A nil issuer presents no evidence: the node can check its
// peers, and gets no verdict from them. With sealKeys, each evidence it issues also binds a new
// sealing key from sealKeys (v2); nil for a node that seals nothing (v1).
// Register it on a p2p.Service to answer peers.
func NewHandshaker(h host.Host, issuer Issuer, sealKeys SealKeys, validator Validator, cfg Config, log *slog.Logger) *Handshaker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Validity <= 0 {
		cfg.Validity = time.Hour
	}
	return &Handshaker{
		h: h, proto: p2p.ProtocolID(cfg.Network, ProtocolName, ProtocolVersion),
		issuer: issuer, sealKeys: sealKeys, validator: validator, cfg: cfg,
		log:      log.With("component", "attest"),
		verdicts: make(map[peer.ID]checked),
		wake:     make(chan struct{}, 1),
		guard:    newGuard(cfg.Limits),
	}
}

// Register serves the handshake on sv.
func (a *Handshaker) Register(sv *p2p.Service) {
	sv.Handle(a.proto, handshakeTimeout, a.serve)
}

// Verified returns the live verdict for p, if any.
func (a *Handshaker) Verified(p peer.ID) (Verdict, bool) {
	a.mu.Lock()
	c, ok := a.verdicts[p]
	a.mu.Unlock()
	if !ok || !c.verdict.Live(a.cfg.Now()) {
		return Verdict{}, false
	}
	return c.verdict, true
}

// PeerEvidence returns the evidence p presented when it was last verified,
// while that verdict is live: what a proxy relays to clients, who check it
// themselves. The evidence is shared: read-only.
func (a *Handshaker) PeerEvidence(p peer.ID) (*Evidence, bool) {
	a.mu.Lock()
	c, ok := a.verdicts[p]
	a.mu.Unlock()
	if !ok || !c.verdict.Live(a.cfg.Now()) {
		return nil, false
	}
	return c.evidence, true
}

// Forget drops the verdict for p, so the next Attest runs the handshake.
func (a *Handshaker) Forget(p peer.ID) {
	a.mu.Lock()
	delete(a.verdicts, p)
	a.mu.Unlock()
}

// ForgetKind drops every verdict reached on evidence of kind: the network
// stopped accepting it. Those peers must attest again. The policy changed,
// so the rejections it remembers go too.
func (a *Handshaker) ForgetKind(kind string) {
	a.mu.Lock()
	for p, c := range a.verdicts {
		if c.verdict.Kind == kind {
			delete(a.verdicts, p)
		}
	}
	a.guard.forgetRejectionsLocked()
	a.mu.Unlock()
}

// Revalidate checks every live verdict again, on the evidence it was
// reached on, against the validator's rules as they are now: call it when
// the network's policy changed (measurements, minimum TCB, dev evidence
// allowed), so that a verdict does not outlive the policy until the expiry
// the peer chose. Verdicts whose evidence no longer passes are dropped,
// and their peers returned; the others are replaced by the new verdicts
// (a tier may change). Expired verdicts are dropped silently.
func (a *Handshaker) Revalidate(ctx context.Context) []peer.ID {
	a.mu.Lock()
	held := maps.Clone(a.verdicts)
	a.mu.Unlock()
	now := a.cfg.Now()
	var dropped []peer.ID
	for p, c := range held {
		var v Verdict
		pub, err := p.ExtractPublicKey()
		if err == nil && c.verdict.Live(now) {
			v, err = a.validator.Validate(ctx, c.evidence, pub, now)
		}
		a.mu.Lock()
		if cur, ok := a.verdicts[p]; ok && cur.evidence == c.evidence { // not replaced meanwhile
			if err == nil && c.verdict.Live(now) {
				a.verdicts[p] = checked{verdict: v, evidence: c.evidence}
			} else {
				delete(a.verdicts, p)
			}
		}
		a.mu.Unlock()
		if err != nil {
			a.log.Info("peer's evidence no longer allowed by the network's policy: verdict dropped", "peer", p, "err", err)
			dropped = append(dropped, p)
		}
	}
	return dropped
}

// Evidence returns this node's current evidence. While it is valid, that
// evidence is returned as is, whatever happens to its renewal: a node that
// cannot renew keeps serving until its evidence expires, and no handshake
// waits on the issuer. Once less than a third of its validity is left, the
// renewal loop (Run) is woken to renew it in the background. Only when
// there is none, or it expired, is evidence issued here, and then not
// before the backoff of the last failure ends (ErrRenewal meanwhile, which
// says when a retry can help). Each issue binds a new sealing key from the
// node's SealKeys, if it has them. A node with no issuer has none: nil, nil.
func (a *Handshaker) Evidence(ctx context.Context) (*Evidence, error) {
	if a.issuer == nil {
		return nil, nil
	}
	now := a.cfg.Now()
	a.mu.Lock()
	own := a.own
	a.mu.Unlock()
	if own != nil && now.Before(time.Unix(own.Expiry, 0)) {
		if a.renewDue(own, now) {
			select {
			case a.wake <- struct{}{}:
			default: // the loop is awake already
			}
		}
		return own, nil
	}
	return a.issue(ctx, false)
}

// ErrRenewal is Evidence's error while the node has no valid evidence and
// the last attempt to issue some failed: no new attempt is made until its
// backoff ends (Renewal says when), so that peers' handshakes do not each
// call the issuer. A retry after that time can help.
var ErrRenewal = errors.New("evidence renewal failing")

// Renewal is the state of a node's own evidence and its renewal, as status
// and doctor show it.
type Renewal struct {
	// Expiry is when the current evidence expires; zero with none.
	Expiry time.Time
	// Valid says the current evidence has not expired, by the
	// handshaker's clock.
	Valid bool
	// Failures counts the attempts that failed in a row since the last
	// success; zero while renewal works.
	Failures int
	// LastError is the last failed attempt's error; "" while renewal works.
	LastError string
	// FailingSince is when the first of those failures happened.
	FailingSince time.Time
	// RetryAt is when the next attempt may be made.
	RetryAt time.Time
}

// Renewal reports the state of this node's own evidence and its renewal.
func (a *Handshaker) Renewal() Renewal {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.renewal
	if a.own != nil {
		r.Expiry = time.Unix(a.own.Expiry, 0)
		r.Valid = a.cfg.Now().Before(r.Expiry)
	}
	return r
}

// Renewal timing: each Issue call is cut off after issueTimeout; failed
// attempts are retried after minBackoff, doubling up to maxBackoff (and
// never more than a tenth of the validity, so several retries fit before
// the evidence expires).
const (
	issueTimeout = 30 * time.Second
	minBackoff   = time.Second
	maxBackoff   = 5 * time.Minute
)

// renewDue reports whether own, valid at now, should be renewed: less than
// a third of its validity is left.
func (a *Handshaker) renewDue(own *Evidence, now time.Time) bool {
	return time.Unix(own.Expiry, 0).Sub(now) <= a.cfg.Validity/3
}

// Renew renews this node's evidence now if it is due (none, expired, or
// less than a third of its validity left) and the backoff of the last
// failure has ended; otherwise it does nothing. The renewal loop (Run)
// calls it; so can a test, with its clock.
func (a *Handshaker) Renew(ctx context.Context) error {
	if a.issuer == nil {
		return nil
	}
	a.mu.Lock()
	own := a.own
	a.mu.Unlock()
	if own != nil && !a.renewDue(own, a.cfg.Now()) {
		return nil
	}
	_, err := a.issue(ctx, true)
	if errors.Is(err, ErrRenewal) {
		return nil // not yet: the backoff runs
	}
	return err
}

// Run renews this node's evidence ahead of its expiry until ctx ends:
// woken by Evidence once renewal is due, and at least every minute (a
// sixtieth of the validity, when shorter) in case nothing calls Evidence.
// A failure is retried with exponential backoff while the current
// evidence is served; Renewal reports it.
func (a *Handshaker) Run(ctx context.Context) {
	if a.issuer == nil {
		return
	}
	t := time.NewTicker(min(max(a.cfg.Validity/60, time.Second), time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.wake:
		}
		if err := a.Renew(ctx); err != nil && ctx.Err() == nil {
			r := a.Renewal()
			a.log.Warn("renewing own evidence failed; serving the current one until it expires",
				"err", err, "failures", r.Failures, "expiry", r.Expiry, "retry_at", r.RetryAt)
		}
	}
}

// issue issues new evidence, one call at a time, unless another call just
// did (renewing: when it is no longer due; otherwise: when it is valid) or
// the backoff of the last failure has not ended (ErrRenewal).
func (a *Handshaker) issue(ctx context.Context, renewing bool) (*Evidence, error) {
	a.issueMu.Lock()
	defer a.issueMu.Unlock()
	now := a.cfg.Now()
	a.mu.Lock()
	own, r := a.own, a.renewal
	a.mu.Unlock()
	if own != nil && now.Before(time.Unix(own.Expiry, 0)) && (!renewing || !a.renewDue(own, now)) {
		return own, nil
	}
	if r.Failures > 0 && now.Before(r.RetryAt) {
		return nil, fmt.Errorf("%w: %d attempts since %s, next at %s; last: %s", ErrRenewal,
			r.Failures, r.FailingSince.UTC().Format(time.RFC3339), r.RetryAt.UTC().Format(time.RFC3339), r.LastError)
	}
	ev, err := a.issueNow(ctx, now)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if a.renewal.Failures == 0 {
			a.renewal.FailingSince = now
		}
		a.renewal.Failures++
		a.renewal.LastError = err.Error()
		backoff := minBackoff << min(a.renewal.Failures-1, 20)
		a.renewal.RetryAt = now.Add(min(backoff, maxBackoff, max(a.cfg.Validity/10, minBackoff)))
		return nil, err
	}
	a.own, a.renewal = ev, Renewal{}
	return ev, nil
}

// issueNow calls the issuer, for at most issueTimeout, for evidence valid
// from now for the validity window, binding a new sealing key if the node
// has SealKeys.
func (a *Handshaker) issueNow(ctx context.Context, now time.Time) (*Evidence, error) {
	ctx, cancel := context.WithTimeout(ctx, issueTimeout)
	defer cancel()
	expiry := now.Add(a.cfg.Validity)
	var sealKey []byte
	if a.sealKeys != nil {
		k, err := a.sealKeys.Next(expiry)
		if err != nil {
			return nil, fmt.Errorf("making a sealing key: %w", err)
		}
		if len(k) == 0 || len(k) > MaxSealKey {
			return nil, fmt.Errorf("making a sealing key: %w: public key of %d bytes, want 1 to %d", ErrFormat, len(k), MaxSealKey)
		}
		sealKey = k
	}
	ev, err := a.issuer.Issue(ctx, a.h.Peerstore().PubKey(a.h.ID()), expiry, sealKey)
	if err == nil && !bytes.Equal(ev.SealKey, sealKey) {
		// An issuer that drops the key would present evidence binding
		// none: peers could never seal to this node.
		err = errors.New("the issuer did not bind the sealing key")
	}
	if err != nil {
		if sealKey != nil {
			a.sealKeys.Discard(sealKey) // no evidence binds it
		}
		return nil, fmt.Errorf("issuing evidence: %w", err)
	}
	return ev, nil
}

// Attest returns p's verdict, running the handshake over a new stream when
// there is no live one. The host must already know how to reach p. Over
// a connection p dialed, this node asks p to present its evidence first
// (frameAsk), and shows its own only once it accepted p's: a stranger
// that connects cannot make it send its evidence.
func (a *Handshaker) Attest(ctx context.Context, p peer.ID) (Verdict, error) {
	if v, ok := a.Verified(p); ok {
		return v, nil
	}
	own, err := a.Evidence(ctx)
	if err != nil {
		return Verdict{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	s, err := a.h.NewStream(ctx, p, a.proto)
	if err != nil {
		return Verdict{}, fmt.Errorf("opening attestation stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	var v Verdict
	if s.Conn().Stat().Direction == network.DirOutbound {
		v, err = a.exchange(ctx, s, own, true, false)
	} else {
		v, err = a.ask(ctx, s, own)
	}
	if err != nil {
		s.Reset()
		return Verdict{}, err
	}
	s.Close()
	return v, nil
}

// ask runs the exchange over a connection the peer dialed: it asks the
// peer to go first, then answers as a responder does.
func (a *Handshaker) ask(ctx context.Context, s network.Stream, own *Evidence) (Verdict, error) {
	fw := p2p.NewFrameWriter(s, 0)
	if err := fw.Write(frameAsk, nil); err != nil {
		return Verdict{}, fmt.Errorf("asking for evidence: %w", err)
	}
	if err := fw.Flush(); err != nil {
		return Verdict{}, fmt.Errorf("asking for evidence: %w", err)
	}
	return a.exchange(ctx, s, own, false, true)
}

// serve answers a handshake, once the peer is admitted: within its own
// and its address's token buckets, then one handshake per peer at a time.
// A peer refused gets a rejection saying why, before anything is read.
func (a *Handshaker) serve(ctx context.Context, s network.Stream) error {
	remote := s.Conn().RemotePeer()
	a.mu.Lock()
	why := a.guard.admitLocked(remote, remoteIP(s.Conn()), a.cfg.Now())
	a.mu.Unlock()
	if why != "" {
		fw := p2p.NewFrameWriter(s, 0)
		if err := fw.Write(frameReject, []byte(why)); err != nil {
			return err
		}
		return fw.Flush()
	}
	for {
		a.mu.Lock()
		wait := a.guard.turnLocked(remote)
		a.mu.Unlock()
		if wait == nil {
			break
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() {
		a.mu.Lock()
		a.guard.doneLocked(remote)
		a.mu.Unlock()
	}()
	own, err := a.Evidence(ctx)
	if err != nil {
		return err
	}
	_, err = a.exchange(ctx, s, own, false, false)
	if errors.Is(err, errAsked) {
		// The peer asked this node to go first. It does only over a
		// connection it dialed itself; the peer dialed this one, or lies.
		if s.Conn().Stat().Direction != network.DirOutbound {
			fw := p2p.NewFrameWriter(s, 0)
			if fw.Write(frameReject, []byte("you dialed: present your evidence first")) == nil && fw.Flush() == nil {
				return nil
			}
			return err
		}
		_, err = a.exchange(ctx, s, own, true, false)
	}
	if errors.Is(err, ErrNoEvidence) {
		return nil // the peer took part, presenting nothing: no verdict
	}
	if errors.Is(err, errRejectSent) {
		// The peer was told why: a graceful close delivers that answer,
		// where a reset would discard it unread.
		return nil
	}
	return err
}

// errRejectSent marks a failed exchange whose rejection reached the peer.
var errRejectSent = errors.New("rejection sent")

// errAsked is a responder's exchange ending on the peer's frameAsk.
var errAsked = errors.New("peer asks for evidence first")

// exchange sends own evidence (frameNone when own is nil) and checks the
// peer's. The initiator writes first; the responder checks before it
// answers, so an unacceptable peer learns nothing but the rejection. A
// peer that presents none gets its answer and no verdict: ErrNoEvidence;
// the answer is this node's evidence (a client that dialed a proxy checks
// it for client.min_proxy_trust), or nothing when this node asked the peer
// to go first (asker).
func (a *Handshaker) exchange(ctx context.Context, s network.Stream, own *Evidence, initiator, asker bool) (Verdict, error) {
	fr := p2p.NewFrameReader(s, MaxEvidenceSize, 0)
	fw := p2p.NewFrameWriter(s, 0)
	send := func() error {
		if own == nil {
			if err := fw.Write(frameNone, nil); err != nil {
				return err
			}
			return fw.Flush()
		}
		b, err := json.Marshal(own)
		if err != nil {
			return err
		}
		if err := fw.Write(frameEvidence, b); err != nil {
			return err
		}
		return fw.Flush()
	}
	if initiator {
		if err := send(); err != nil {
			return Verdict{}, fmt.Errorf("sending evidence: %w", err)
		}
	}
	typ, payload, err := fr.Next()
	if err != nil {
		return Verdict{}, fmt.Errorf("reading peer evidence: %w", err)
	}
	remote := s.Conn().RemotePeer()
	if typ == frameAsk && !initiator && len(payload) == 0 {
		return Verdict{}, errAsked
	}
	if typ == frameReject {
		return Verdict{}, fmt.Errorf("peer %s rejected our evidence: %.200s", remote, payload)
	}
	if typ == frameNone && len(payload) != 0 {
		err := fmt.Errorf("%w: a no-evidence frame carries %d bytes", ErrFormat, len(payload))
		if !initiator && fw.Write(frameReject, []byte(err.Error())) == nil && fw.Flush() == nil {
			return Verdict{}, fmt.Errorf("peer %s: %w (%w)", remote, err, errRejectSent)
		}
		return Verdict{}, fmt.Errorf("peer %s: %w", remote, err)
	}
	if typ == frameNone {
		a.Forget(remote) // whatever it proved before, it proves nothing now
		if asker {
			own = nil
		}
		if !initiator {
			if err := send(); err != nil {
				return Verdict{}, fmt.Errorf("sending evidence: %w", err)
			}
		}
		return Verdict{}, fmt.Errorf("peer %s: %w", remote, ErrNoEvidence)
	}
	if typ != frameEvidence {
		return Verdict{}, fmt.Errorf("unexpected attestation frame type %d", typ)
	}
	v, ev, d, err := a.check(ctx, remote, payload, s.Conn().RemotePublicKey())
	if err != nil {
		a.log.Info("peer failed attestation", "peer", remote, "err", err)
		if !initiator {
			if fw.Write(frameReject, []byte(err.Error())) == nil && fw.Flush() == nil {
				return Verdict{}, fmt.Errorf("peer %s: %w (%w)", remote, err, errRejectSent)
			}
		}
		return Verdict{}, fmt.Errorf("peer %s: %w", remote, err)
	}
	// Stored before the responder answers, so that the peer, once it
	// has the answer, finds its verdict here (a worker reserving a relay
	// slot right after attesting the proxy).
	a.mu.Lock()
	a.storeLocked(remote, checked{verdict: v, evidence: ev, digest: d})
	a.mu.Unlock()
	if !initiator {
		if err := send(); err != nil {
			return Verdict{}, fmt.Errorf("sending evidence: %w", err)
		}
	}
	a.log.Debug("peer attested", "peer", remote, "tier", v.Tier, "expiry", v.Expiry)
	return v, nil
}

// storeLocked keeps c for p. Verdicts of peers never seen again would
// otherwise stay, with their evidence, forever: once the map has doubled
// since the last pruning, expired ones are dropped (amortised O(1)).
func (a *Handshaker) storeLocked(p peer.ID, c checked) {
	a.verdicts[p] = c
	if len(a.verdicts) < a.pruneAt {
		return
	}
	now := a.cfg.Now()
	for id, old := range a.verdicts {
		if !old.verdict.Live(now) {
			delete(a.verdicts, id)
		}
	}
	a.pruneAt = max(64, 2*len(a.verdicts))
}

// check decides on payload, the evidence remote presented with pub,
// cheapest step first: a replay of the evidence its live verdict was
// reached on, or of evidence rejected lately, is a lookup; then it is
// decoded (size-capped), its binding and expiry checked (one hash), and
// only then does the validator verify signatures and quotes.
func (a *Handshaker) check(ctx context.Context, remote peer.ID, payload []byte, pub crypto.PubKey) (Verdict, *Evidence, digest, error) {
	if pub == nil {
		return Verdict{}, nil, digest{}, errors.New("connection carries no public key")
	}
	pb, err := crypto.MarshalPublicKey(pub)
	if err != nil {
		return Verdict{}, nil, digest{}, fmt.Errorf("encoding public key: %w", err)
	}
	d := evidenceDigest(pb, payload)
	now := a.cfg.Now()
	a.mu.Lock()
	c, ok := a.verdicts[remote]
	rerr, rejected := a.guard.rejectedLocked(d, now)
	a.mu.Unlock()
	if ok && c.digest == d && c.verdict.Live(now) {
		return c.verdict, c.evidence, d, nil
	}
	if rejected {
		return Verdict{}, nil, d, rerr
	}
	v, ev, err := a.validate(ctx, payload, pub, now)
	if err != nil && ctx.Err() == nil {
		// The same evidence fails the same way: remember it. Not when
		// the handshake was cut short, which says nothing about it.
		a.mu.Lock()
		a.guard.rememberLocked(d, err, now)
		a.mu.Unlock()
	}
	return v, ev, d, err
}

func (a *Handshaker) validate(ctx context.Context, payload []byte, pub crypto.PubKey, now time.Time) (Verdict, *Evidence, error) {
	ev, err := DecodeEvidence(payload)
	if err != nil {
		return Verdict{}, nil, fmt.Errorf("decoding evidence: %w", err)
	}
	if err := checkBound(ev, pub, now); err != nil {
		return Verdict{}, nil, err
	}
	v, err := a.validator.Validate(ctx, ev, pub, now)
	if err != nil {
		return Verdict{}, nil, err
	}
	return v, ev, nil
}
