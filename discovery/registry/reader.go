package registry

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/xssnick/tonutils-go/address"
)

// ReaderConfig says which contract to read and how often.
type ReaderConfig struct {
	Address *address.Address
	// Interval between refreshes; zero means DefaultInterval.
	Interval time.Duration
	// Network, when set, is the network the node belongs to: a contract that
	// names another network is refused.
	Network string
}

// DefaultInterval is how often a Reader refreshes the registry.
const DefaultInterval = 5 * time.Minute

// Reader keeps a fresh copy of the registry. A refresh that fails keeps the
// last good copy and is logged; the next one tries again.
type Reader struct {
	cfg ReaderConfig
	g   Getter
	log *slog.Logger

	mu       sync.Mutex // guards current and onChange
	current  *Registry
	onChange []func(*Registry)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewReader returns a Reader; Start reads the registry the first time.
func NewReader(cfg ReaderConfig, g Getter, log *slog.Logger) *Reader {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	return &Reader{cfg: cfg, g: g, log: log.With("component", "registry")}
}

// OnChange registers f to be called, from the Reader's goroutine, with every
// registry whose sequence number differs from the last one read.
func (r *Reader) OnChange(f func(*Registry)) {
	r.mu.Lock()
	r.onChange = append(r.onChange, f)
	r.mu.Unlock()
}

// Start reads the registry once, failing if it cannot, then refreshes it in
// the background until Close.
func (r *Reader) Start(ctx context.Context) error {
	reg, err := r.read(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.current = reg
	r.mu.Unlock()
	r.log.Info("registry read", "address", r.cfg.Address.String(), "registry", reg.String())

	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.wg.Go(func() { r.loop(ctx) })
	return nil
}

func (r *Reader) read(ctx context.Context) (*Registry, error) {
	reg, err := Read(ctx, r.g, r.cfg.Address)
	if err != nil {
		return nil, err
	}
	if r.cfg.Network != "" && reg.Network != r.cfg.Network {
		return nil, &NetworkError{Want: r.cfg.Network, Got: reg.Network}
	}
	return reg, nil
}

func (r *Reader) loop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("registry refresh failed; keeping the last one", "err", err)
		}
	}
}

// Refresh reads the registry now and, if it changed, calls the OnChange
// functions.
func (r *Reader) Refresh(ctx context.Context) error {
	reg, err := r.read(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	changed := r.current == nil || r.current.Seqno != reg.Seqno
	r.current = reg
	hooks := slices.Clone(r.onChange)
	r.mu.Unlock()
	if changed {
		r.log.Info("registry changed", "registry", reg.String())
		for _, f := range hooks {
			f(reg)
		}
	}
	return nil
}

// Current returns the last registry read, or nil before Start.
func (r *Reader) Current() *Registry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// MaxFeePPM is the largest fee a proxy may add, in parts per million of
// the worker's amount, as the root contract last read sets it; -1 before
// the first read.
func (r *Reader) MaxFeePPM() int64 {
	if reg := r.Current(); reg != nil {
		return int64(reg.Fees.ProxyFeePPM)
	}
	return -1
}

// MinDeposit is the smallest payment-channel deposit, in nanoTON, as the
// root contract last read sets it; 0 before the first read.
func (r *Reader) MinDeposit() uint64 {
	if reg := r.Current(); reg != nil && reg.Fees.MinDeposit != nil && reg.Fees.MinDeposit.IsUint64() {
		return reg.Fees.MinDeposit.Uint64()
	}
	return 0
}

// Close stops refreshing and waits for the background goroutine.
func (r *Reader) Close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
}

// NetworkError is a root contract that belongs to another network than the
// node's. Retrying cannot help: the node is configured with the wrong contract.
type NetworkError struct{ Want, Got string }

func (e *NetworkError) Error() string {
	return "root contract is for network " + e.Got + ", this node is on " + e.Want
}
