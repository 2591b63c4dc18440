// Package gateway is the client node's OpenAI-compatible HTTP API:
// GET /v1/models, POST /v1/chat/completions, POST /v1/completions and
// POST /v1/embeddings, streamed as OpenAI's server-sent events or answered
// whole, with OpenAI error objects. It checks each request, sends it into
// the mesh through an Upstream, and writes every chunk as soon as it
// arrives, flushing when no further chunk is already waiting. Engine
// events (tool calls, reasoning, logprobs, other choices) reach the app as
// the engine sent them, with this answer's id and model; a whole answer is
// built from the stream as OpenAI's SDKs build one (message.go).
//
// A request's max price is Config.MaxPrice unless the app sends the
// X-Cocoon-Max-Price header: decimal nanoTON per million prompt plus
// completion tokens, 0 for no limit. When no worker is that cheap the app
// gets 503 with code price_too_high.
//
// A request's minimum trust tier is Config.MinTier, raised (never lowered)
// by the X-Cocoon-Min-Trust header: dev, tee or tee-gpu. The client node's
// Upstream (Proxies) seals each request to workers it verified itself at
// that tier or above, from its proxy's directory (sealed.go), so no other
// worker, and no proxy, can read it; when no such worker is, the app gets
// 503 with code trust_too_low. The tier an answer names is the client's
// own verdict on the worker whose key sealed it. The gateway still checks
// the End's tier against the minimum and withholds an answer from below
// it (502, trust_too_low; a streamed one ends with that error instead of
// data: [DONE]), which guards an Upstream that sends in the clear.
//
// The tier that served is in the response's "cocoon" extension, and in
// the X-Cocoon-Tier header of a whole response or the trailer of a
// streamed one.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Config configures the gateway.
type Config struct {
	// APIKey, when set, is required as "Authorization: Bearer <key>".
	APIKey string
	// FirstByteTimeout bounds the wait for the first chunk (or error) from
	// the mesh; past it the app gets 504.
	FirstByteTimeout time.Duration
	// MaxPrice is the most a request may cost, in nanoTON per million
	// prompt plus completion tokens, unless the request's
	// X-Cocoon-Max-Price header says otherwise; 0 means no limit. A
	// negative value counts as 0.
	MaxPrice int64
	// MinTier is the weakest trust tier a request's worker may have; 0
	// means any. A request's MinTrustHeader may raise it, never lower it.
	MinTier attest.Tier
	// BodyTimeout bounds the wait for a request's body once its headers
	// are in (NewHTTPServer bounds the headers); past it the app gets 408
	// and the connection is closed. One minute if zero: a 4 MiB body at
	// 70 KB/s.
	BodyTimeout time.Duration
	// AllowedHosts are the host names (and IPs), without port, that a
	// request's Host may name besides loopback ones: the names apps use to
	// reach a node beyond loopback, and the listen address. An unspecified
	// IP (0.0.0.0, ::) allows any IP: a request for an IP was not rebound.
	// Any other Host is refused (403, host_not_allowed): it is how a DNS
	// rebinding page reaches the API.
	AllowedHosts []string
	// AllowedOrigins are the exact origins ("https://app.example") of web
	// apps allowed to use the API from a browser, with the API key; they
	// are ignored without one. Any other Origin, or a browser's
	// Sec-Fetch-Site of cross-site or same-site, is refused (403,
	// origin_not_allowed). See origin.go.
	AllowedOrigins []string
	// Now is the clock for "created" fields; time.Now if nil.
	Now func() time.Time
}

// Payer is the client's side of payments; nil when payments are off.
type Payer interface {
	// Admit is asked before each request whether this client can pay for
	// it; its error is the answer (payment_required, 402, with a reason
	// when it has no funded channel).
	Admit() *inference.Error
	// Pay pays for an answer the app got, through proxy (told by
	// Responses that say, see ProxyResponse).
	Pay(proxy peer.ID, end *inference.End)
}

// FeeCap is the root contract's largest proxy fee, in ppm, or negative
// when unknown; nil when there is no root contract.
type FeeCap interface {
	// MaxFeePPM is the largest fee a proxy may add, in parts per million
	// of the worker's amount: an answer whose fee is above it is refused.
	MaxFeePPM() int64
}

