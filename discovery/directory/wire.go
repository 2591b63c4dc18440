package directory

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/payments"
)

// Version is the version of the directory format this package writes and
// reads.
const Version = 1

// Limits on a directory.
const (
	// MaxSize bounds an encoded directory: hundreds of TDX workers, or
	// about a hundred with the evidence of 8 GPUs each.
	MaxSize = 8 << 20
	// MaxWorkers bounds the entries of a directory.
	MaxWorkers = 512
	// MaxModels bounds the models of one entry, as an offer's.
	MaxModels = 64
	// MaxModelID bounds a model ID, in bytes.
	MaxModelID = 256
	// MaxPrice bounds each price, in nanoTON per million tokens: a million
	// TON, as an offer's.
	MaxPrice = 1_000_000_000_000_000
)

// Frame types of the directory protocol.
const (
	frameDirectory byte = 1
	frameRefused   byte = 2
)

// ErrMalformed: a directory that does not decode or breaks a limit. The
// proxy that served it is at fault; fetching again cannot help.
var ErrMalformed = errors.New("malformed directory")

// Directory is what a proxy tells its clients about its workers.
type Directory struct {
	Network string
	Workers []Entry
}

// Entry is one worker as the proxy presents it: nothing in it is trusted
// until the client verifies Evidence against Peer.
type Entry struct {
	Peer     peer.ID
	Evidence *attest.Evidence
	Models   []Model
	// Tier is the proxy's claim (0 when it makes none); clients ignore it.
	Tier attest.Tier

	digest [sha256.Size]byte // of the evidence as received; set by Decode
}

// Model is one model a worker serves, with the price of its offer.
type Model struct {
	ID string
	// Price is the worker's price for it, nil when the proxy holds no
	// live offer for it.
	Price *payments.Price
	// Endpoints are the kinds of request the worker serves it for, as the
	// worker announced them (inference.Model.Endpoints): empty means chat
	// and completion.
	Endpoints []string
}

// Caps on a model's endpoints: there are three kinds of request today,
// and room for more.
const (
	maxEndpoints     = 8
	maxEndpointBytes = 32
)

type wireDirectory struct {
	Version int         `json:"version"`
	Network string      `json:"network"`
	Workers []wireEntry `json:"workers"`
}

type wireEntry struct {
	Peer     string          `json:"peer"`
	Evidence json.RawMessage `json:"evidence"`
	Models   []wireModel     `json:"models"`
	Tier     string          `json:"tier,omitempty"`
}

type wireModel struct {
	ID        string          `json:"id"`
	Price     *payments.Price `json:"price,omitempty"`
	Endpoints []string        `json:"endpoints,omitempty"`
}

// encodeEntry encodes one entry, checking it against the limits Decode
// applies, so a server never serves what clients refuse.
func encodeEntry(e *Entry) ([]byte, error) {
	if e.Evidence == nil {
		return nil, errors.New("no evidence")
	}
	ev, err := json.Marshal(e.Evidence)
	if err != nil {
		return nil, fmt.Errorf("encoding evidence: %w", err)
	}
	w := wireEntry{Peer: e.Peer.String(), Evidence: ev, Models: make([]wireModel, 0, len(e.Models))}
	if e.Tier != 0 {
		w.Tier = e.Tier.String()
	}
	for _, m := range e.Models {
		w.Models = append(w.Models, wireModel(m))
	}
	if _, err := decodeEntry(&w); err != nil {
		return nil, err
	}
	return json.Marshal(w)
}

// Encode encodes d: entries beyond MaxWorkers, or beyond what fits in
// MaxSize, are left out, as is any entry over a limit; skipped says how
// many.
func Encode(d *Directory) (b []byte, skipped int, err error) {
	head, err := json.Marshal(struct {
		Version int    `json:"version"`
		Network string `json:"network"`
	}{Version, d.Network})
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	buf.Write(head[:len(head)-1]) // without the closing brace
	buf.WriteString(`,"workers":[`)
	n := 0
	for i := range d.Workers {
		e, err := encodeEntry(&d.Workers[i])
		if err != nil || n == MaxWorkers || buf.Len()+len(e)+3 > MaxSize {
			skipped++
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e)
		n++
	}
	buf.WriteString("]}")
	return buf.Bytes(), skipped, nil
}

