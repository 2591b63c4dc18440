package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/internal/metrics"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// WithReload gives the node where its configuration comes from, read
// again on Reload (SIGHUP, or POST /reload on the admin API): the same
// defaults, file, flags and environment as at start.
func WithReload(load func() (config.Config, error)) Option {
	return func(o *options) { o.reload = load }
}

// Reload reads the configuration again and applies what a node can change
// while it runs: a worker's prices (worker.price, worker.prices), capacity
// (worker.max_concurrent) and models (the engine's settings: worker.sim,
// worker.openai). It announces the new offer at once. Other changed
// settings are reported as needing a restart; nothing of them is applied.
func (n *Node) Reload(ctx context.Context) (admin.Reloaded, error) {
	var res admin.Reloaded
	if n.opts.reload == nil {
		return res, errors.New("this node was started without a configuration to read again")
	}
	next, err := n.opts.reload()
	if err != nil {
		return res, fmt.Errorf("reading the configuration: %w", err)
	}
	if err := next.Validate(); err != nil {
		return res, err
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	cur := n.live
	res.NeedRestart = changed(cur, next, "worker")
	if w, ok := n.role.(*workerRole); ok {
		res.Applied, err = w.reload(cur.Worker, next.Worker)
		if err != nil {
			return res, err
		}
		for _, name := range changed(cur.Worker, next.Worker, "backend", "price", "prices", "max_concurrent", "sim", "openai") {
			res.NeedRestart = append(res.NeedRestart, "worker."+name)
		}
	} else if !reflect.DeepEqual(cur.Worker, next.Worker) {
		res.NeedRestart = append(res.NeedRestart, "worker")
	}
	n.live.Worker = next.Worker
	n.log.Info("configuration reloaded", "applied", res.Applied, "need_restart", res.NeedRestart)
	return res, nil
}

// reload applies a worker's live settings from next and says which
// changed.
func (w *workerRole) reload(cur, next config.Worker) ([]string, error) {
	var applied []string
	if !reflect.DeepEqual(cur.Sim, next.Sim) || !reflect.DeepEqual(cur.OpenAI, next.OpenAI) || cur.Backend != next.Backend {
		if w.n.opts.backendFixed {
			return nil, errors.New("worker models: this node's engine was given in code, not by its configuration")
		}
		b, err := newBackend(next, w.n.log)
		if err != nil {
			return nil, err
		}
		w.server.Update(metrics.ObserveBackend(b, w.n.requests), 0)
		applied = append(applied, "worker.models")
	}
	if next.MaxConcurrent != cur.MaxConcurrent {
		w.server.Update(nil, next.MaxConcurrent)
		applied = append(applied, "worker.max_concurrent")
	}
	if next.Price != cur.Price || !reflect.DeepEqual(next.Prices, cur.Prices) {
		w.prices.set(next)
		applied = append(applied, "worker.prices")
	}
	if len(applied) > 0 {
		w.announceSoon()
	}
	return applied, nil
}

// changed names the fields of the structs a and b (of one type) that
// differ, by their TOML names, leaving out those named in skip.
func changed(a, b any, skip ...string) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		f := va.Type().Field(i)
		name := f.Tag.Get("toml")
		if name == "" || name == "-" {
			continue
		}
		if slices.Contains(skip, name) {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	return out
}

// Drain takes a worker out of service without losing an answer: it takes
// no new request (proxies route elsewhere), announces itself full, waits
// for the requests in flight to end, then asks each payer to close its
// channel cooperatively, which pays the worker out on chain.
func (n *Node) Drain(ctx context.Context, progress func(string)) error {
	w, ok := n.role.(*workerRole)
	if !ok {
		return fmt.Errorf("only a worker drains; this node is a %s", n.cfg.Role)
	}
	w.server.Drain()
	w.announceSoon()
	progress("taking no new requests; offer announced full")
	err := awaitDrain(ctx, 0, progress, func() string {
		if a := w.server.Active(); a > 0 {
			return fmt.Sprintf("%d requests in flight", a)
		}
		return ""
	})
	if err != nil {
		return err
	}
	progress("no request in flight")
	if n.pay == nil {
		return nil
	}
	// payeeChannels sums what is served and not yet paid on the open
	// channels this node is paid on, and counts them.
	payeeChannels := func() (unpaid uint64, open int) {
		for _, c := range n.pay.m.List() {
			if !c.Payer && c.State == "open" {
				unpaid += c.Unsigned
				open++
			}
		}
		return unpaid, open
	}
	// The payments for the last answers arrive shortly after them (the
	// client's batch, then the proxy's): wait for them before the close.
	err = awaitDrain(ctx, time.Minute, progress, func() string {
		if u, _ := payeeChannels(); u > 0 {
			return fmt.Sprintf("%d nanoTON served and not yet paid", u)
		}
		return ""
	})
	if errors.Is(err, errDrainWait) {
		progress("payments still missing after a minute; settling what was paid")
	} else if err != nil {
		return err
	}
	asked, failed := n.pay.m.SettleAll(ctx)
	for p, err := range failed {
		progress(fmt.Sprintf("could not ask %s to settle: %v; `cocoon channel close --peer %s` closes it uncooperatively", p, err, p))
	}
	progress(fmt.Sprintf("asked %d payers to close their channels cooperatively", asked))
	err = awaitDrain(ctx, 0, progress, func() string {
		if _, open := payeeChannels(); open > len(failed) {
			return fmt.Sprintf("%d channels still open", open)
		}
		return ""
	})
	if err != nil {
		return err
	}
	_, earned := n.pay.m.Totals()
	progress(fmt.Sprintf("channels closed: earned %d nanoTON in all", earned))
	return nil
}

// errDrainWait: awaitDrain's limit passed.
var errDrainWait = errors.New("still waiting")

// awaitDrain polls pending every 100 ms until it says nothing is left
// (""), reporting what it says every 5 s; it gives up at ctx's end, or
// with errDrainWait after limit when limit is not 0.
func awaitDrain(ctx context.Context, limit time.Duration, progress func(string), pending func() string) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	start, last := time.Now(), time.Now()
	for {
		left := pending()
		switch {
		case left == "":
			return nil
		case limit > 0 && time.Since(start) >= limit:
			return errDrainWait
		case time.Since(last) >= 5*time.Second:
			progress(left)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