// ProxyResponse is a Response that names the proxy answering it.
type ProxyResponse interface {
	Proxy() peer.ID
}

// ListedResponse is a Response that knows the price its proxy listed for
// the workers it may come from: a receipt may bill no more.
type ListedResponse interface {
	Listed(worker string) (payments.Price, bool)
}

// StoppableResponse is a Response whose answer can be stopped: the worker
// stops generating and ends the answer as it is, with its End and a
// receipt for what was streamed, which Next still returns. The gateway
// stops an answer whose app went away after its first chunk, and pays for
// what was streamed; an app gone before the first chunk pays nothing.
type StoppableResponse interface {
	Stop()
}

// UnwrapResponse is a Response that wraps another (the metrics do): the
// gateway looks through it for the optional interfaces above.
type UnwrapResponse interface {
	Unwrap() Response
}

// find returns the first Response in r's chain that is a T.
func find[T any](r Response) (T, bool) {
	for r != nil {
		if t, ok := r.(T); ok {
			return t, true
		}
		u, ok := r.(UnwrapResponse)
		if !ok {
			break
		}
		r = u.Unwrap()
	}
	var zero T
	return zero, false
}

// stopWait bounds the wait for the End of an answer stopped because its
// app went away; past it the answer is abandoned, and not paid.
const stopWait = 10 * time.Second

// MaxPriceHeader sets one request's max price: decimal nanoTON per million
// prompt plus completion tokens, 0 for no limit. It overrides
// Config.MaxPrice.
const MaxPriceHeader = "X-Cocoon-Max-Price"

// MinTrustHeader sets one request's minimum trust tier: dev, tee or
// tee-gpu. The stricter of it and Config.MinTier applies: an app may ask
// for more trust than its node's operator requires, never for less.
const MinTrustHeader = "X-Cocoon-Min-Trust"

// TierHeader names the trust tier of the worker that served: a header of
// a whole response, a trailer of a streamed one (whose headers go out
// before the tier is known).
const TierHeader = "X-Cocoon-Tier"

// Server is the HTTP API.
type Server struct {
	cfg   Config
	up    Upstream
	payer Payer  // nil: payments are off
	fees  FeeCap // nil: no cap known
	log   *slog.Logger
	mux   *http.ServeMux
	guard guard

	mu       sync.Mutex         // guards receipts
	receipts map[peer.ID]uint64 // receipts checked per worker, to sample signatures
}

// New serves the OpenAI API in front of up. payer, when not nil, admits
// and pays for requests; fees, when not nil, caps the fee a proxy may
// name. Callers pass a nil interface for an absent one, not a nil pointer
// in one.
func New(cfg Config, up Upstream, payer Payer, fees FeeCap, log *slog.Logger) *Server {
	if cfg.FirstByteTimeout <= 0 {
		cfg.FirstByteTimeout = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = time.Minute
	}
	cfg.MaxPrice = max(cfg.MaxPrice, 0)
	s := &Server{cfg: cfg, up: up, payer: payer, fees: fees, log: log.With("component", "gateway"), mux: http.NewServeMux(),
		guard: newGuard(cfg), receipts: make(map[peer.ID]uint64)}
	s.mux.HandleFunc("/v1/models", s.models)
	s.mux.HandleFunc("/v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		s.complete(w, r, inference.KindChat)
	})
	s.mux.HandleFunc("/v1/completions", func(w http.ResponseWriter, r *http.Request) {
		s.complete(w, r, inference.KindCompletion)
	})
	s.mux.HandleFunc("/v1/embeddings", func(w http.ResponseWriter, r *http.Request) {
		s.complete(w, r, inference.KindEmbedding)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "unknown_url",
			fmt.Sprintf("Unknown request URL: %s %s", r.Method, r.URL.Path))
	})
	return s
}

// NewHTTPServer wraps h with the timeouts an API on a shared machine
// needs: headers must arrive within 10 s, idle connections close after 2
// minutes. (A Server bounds the body itself: Config.BodyTimeout.) Served
// on Listener's listener, it sends each response's last part in one write.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       corkContext,
		ConnState:         corkState,
	}
}

