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
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for w.server.Active() > 0 {
		if time.Since(last) >= 5*time.Second {
			progress(fmt.Sprintf("%d requests in flight", w.server.Active()))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	progress("no request in flight")
	if n.pay == nil {
		return nil
	}
	// The payments for the last answers arrive shortly after them (the
	// client's batch, then the proxy's): wait for them before the close.
	unpaid := func() (sum uint64) {
		for _, c := range n.pay.m.List() {
			if !c.Payer && c.State == "open" {
				sum += c.Unsigned
			}
		}
		return sum
	}
	paidBy := time.Now().Add(time.Minute)
	for u := unpaid(); u > 0; u = unpaid() {
		if time.Now().After(paidBy) {
			progress(fmt.Sprintf("%d nanoTON served are still unpaid after a minute; settling what was paid", u))
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	asked, failed := n.pay.m.SettleAll(ctx)
	for p, err := range failed {
		progress(fmt.Sprintf("could not ask %s to settle: %v; `cocoon channel close --peer %s` closes it uncooperatively", p, err, p))
	}
	progress(fmt.Sprintf("asked %d payers to close their channels cooperatively", asked))
	for {
		open := 0
		for _, c := range n.pay.m.List() {
			if !c.Payer && c.State == "open" {
				open++
			}
		}
		if open <= len(failed) {
			break
		}
		if time.Since(last) >= 5*time.Second {
			progress(fmt.Sprintf("%d channels still open", open))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	progress(fmt.Sprintf("channels closed: earned %d nanoTON in all", func() uint64 { _, e := n.pay.m.Totals(); return e }()))
	return nil
}
