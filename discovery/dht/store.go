package dht

import (
	"context"
	"slices"
	"strings"
	"sync"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-base32"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Scope says which model records a DHT server keeps: those of the models
// the network's root contract allows. Nil, or a list of none, keeps
// records of any key, within Limits.Keys.
type Scope interface {
	AllowedModels() []string
}

// Limits bound the provider records a DHT server keeps in memory. Zero
// fields take DefaultLimits.
type Limits struct {
	PerKey  int // providers of one key: the workers of one model
	PerPeer int // keys one peer provides: the models of one worker
	Keys    int // keys in all, when the root contract lists no models
	Addrs   int // addresses kept per provider
	// Unverified is how many peers the network does not vouch for
	// (Config.Trusted) the routing table holds at most.
	Unverified int
}

// DefaultLimits: 1,024 workers per model, 64 models per worker (the root
// contract lists at most 64), 1,024 keys and 16 addresses per provider.
// At their product of records, each about 200 bytes, the worst case is a
// bounded few hundred MiB, where before 200,000 records of one host were
// all kept; in practice PerPeer bounds one host to 64. At most 8 peers
// the network does not vouch for in the routing table (of its 20 per
// bucket).
var DefaultLimits = Limits{PerKey: 1024, PerPeer: 64, Keys: 1024, Addrs: 16, Unverified: 8}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.PerKey <= 0 {
		l.PerKey = d.PerKey
	}
	if l.PerPeer <= 0 {
		l.PerPeer = d.PerPeer
	}
	if l.Keys <= 0 {
		l.Keys = d.Keys
	}
	if l.Unverified <= 0 {
		l.Unverified = d.Unverified
	}
	if l.Addrs <= 0 {
		l.Addrs = d.Addrs
	}
	return l
}

// store is the provider manager's datastore: an in-memory map that keeps
// only the records of the network's keys (the proxy key, and the models
// Scope allows), within the caps per key, per peer and in all. A record
// over a cap or of another key is dropped without an error, which would
// fail the other writes of its batch.
type store struct {
	ds.Batching
	network string
	scope   Scope
	lim     Limits

	mu      sync.Mutex        // guards everything below
	held    map[string]holder // datastore key → its record's key and peer
	perKey  map[string]int
	perPeer map[peer.ID]int
	models  []string        // the list allowed was made from
	allowed map[string]bool // provider keys (multihash bytes) of the network
}

type holder struct {
	key  string
	peer peer.ID
}

func newStore(network string, scope Scope, lim Limits) *store {
	return &store{
		Batching: dssync.MutexWrap(ds.NewMapDatastore()),
		network:  network, scope: scope, lim: lim.withDefaults(),
		held: make(map[string]holder), perKey: make(map[string]int), perPeer: make(map[peer.ID]int),
	}
}

// Batch commits through Put and Delete, so the caps hold for batches.
func (s *store) Batch(context.Context) (ds.Batch, error) { return ds.NewBasicBatch(s), nil }

func (s *store) Put(ctx context.Context, k ds.Key, v []byte) error {
	key, p, ok := parseProvKey(k.String())
	if !ok {
		return s.Batching.Put(ctx, k, v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, renewed := s.held[k.String()]; !renewed {
		if !s.acceptLocked(key, p) {
			return nil
		}
		s.held[k.String()] = holder{key: key, peer: p}
		s.perKey[key]++
		s.perPeer[p]++
	}
	return s.Batching.Put(ctx, k, v)
}

func (s *store) Delete(ctx context.Context, k ds.Key) error {
	s.mu.Lock()
	if h, ok := s.held[k.String()]; ok {
		delete(s.held, k.String())
		if s.perKey[h.key]--; s.perKey[h.key] <= 0 {
			delete(s.perKey, h.key)
		}
		if s.perPeer[h.peer]--; s.perPeer[h.peer] <= 0 {
			delete(s.perPeer, h.peer)
		}
	}
	s.mu.Unlock()
	return s.Batching.Delete(ctx, k)
}

// acceptLocked reports whether a new record of key by p fits.
func (s *store) acceptLocked(key string, p peer.ID) bool {
	if !s.networkKeyLocked(key) {
		return false
	}
	if s.perPeer[p] >= s.lim.PerPeer || s.perKey[key] >= s.lim.PerKey {
		return false
	}
	return s.perKey[key] > 0 || len(s.perKey) < s.lim.Keys
}

// networkKeyLocked reports whether key is the proxy key or an allowed
// model's; with no list of models, any key is.
func (s *store) networkKeyLocked(key string) bool {
	var models []string
	if s.scope != nil {
		models = s.scope.AllowedModels()
	}
	if len(models) == 0 {
		return true
	}
	if s.allowed == nil || !slices.Equal(models, s.models) {
		s.models = slices.Clone(models)
		s.allowed = map[string]bool{string(ProxyKey(s.network).Hash()): true}
		for _, m := range models {
			s.allowed[string(ModelKey(s.network, m).Hash())] = true
		}
	}
	return s.allowed[key]
}

// records is how many provider records the store holds.
func (s *store) records() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// parseProvKey splits a provider record's datastore key,
// /providers/<base32 key>/<base32 peer ID>.
func parseProvKey(k string) (key string, p peer.ID, ok bool) {
	rest, found := strings.CutPrefix(k, records.ProvidersKeyPrefix)
	if !found {
		return "", "", false
	}
	kb, pb, found := strings.Cut(rest, "/")
	if !found {
		return "", "", false
	}
	keyBytes, err := base32.RawStdEncoding.DecodeString(kb)
	if err != nil {
		return "", "", false
	}
	pid, err := base32.RawStdEncoding.DecodeString(pb)
	if err != nil {
		return "", "", false
	}
	id, err := peer.IDFromBytes(pid)
	if err != nil {
		return "", "", false
	}
	return string(keyBytes), id, true
}

// addrFilter keeps at most max of addrs, and on a network other than
// local only public ones: a provider cannot make nodes dial loopback or
// the LAN. A relayed address counts as its relay's.
func addrFilter(local bool, max int) func([]ma.Multiaddr) []ma.Multiaddr {
	return func(addrs []ma.Multiaddr) []ma.Multiaddr {
		out := make([]ma.Multiaddr, 0, min(len(addrs), max))
		for _, a := range addrs {
			if len(out) == max {
				break
			}
			if local || manet.IsPublicAddr(a) {
				out = append(out, a)
			}
		}
		return out
	}
}