// ServeHTTP checks that a program on this machine, or an allowed web app,
// sent the request (origin.go), then the API key and the body's type, and
// dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.guard.check(w, r) {
		return
	}
	if s.cfg.APIKey != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.APIKey)) != 1 {
			writeError(w, http.StatusUnauthorized, "invalid_request_error", "", "invalid_api_key",
				"Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.")
			return
		}
	}
	if checkJSON(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	c, err := s.up.Catalog(ctx)
	if err != nil {
		s.log.Info("listing models", "err", err)
		writeError(w, http.StatusServiceUnavailable, "server_error", "", "no_proxy", "The network is not reachable: "+err.Error())
		return
	}
	type model struct {
		ID        string   `json:"id"`
		Object    string   `json:"object"`
		Created   int64    `json:"created"`
		OwnedBy   string   `json:"owned_by"`
		Simulated bool     `json:"simulated"`
		Workers   int      `json:"workers,omitempty"`
		Endpoints []string `json:"endpoints,omitempty"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: make([]model, 0, len(c.Models))}
	for _, m := range c.Models {
		owner := "cocoon"
		if m.Simulated {
			owner = "cocoon-sim"
		}
		out.Data = append(out.Data, model{ID: m.ID, Object: "model", OwnedBy: owner, Simulated: m.Simulated, Workers: m.Workers, Endpoints: m.Endpoints})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, kind inference.Kind) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, http.MethodPost)
		return
	}
	maxPrice, bad := s.maxPrice(r.Header)
	if bad != nil {
		writeInferenceError(w, bad)
		return
	}
	minTier, bad := s.minTier(r.Header)
	if bad != nil {
		writeInferenceError(w, bad)
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	p, bad := check(kind, body)
	if bad != nil {
		writeInferenceError(w, bad)
		return
	}
	if s.payer != nil {
		if e := s.payer.Admit(); e != nil {
			writeInferenceError(w, e)
			return
		}
	}
	// MaxTokens: proxies reserve payment by it; the worker holds the body to it.
	req := &inference.Request{ID: newID(kind), Kind: kind, Model: p.model, MaxPrice: maxPrice, MinTier: minTier,
		MaxTokens: p.maxTokens, Body: body}
	// Built only when something is logged: With formats its attributes.
	log := func() *slog.Logger { return s.log.With("request", req.ID, "model", req.Model) }

	// The answer is not tied to the app's connection: an app gone before
	// the first chunk abandons it (cancel), one gone after it stops it,
	// and pays for what was streamed (stop, set below).
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	var stop atomic.Pointer[func()]
	unwatch := context.AfterFunc(r.Context(), func() {
		if f := stop.Load(); f != nil {
			(*f)()
			return
		}
		cancel()
	})
	defer unwatch()
	var timedOut atomic.Bool
	timer := time.AfterFunc(s.cfg.FirstByteTimeout, func() { timedOut.Store(true); cancel() })
	defer timer.Stop()

	resp, err := s.up.Open(ctx, req)
	if err != nil {
		if timedOut.Load() {
			writeTimeout(w, s.cfg.FirstByteTimeout)
			return
		}
		if errors.Is(err, ErrNoProxy) {
			writeError(w, http.StatusServiceUnavailable, "server_error", "", "no_proxy", "No proxy is reachable: the node is still looking for one, or none passed its checks (cocoon doctor says which).")
			return
		}
		var e *inference.Error
		if errors.As(err, &e) {
			writeInferenceError(w, e) // no worker the client verified can take it
			return
		}
		if r.Context().Err() != nil {
			log().Debug("app went away before the first chunk")
			return
		}
		log().Info("proxy failed before the first chunk", "err", err)
		writeError(w, http.StatusBadGateway, "server_error", "", "upstream_error", "The proxy failed: "+err.Error())
		return
	}
	defer resp.Close()
	ev, err := resp.Next()
	timer.Stop()
	if err != nil {
		switch {
		case timedOut.Load():
			writeTimeout(w, s.cfg.FirstByteTimeout)
		case r.Context().Err() != nil:
			log().Debug("app went away before the first chunk")
		default:
			log().Info("proxy failed before the first chunk", "err", err)
			writeError(w, http.StatusBadGateway, "server_error", "", "upstream_error", "The proxy failed: "+err.Error())
		}
		return
	}
	if ev.Type == inference.FrameError {
		writeInferenceError(w, ev.Err)
		return
	}
	stopAnswer := sync.OnceFunc(func() {
		st, ok := find[StoppableResponse](resp)
		if !ok {
			cancel()
			return
		}
		log().Debug("app went away mid-answer; stopping it, to pay for what was streamed")
		st.Stop()
		time.AfterFunc(stopWait, cancel)
	})
	stop.Store(&stopAnswer)
	if r.Context().Err() != nil {
		stopAnswer() // gone while the first chunk was on its way
	}
	out := newEncoder(kind, req.ID, p.model, s.cfg.Now().Unix())
	chk := &receiptCheck{req: req, content: sha256.New(), verify: s.verifyReceipt, maxFeePPM: -1}
	if lr, ok := find[ListedResponse](resp); ok {
		chk.listed = lr.Listed
	}
	if s.fees != nil {
		chk.maxFeePPM = s.fees.MaxFeePPM()
	}
	if p.stream {
		s.stream(w, r, resp, ev, out, p.includeUsage, minTier, chk, stopAnswer, log)
		return
	}
	corkLast(r) // whole writes only the answer, or its error, at the end
	s.whole(w, resp, ev, out, minTier, chk, log)
}

// readBody reads a request's body, or answers the request with why it
// could not: too large, too slow, or broken off.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	// An app that trickles its body would hold the connection for as long
	// as it likes: the body gets BodyTimeout. The deadline is lifted once
	// the body is in (left in place, it would cut the answer's stream), and
	// kept after a failure, so that net/http's draining of what is left of
	// the body ends at once too. A ResponseWriter that cannot set deadlines
	// leaves the body unbounded.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, inference.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "", "request_too_large",
				fmt.Sprintf("The request body is over the limit of %d bytes.", inference.MaxBodyBytes))
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "invalid_request_error", "", "request_timeout",
				fmt.Sprintf("The request body did not arrive within %s.", s.cfg.BodyTimeout))
		default:
			writeError(w, http.StatusBadRequest, "invalid_request_error", "", "", "Reading the request body: "+err.Error())
		}
		return nil, false
	}
	rc.SetReadDeadline(time.Time{})
	return body, true
}

// maxPrice is the request's max price: its MaxPriceHeader, or the
// configured default. A header that is not one whole number of at least 0
// is a bad request naming the header.
func (s *Server) maxPrice(h http.Header) (int64, *inference.Error) {
	vs := h.Values(MaxPriceHeader)
	if len(vs) == 0 || len(vs) == 1 && vs[0] == "" {
		return s.cfg.MaxPrice, nil
	}
	n, err := strconv.ParseInt(vs[0], 10, 64)
	if len(vs) > 1 || err != nil || n < 0 {
		return 0, &inference.Error{Code: inference.CodeBadRequest, Param: MaxPriceHeader,
			Message: MaxPriceHeader + " must be given once, as a whole number of nanoTON per million tokens (0 for no limit)"}
	}
	return n, nil
}

// minTier is the request's minimum trust tier: the stricter of
// MinTrustHeader and the configured one. A header that is not one known
// tier is a bad request naming the header.
func (s *Server) minTier(h http.Header) (attest.Tier, *inference.Error) {
	vs := h.Values(MinTrustHeader)
	if len(vs) == 0 || len(vs) == 1 && vs[0] == "" {
		return s.cfg.MinTier, nil
	}
	t, err := attest.ParseTier(vs[0])
	if len(vs) > 1 || err != nil {
		return 0, &inference.Error{Code: inference.CodeBadRequest, Param: MinTrustHeader,
			Message: MinTrustHeader + " must be given once, as dev, tee or tee-gpu"}
	}
	return max(t, s.cfg.MinTier), nil
}

// untrusted is the error for an answer whose End names a tier below
// minTier, or nil when it is trusted enough. An End without a tier, or
// with one this node does not know, is below any minimum.
func untrusted(end *inference.End, minTier attest.Tier) *inference.Error {
	if minTier == 0 {
		return nil
	}
	if t, err := attest.ParseTier(end.Tier); err == nil && t >= minTier {
		return nil
	}
	tier := end.Tier
	if tier == "" {
		tier = "none named"
	}
	return inference.Errorf(inference.CodeUntrusted,
		"the proxy answered from a worker at trust tier %s, under the minimum %s; the answer is withheld", tier, minTier)
}

// receiptCheck checks the worker's signed receipt of an answer against what
// reached this client: the request it sent, the content it streamed, the
// model, the tokens and the worker.
type receiptCheck struct {
	req     *inference.Request
	content hash.Hash
	// verify says whether to verify the signature of a receipt from this
	// worker that bills this many nanoTON.
	verify func(worker peer.ID, amount int64) bool
	// listed is the price the proxy listed for a worker; nil when unknown.
	listed func(worker string) (payments.Price, bool)
	// maxFeePPM caps the proxy's fee; negative: no cap known.
	maxFeePPM int64
}

// The client verifies a worker's receipt signature on its first receipt,
// on every receipt that bills VerifyAbove nanoTON or more, and on a random
// one in verifyEvery of the others. Every receipt is compared with the
// answer; the signature, which costs some fifty times that, is what makes
// the receipt proof. A worker that signs badly is caught within about
// verifyEvery answers, and cannot tell which ones: the sample is drawn
// from crypto/rand, not counted.
const (
	verifyEvery = 16
	// VerifyAbove is the bill, in nanoTON (0.001 TON), from which every
	// receipt's signature is verified.
	VerifyAbove = 1_000_000
)

func (s *Server) verifyReceipt(worker peer.ID, amount int64) bool {
	s.mu.Lock()
	seen := s.receipts[worker] > 0
	if len(s.receipts) >= 1<<16 && !seen {
		clear(s.receipts) // bounded memory; workers start again at verified
	}
	s.receipts[worker]++
	s.mu.Unlock()
	if !seen || amount >= VerifyAbove {
		return true
	}
	var b [1]byte
	rand.Read(b[:])
	return b[0]%verifyEvery == 0
}

// check returns the error to answer with when the End's receipt is refused.
// An End without a receipt passes: workers that sign none still serve, until
// payments require receipts.
func (c *receiptCheck) check(end *inference.End) *inference.Error {
	if end.Receipt == nil {
		return nil
	}
	refuse := func(err error) *inference.Error {
		return inference.Errorf(inference.CodeBadReceipt, "the worker's receipt does not match the answer: %v; the answer is withheld", err)
	}
	worker, err := peer.Decode(end.Worker)
	if err != nil {
		return refuse(fmt.Errorf("worker %q: %w", end.Worker, err))
	}
	got, err := payments.Open(end.Receipt, worker)
	if err != nil {
		return refuse(err)
	}
	bill, err := got.Bill(0)
	if err != nil {
		return refuse(err)
	}
	if c.verify(worker, bill.Worker) {
		if got, err = payments.Verify(end.Receipt, worker); err != nil {
			return refuse(err)
		}
	}
	// The price is the worker's word: it must be no more than the
	// proxy listed when the client chose the worker, and within the
	// request's max price (which includes the proxy's fee, so the
	// worker's part alone must fit).
	if per := got.Price.Prompt + got.Price.Completion; c.req.MaxPrice > 0 && per > c.req.MaxPrice {
		return refuse(fmt.Errorf("it bills at %d nanoTON per million prompt plus completion tokens, over the request's max price of %d", per, c.req.MaxPrice))
	}
	if c.listed != nil {
		if l, ok := c.listed(end.Worker); ok && (got.Price.Prompt > l.Prompt || got.Price.Cached > l.Cached || got.Price.Completion > l.Completion) {
			return refuse(fmt.Errorf("it bills at %+v, above the price %+v its proxy listed", got.Price, l))
		}
	}
	want := &payments.Receipt{
		RequestID:   c.req.ID,
		RequestHash: payments.Hash(c.req.Body),
		Model:       c.req.Model,
		Tokens:      end.Usage.Billed(),
		Price:       got.Price, // checked against the offer where the payment is settled
		Worker:      worker,
		Proxy:       got.Proxy, // the client does not see which hop the proxy used
	}
	c.content.Sum(want.ResponseHash[:0])
	if err := payments.Check(got, want); err != nil {
		return refuse(err)
	}
	// The proxy names the cost, and the client pays it: its worker part
	// must be what the receipt bills. The fee is the proxy's to set (its
	// offer announces it); the client checks only that it adds up.
	if cost := end.Cost; cost != nil {
		b := bill
		if cost.Worker != b.Worker || cost.Fee < 0 || cost.Total != cost.Worker+cost.Fee {
			return refuse(fmt.Errorf("the proxy's cost (worker %d + fee %d = %d nanoTON) is not the receipt's worker amount %d plus a fee",
				cost.Worker, cost.Fee, cost.Total, b.Worker))
		}
		if c.maxFeePPM >= 0 {
			most, err := got.Bill(c.maxFeePPM)
			if err != nil {
				return refuse(err)
			}
			if cost.Fee > most.Fee {
				return refuse(fmt.Errorf("the proxy's fee of %d nanoTON is over the network's cap of %d ppm (%d nanoTON)",
					cost.Fee, c.maxFeePPM, most.Fee))
			}
		}
	}
	return nil
}

// stream writes the response as server-sent events, flushing whenever no
// further event is already waiting.
//
// When the app goes away mid-stream, stop stops the answer; the events up
// to its End are read on, without writing them, to check its receipt and
// pay for what was streamed.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, resp Response, ev inference.Event, out *encoder, includeUsage bool, minTier attest.Tier, chk *receiptCheck, stop func(), log func() *slog.Logger) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Trailer", TierHeader)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	// Events collect in buf and go to the ResponseWriter in one Write when
	// nothing more is waiting: one chunk on the wire, one system call.
	bp := ssePool.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= 1<<20 {
			*bp = buf[:0]
			ssePool.Put(bp)
		}
	}()
	send := func() error {
		_, err := w.Write(buf)
		buf = buf[:0]
		if err == nil && flusher != nil {
			flusher.Flush()
		}
		return err
	}
	// last writes the end of the answer without flushing, corked: it
	// leaves together with the end of the chunked body once the handler
	// returns, in one write.
	last := func() {
		corkLast(r)
		w.Write(buf)
		buf = buf[:0]
	}
	gone := false // the app went away: read on to the End, write nothing
	for {
		switch ev.Type {
		case inference.FrameChunk:
			chk.content.Write(ev.Text)
			if !gone {
				buf = out.appendChunk(buf, ev.Text, ev.Finish)
			}
		case inference.FrameEvent:
			chk.content.Write(ev.Text)
			var err error
			if gone {
				break
			}
			if buf, err = out.appendEvent(buf, ev.Text); err != nil {
				log().Warn("worker sent a malformed event", "err", err)
				buf = appendStreamError(buf, inference.Errorf(inference.CodeEngine, "the worker sent a malformed event: %v", err))
				last()
				return
			}
		case inference.FrameEnd:
			if ev.End.Tier != "" {
				h.Set(TierHeader, ev.End.Tier) // sent as the trailer
			}
			if e := untrusted(ev.End, minTier); e != nil {
				log().Warn("answer from a worker under the minimum tier", "tier", ev.End.Tier, "min", minTier, "worker", ev.End.Worker)
				buf = appendStreamError(buf, e)
				last()
				return
			}
			if e := chk.check(ev.End); e != nil {
				log().Warn("worker's receipt refused", "worker", ev.End.Worker, "err", e.Message)
				buf = appendStreamError(buf, e)
				last()
				return
			}
			s.paid(resp, ev.End)
			if gone {
				log().Debug("paid for the part of the answer streamed before the app went away",
					"completion_tokens", ev.End.Usage.Completion)
				return
			}
			if !out.finished {
				buf = out.appendChunk(buf, nil, []byte(orDefault(ev.End.FinishReason, "stop")))
			}
			if includeUsage {
				buf = out.appendUsage(buf, ev.End)
			}
			buf = append(buf, "data: [DONE]\n\n"...)
			last()
			return
		case inference.FrameError:
			log().Info("response failed mid-stream", "code", ev.Err.Code, "err", ev.Err.Message)
			buf = appendStreamError(buf, ev.Err)
			last()
			return
		}
		if !gone && r.Context().Err() != nil {
			gone = true // stop has been called
		}
		if !gone && (!resp.Buffered() || len(buf) >= 32<<10) {
			if err := send(); err != nil {
				log().Debug("app went away mid-stream", "err", err)
				gone = true
				stop()
			}
		}
		var err error
		ev, err = resp.Next()
		if err != nil {
			if gone || r.Context().Err() != nil {
				log().Debug("app went away mid-stream; the answer ended without its End", "err", err)
				return
			}
			log().Info("proxy failed mid-stream", "err", err)
			buf = appendStreamError(buf, inference.Errorf(inference.CodeEngine, "the proxy failed mid-stream: %v", err))
			last()
			return
		}
	}
}

// whole collects the response and answers it as one JSON object: a chat
// or completion answer built from its chunks and events (accumulator), or
// the engine's embeddings.
func (s *Server) whole(w http.ResponseWriter, resp Response, ev inference.Event, out *encoder, minTier attest.Tier, chk *receiptCheck, log func() *slog.Logger) {
	acc := &accumulator{kind: out.kind}
	var embeddings []byte // an embedding answer, as the engine wrote it
	malformed := func(err error) {
		log().Warn("worker sent a malformed answer", "err", err)
		writeError(w, http.StatusBadGateway, "server_error", "", inference.CodeEngine.String(), "The worker sent a malformed answer: "+err.Error())
	}
	for {
		switch ev.Type {
		case inference.FrameChunk:
			chk.content.Write(ev.Text)
			if out.kind == inference.KindEmbedding {
				if len(embeddings)+len(ev.Text) > inference.MaxEmbeddingAnswer {
					malformed(fmt.Errorf("embeddings over %d bytes", inference.MaxEmbeddingAnswer))
					return
				}
				embeddings = append(embeddings, ev.Text...)
			} else if err := acc.addText(ev.Text, ev.Finish); err != nil {
				malformed(err)
				return
			}
		case inference.FrameEvent:
			chk.content.Write(ev.Text)
			if err := acc.addEvent(ev.Text); err != nil {
				malformed(err)
				return
			}
		case inference.FrameEnd:
			if ev.End.Tier != "" {
				w.Header().Set(TierHeader, ev.End.Tier)
			}
			if e := untrusted(ev.End, minTier); e != nil {
				log().Warn("answer from a worker under the minimum tier", "tier", ev.End.Tier, "min", minTier, "worker", ev.End.Worker)
				// Not the 503 of a proxy that found no worker: this proxy
				// broke the request's terms.
				writeError(w, http.StatusBadGateway, "server_error", "", e.Code.String(), e.Message)
				return
			}
			if e := chk.check(ev.End); e != nil {
				log().Warn("worker's receipt refused", "worker", ev.End.Worker, "err", e.Message)
				writeError(w, http.StatusBadGateway, "server_error", "", e.Code.String(), e.Message)
				return
			}
			u, sv := toUsage(ev.End)
			cocoon, _ := json.Marshal(sv)
			var body []byte
			if out.kind == inference.KindEmbedding {
				var err error
				if body, err = embeddingAnswer(embeddings, out.model, u, cocoon); err != nil {
					malformed(err)
					return
				}
			} else {
				ub, _ := json.Marshal(u)
				body = acc.appendWhole(nil, out, orDefault(ev.End.FinishReason, "stop"), ub, cocoon)
			}
			s.paid(resp, ev.End)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.Write(append(body, '\n'))
			return
		case inference.FrameError:
			log().Info("response failed", "code", ev.Err.Code, "err", ev.Err.Message)
			writeInferenceError(w, ev.Err)
			return
		}
		var err error
		ev, err = resp.Next()
		if err != nil {
			log().Info("proxy failed mid-response", "err", err)
			writeError(w, http.StatusBadGateway, "server_error", "", "upstream_error", "The proxy failed mid-response: "+err.Error())
			return
		}
	}
}

// embeddingAnswer is the engine's embedding answer as the app gets it:
// its fields as the engine wrote them, but the model the app asked for,
// the usage as billed (OpenAI's prompt_tokens and total_tokens), and
// cocoon.
func embeddingAnswer(raw []byte, model string, u usage, cocoon []byte) ([]byte, error) {
	fields, err := splitObject(raw)
	if err != nil {
		return nil, fmt.Errorf("embeddings: %w", err)
	}
	ub, _ := json.Marshal(struct {
		PromptTokens int64 `json:"prompt_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	}{u.PromptTokens, u.PromptTokens})
	mb, _ := json.Marshal(model)
	out := make([]byte, 0, len(raw)+256)
	out = append(out, '{')
	put := func(key string, val []byte) {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = appendJSONString(out, key)
		out = append(out, ':')
		out = append(out, val...)
	}
	var hasModel, hasUsage bool
	for _, f := range fields {
		switch f.key {
		case "model":
			hasModel = true
			put(f.key, mb)
		case "usage":
			hasUsage = true
			put(f.key, ub)
		case "cocoon":
		default:
			put(f.key, f.val)
		}
	}
	if !hasModel {
		put("model", mb)
	}
	if !hasUsage {
		put("usage", ub)
	}
	put("cocoon", cocoon)
	return append(out, '}'), nil
}

// paid hands an answer the app is getting to the Payer.
func (s *Server) paid(resp Response, end *inference.End) {
	if s.payer == nil {
		return
	}
	if pr, ok := find[ProxyResponse](resp); ok {
		s.payer.Pay(pr.Proxy(), end)
	}
}

// ssePool holds the buffers streamed responses are built in; a 50-chunk
// answer is about 14 KiB of events.
var ssePool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func newID(kind inference.Kind) string {
	var b [12]byte
	rand.Read(b[:])
	if kind == inference.KindChat {
		return "chatcmpl-" + hex.EncodeToString(b[:])
	}
	return "cmpl-" + hex.EncodeToString(b[:])
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed string) {
	w.Header().Set("Allow", allowed)
	writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "method_not_allowed",
		fmt.Sprintf("%s is not allowed on %s; use %s.", r.Method, r.URL.Path, allowed))
}