// Decode decodes a directory of network, refusing more than MaxSize bytes
// before decoding and any entry over a limit after. It checks the format
// only: evidence is decoded, not verified. Errors wrap ErrMalformed.
func Decode(b []byte, network string) (*Directory, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(b), MaxSize)
	}
	var w wireDirectory
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if w.Version != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, w.Version, Version)
	}
	if w.Network != network {
		return nil, fmt.Errorf("%w: for network %q, not %q", ErrMalformed, w.Network, network)
	}
	if len(w.Workers) > MaxWorkers {
		return nil, fmt.Errorf("%w: %d workers, at most %d", ErrMalformed, len(w.Workers), MaxWorkers)
	}
	d := &Directory{Network: w.Network, Workers: make([]Entry, 0, len(w.Workers))}
	seen := make(map[peer.ID]bool, len(w.Workers))
	for i := range w.Workers {
		e, err := decodeEntry(&w.Workers[i])
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		if seen[e.Peer] {
			return nil, fmt.Errorf("%w: worker %s listed twice", ErrMalformed, e.Peer)
		}
		seen[e.Peer] = true
		d.Workers = append(d.Workers, e)
	}
	return d, nil
}

func decodeEntry(w *wireEntry) (Entry, error) {
	id, err := peer.Decode(w.Peer)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: peer ID: %w", ErrMalformed, err)
	}
	ev, err := attest.DecodeEvidence(w.Evidence)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: evidence: %w", ErrMalformed, err)
	}
	e := Entry{Peer: id, Evidence: ev, digest: sha256.Sum256(w.Evidence)}
	if w.Tier != "" {
		if e.Tier, err = attest.ParseTier(w.Tier); err != nil {
			return Entry{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	if len(w.Models) == 0 || len(w.Models) > MaxModels {
		return Entry{}, fmt.Errorf("%w: %d models, want 1 to %d", ErrMalformed, len(w.Models), MaxModels)
	}
	seen := make(map[string]bool, len(w.Models))
	e.Models = make([]Model, 0, len(w.Models))
	for _, m := range w.Models {
		if err := checkModel(m.ID, m.Price); err != nil {
			return Entry{}, err
		}
		if err := checkEndpoints(m.ID, m.Endpoints); err != nil {
			return Entry{}, err
		}
		if seen[m.ID] {
			return Entry{}, fmt.Errorf("%w: model %q listed twice", ErrMalformed, m.ID)
		}
		seen[m.ID] = true
		e.Models = append(e.Models, Model(m))
	}
	return e, nil
}

func checkEndpoints(id string, endpoints []string) error {
	if len(endpoints) > maxEndpoints {
		return fmt.Errorf("%w: model %q: %d endpoints, over %d", ErrMalformed, id, len(endpoints), maxEndpoints)
	}
	for _, e := range endpoints {
		if e == "" || len(e) > maxEndpointBytes || !utf8.ValidString(e) {
			return fmt.Errorf("%w: model %q: endpoint %.40q", ErrMalformed, id, e)
		}
	}
	return nil
}

func checkModel(id string, p *payments.Price) error {
	if id == "" || len(id) > MaxModelID || !utf8.ValidString(id) {
		return fmt.Errorf("%w: model ID %.64q: want 1 to %d bytes of UTF-8", ErrMalformed, id, MaxModelID)
	}
	if p == nil {
		return nil
	}
	for _, v := range []int64{p.Prompt, p.Cached, p.Completion} {
		if v < 0 || v > MaxPrice {
			return fmt.Errorf("%w: model %q: price %d out of 0 to %d", ErrMalformed, id, v, int64(MaxPrice))
		}
	}
	return nil
}
