package channels

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/xssnick/tonutils-go/address"
)

// ProtocolName and ProtocolVersion make the payment protocol's ID,
// /cocoon/<network>/pay/1.
const (
	ProtocolName    = "pay"
	ProtocolVersion = "1"
)

// Wire limits. A message is a 4-byte big-endian length and that many bytes
// of JSON.
const (
	MaxMessage = 512 << 10 // bytes of one message
	MaxEntries = 1024      // receipts in one payment
)

// Message types a payer sends; the payee answers each with one reply.
const (
	typeHello = "hello" // asks the payee's channel key and payout address
	typeOpen  = "open"  // announces a channel the payer deployed
	typePay   = "pay"   // moves the channel's signed cumulative state forward
	typeClose = "close" // asks the payee's signature on the cooperative close
	typeSync  = "sync"  // asks what the payee holds, after the payer restarts
	// typeSettle goes the other way, payee to payer: close this channel
	// cooperatively now (the payee is draining).
	typeSettle = "settle"
)

// request is what a payer sends.
type request struct {
	Type string `json:"type"`
	// Channel is the channel contract's address (open, pay, close).
	Channel string `json:"channel,omitempty"`

	// Open: the parameters, besides the payee's own key and address, that
	// fix the channel's address.
	ID         []byte `json:"id,omitempty"` // 16 bytes
	KeyA       []byte `json:"key_a,omitempty"`
	DestA      string `json:"dest_a,omitempty"`
	Deposit    uint64 `json:"deposit,omitempty"`
	Quarantine uint32 `json:"quarantine_s,omitempty"`

	// Pay: the signed state, and what it pays for since Base, the amount
	// the payer last heard the payee had stored.
	Base    uint64  `json:"base,omitempty"`
	Entries []Entry `json:"entries,omitempty"`
	State   []byte  `json:"state,omitempty"` // ton.SignedState.Encode
}

// Entry is one answer a payment pays for: the worker's signed receipt and
// what the payer pays for it (the worker's amount plus the proxy's fee).
type Entry struct {
	Receipt []byte `json:"receipt,omitempty"`
	Amount  uint64 `json:"amount"`
}

// reply is what the payee answers.
type reply struct {
	// Code is empty on success, else one of the codes below.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`

	Key  []byte `json:"key,omitempty"`  // hello: the payee's channel key
	Dest string `json:"dest,omitempty"` // hello: the payee's payout address
	// Credit (hello): what the payee serves beyond the newest state, its
	// MaxCredit. A proxy pays a worker ahead of its clients once a quarter
	// of it is due.
	Credit uint64 `json:"credit,omitempty"`

	// Received and Seqno are the newest state the payee has stored (open,
	// pay); Signature its signature on the close (close).
	Received  uint64 `json:"received"`
	Seqno     uint64 `json:"seqno"`
	Signature []byte `json:"signature,omitempty"`
	// Own is the payee's own semi-channel, signed (open): seqno 0, nothing
	// sent. The payer needs it to start an uncooperative close should the
	// payee vanish.
	Own []byte `json:"own,omitempty"`
	// Settle (pay): the payee asks the payer to move to a new channel and
	// close this one cooperatively, which pays the payee out on chain.
	Settle bool `json:"settle,omitempty"`
}

// Reply codes.
const (
	codeRefused = "refused"         // the message is wrong and resending it cannot help
	codeUnknown = "unknown_channel" // the payee has no such channel: send open first
	codeBusy    = "busy"            // try again later (the payee's disk, the chain)
)

var errMessage = errors.New("malformed payment message")

func writeMessage(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("payment message of %d bytes, limit %d", len(b), MaxMessage)
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

// readFrame reads one length-prefixed message, refusing more than
// MaxMessage bytes before reading them.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errMessage, n, MaxMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errMessage, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", errMessage)
	}
	return nil
}

// decodeRequest parses and checks the form of a payer's message.
func decodeRequest(b []byte) (*request, error) {
	var q request
	if err := strictJSON(b, &q); err != nil {
		return nil, err
	}
	bad := func(why string) (*request, error) { return nil, fmt.Errorf("%w: %s: %s", errMessage, q.Type, why) }
	switch q.Type {
	case typeHello:
	case typeOpen:
		if len(q.ID) != 16 {
			return bad("channel ID must be 16 bytes")
		}
		if len(q.KeyA) != 32 {
			return bad("key_a must be an Ed25519 public key")
		}
		if _, err := address.ParseAddr(q.DestA); err != nil {
			return bad("dest_a is not an address")
		}
		if q.Deposit == 0 {
			return bad("no deposit")
		}
		if q.Quarantine == 0 {
			return bad("no quarantine")
		}
	case typePay:
		if len(q.State) == 0 {
			return bad("no state")
		}
		if len(q.Entries) > MaxEntries {
			return bad(fmt.Sprintf("%d entries, limit %d", len(q.Entries), MaxEntries))
		}
	case typeClose, typeSync, typeSettle:
	default:
		return nil, fmt.Errorf("%w: unknown type %q", errMessage, q.Type)
	}
	if q.Type != typeHello {
		if _, err := address.ParseAddr(q.Channel); err != nil {
			return bad("channel is not an address")
		}
	}
	return &q, nil
}

// decodeReply parses a payee's answer.
func decodeReply(b []byte) (*reply, error) {
	var r reply
	if err := strictJSON(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// roundTrip sends q on s and reads the reply; a refusal is a *ReplyError.
func roundTrip(s io.ReadWriter, q *request) (*reply, error) {
	if err := writeMessage(s, q); err != nil {
		return nil, err
	}
	b, err := readFrame(s)
	if err != nil {
		return nil, err
	}
	r, err := decodeReply(b)
	if err != nil {
		return nil, err
	}
	if r.Code != "" {
		return nil, &ReplyError{Code: r.Code, Message: r.Message}
	}
	return r, nil
}

// ReplyError is a payee's refusal, as the payer sees it.
type ReplyError struct {
	Code    string
	Message string
}

func (e *ReplyError) Error() string { return fmt.Sprintf("payee: %s: %s", e.Code, e.Message) }