func writeTimeout(w http.ResponseWriter, d time.Duration) {
	writeError(w, http.StatusGatewayTimeout, "server_error", "", "upstream_timeout",
		fmt.Sprintf("No answer from the network within %s.", d))
}

func writeInferenceError(w http.ResponseWriter, e *inference.Error) {
	status := e.Code.HTTPStatus()
	typ := "server_error"
	switch {
	case status == http.StatusBadRequest || status == http.StatusNotFound:
		typ = "invalid_request_error"
	case status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	}
	writeError(w, status, typ, e.Param, e.Code.String(), e.Message)
}

type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func newErrorBody(typ, param, code, msg string) errorBody {
	var b errorBody
	b.Error.Message, b.Error.Type = msg, typ
	if param != "" {
		b.Error.Param = &param
	}
	if code != "" {
		b.Error.Code = &code
	}
	return b
}

func writeError(w http.ResponseWriter, status int, typ, param, code, msg string) {
	writeJSON(w, status, newErrorBody(typ, param, code, msg))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"encoding the response failed","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func appendStreamError(dst []byte, e *inference.Error) []byte {
	typ := "server_error"
	if e.Code == inference.CodeBadRequest {
		typ = "invalid_request_error"
	}
	b, _ := json.Marshal(newErrorBody(typ, e.Param, e.Code.String(), e.Message))
	dst = append(dst, "data: "...)
	dst = append(dst, b...)
	return append(dst, "\n\n"...)
}
