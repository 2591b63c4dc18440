package inference

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is an error code carried in Error frames. Codes are stable wire
// values; each maps to one HTTP status at the client's edge.
type Code uint16

// The error codes. Retryable codes may succeed on another worker when they
// happen before the first chunk.
const (
	CodeBadRequest   Code = 1 // the request is malformed; never retried
	CodeUnknownModel Code = 2 // no worker in the network serves the model
	CodeNoWorker     Code = 3 // the model is known but no worker can take it now
	CodeOverloaded   Code = 4 // this worker is at capacity (retryable)
	CodeEngine       Code = 5 // the engine failed or is unreachable (retryable before the first chunk)
	CodeTimeout      Code = 6 // an upstream hop did not answer in time
	CodeUnattested   Code = 7 // the peer has not passed attestation
	CodeInternal     Code = 8 // a bug or unexpected state
	CodeCancelled    Code = 9 // the requester went away
	// CodeTooExpensive: workers serve the model, but none at or under the
	// request's max price. Never retried; a higher max price can help.
	CodeTooExpensive Code = 10
	// CodeUntrusted: workers serve the model, but none with a verified
	// trust tier at or above the request's minimum. Never retried; only
	// a lower minimum, or a more trusted worker joining, can help.
	CodeUntrusted Code = 11
	// CodeBadReceipt: the worker's signed receipt does not match the
	// answer that arrived (forged, or for other content or tokens). The
	// client withholds the answer. Never retried.
	CodeBadReceipt Code = 12
	// CodePaymentRequired: the requester has no open payment channel to
	// this hop, or owes more than its credit allows. Never retried; opening
	// or funding a channel, or paying, helps.
	CodePaymentRequired Code = 13
	// CodeNotCandidate: a sealed request reached a worker it is not
	// sealed to (the client chose other candidates, or sealed to a key
	// the worker has rotated out). Retryable: another candidate may open
	// it.
	CodeNotCandidate Code = 14
	// CodeSealFailed: a sealed request or answer failed its checks:
	// changed on the way, replayed, held back past its lifetime, or
	// sealed for another worker or request. Never retried; the client
	// seals the next request afresh.
	CodeSealFailed Code = 15
	// CodeSessionUnknown: a sealed request named its sealing session by
	// reference, and the worker no longer holds it (it made room for
	// others). Not retried on another worker: it goes back to the client,
	// which sends the request again with the session's key (and so learns
	// that the worker forgot it). Not the worker's failure.
	CodeSessionUnknown Code = 16
)

var codeNames = map[Code]string{
	CodeBadRequest:      "bad_request",
	CodeUnknownModel:    "model_not_found",
	CodeNoWorker:        "no_worker_available",
	CodeOverloaded:      "worker_overloaded",
	CodeEngine:          "engine_error",
	CodeTimeout:         "upstream_timeout",
	CodeUnattested:      "peer_unattested",
	CodeInternal:        "internal_error",
	CodeCancelled:       "cancelled",
	CodeTooExpensive:    "price_too_high",
	CodeUntrusted:       "trust_too_low",
	CodeBadReceipt:      "receipt_invalid",
	CodePaymentRequired: "payment_required",
	CodeNotCandidate:    "not_a_candidate",
	CodeSealFailed:      "seal_failed",
	CodeSessionUnknown:  "seal_session_unknown",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("code(%d)", uint16(c))
}

// HTTPStatus is the status the client node answers with for c.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnknownModel:
		return http.StatusNotFound
	case CodeNoWorker, CodeOverloaded, CodeUnattested, CodeUntrusted, CodeNotCandidate, CodeSessionUnknown:
		return http.StatusServiceUnavailable
	case CodeTooExpensive:
		// Not 402, which says the client's funds ran out: the network
		// has workers, only none at the client's price.
		return http.StatusServiceUnavailable
	case CodeEngine, CodeBadReceipt, CodeSealFailed:
		return http.StatusBadGateway
	case CodeTimeout:
		return http.StatusGatewayTimeout
	case CodePaymentRequired:
		return http.StatusPaymentRequired
	case CodeCancelled:
		return 499 // client closed request; nobody is left to read it
	}
	return http.StatusInternalServerError
}

// Retryable reports whether another worker may succeed where this failed,
// provided nothing was streamed yet.
func (c Code) Retryable() bool {
	return c == CodeOverloaded || c == CodeEngine || c == CodeUnattested || c == CodeTimeout || c == CodeNotCandidate
}

// Error is an error with a wire code. Message is safe to show to the app:
// it never contains prompts, completions or keys.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"` // the request field at fault, for CodeBadRequest
}

func (e *Error) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%s: %s (param %s)", e.Code, e.Message, e.Param)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf makes an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error, wrapping any other error as def.
func AsError(err error, def Code) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: def, Message: err.Error()}
}
