package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/inference/router"
	"github.com/cocoon-mesh/cocoon/payments"
	"github.com/cocoon-mesh/cocoon/payments/channels"
	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// LedgerFile is the payment ledger's file in the data dir.
const LedgerFile = "ledger.db"

// payState is a node's payments: nil fields when payments are off.
type payState struct {
	m      *channels.Manager
	led    *ledger.Ledger
	wallet *ton.Wallet

	mu      sync.Mutex        // guards openErr
	openErr map[peer.ID]error // the last failed open per payee, for the 402 message
}

// WalletNetworkID is the global ID a network's wallets sign with; the
// local sandbox chain uses mainnet's.
func WalletNetworkID(network string) int32 {
	if network == "testnet" {
		return -3
	}
	return ton.MainnetID
}

// startPayments opens the ledger and the wallet and starts the channel
// manager, when payments are on. It runs after discovery, which sets the
// chain, and before the role, whose hooks use it.
func (n *Node) startPayments() error {
	pc := n.cfg.Payments
	if !pc.Enabled {
		return nil
	}
	if n.chain == nil {
		return errors.New("payments.enabled: payments need the chain; set discovery.root (and discovery.global_config)")
	}
	key, err := ton.LoadKey(n.cfg.DataDir)
	if err != nil {
		return err
	}
	w, err := ton.NewWallet(key, n.chain, ton.WalletConfig{NetworkID: WalletNetworkID(n.cfg.Network)})
	if err != nil {
		return err
	}
	led, err := ledger.Open(filepath.Join(n.cfg.DataDir, LedgerFile), ledger.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("%w (is another node running on this data dir?)", err)
	}
	cc := channels.Config{Network: n.cfg.Network, Deposit: pc.Deposit, Reserve: pc.Reserve, MaxCredit: pc.MaxCredit,
		Forward: n.cfg.Role == RoleProxy, FeePPM: n.cfg.Proxy.FeePPM, Quarantine: pc.Quarantine.D(), Batch: pc.Batch.D(),
		OpenTimeout: time.Minute, Watch: min(pc.Quarantine.D()/4, time.Minute)}
	m := channels.New(cc, n.h, n.chain, w, key, led, n.log)
	if err := m.Start(n.sv); err != nil {
		led.Close()
		return err
	}
	n.pay = &payState{m: m, led: led, wallet: w, openErr: make(map[peer.ID]error)}
	n.log.Info("payments on", "wallet", w.Address(), "deposit_nanoton", pc.Deposit)
	return nil
}

// closePayments stops the manager and closes the ledger.
func (n *Node) closePayments() {
	if n.pay == nil {
		return
	}
	n.pay.m.Close()
	if err := n.pay.led.Close(); err != nil {
		n.log.Warn("closing the ledger", "err", err)
	}
}

// Wallet returns the node's TON wallet; nil without payments.
func (n *Node) Wallet() *ton.Wallet {
	if n.pay == nil {
		return nil
	}
	return n.pay.wallet
}

// Channels returns the node's payment channels' manager; nil without
// payments.
func (n *Node) Channels() *channels.Manager {
	if n.pay == nil {
		return nil
	}
	return n.pay.m
}

// paymentRequired makes a payee's refusal the error a requester gets.
func paymentRequired(err error) *inference.Error {
	return inference.Errorf(inference.CodePaymentRequired, "payment required: %v", err)
}

// workerPayments is a worker's side: a proxy is served while it is paid
// up, and each answer's worker amount is owed by the proxy.
func (n *Node) workerPayments() (admit func(peer.ID) *inference.Error, served func(peer.ID, *payments.Receipt)) {
	if n.pay == nil {
		return nil, nil
	}
	m := n.pay.m
	admit = func(p peer.ID) *inference.Error {
		if err := m.Admit(p); err != nil {
			return paymentRequired(err)
		}
		return nil
	}
	served = func(p peer.ID, r *payments.Receipt) {
		b, err := payments.Cost(r.Tokens, r.Price, 0)
		if err == nil && b.Worker > 0 {
			m.Served(p, uint64(b.Worker))
		}
	}
	return admit, served
}

// proxyPayments is a proxy's side: clients are served while paid up,
// only workers the proxy can pay are routed to, and each answer's total is
// owed by its client.
func (n *Node) proxyPayments() *router.Payments {
	if n.pay == nil {
		return nil
	}
	m := n.pay.m
	return &router.Payments{
		Admit: func(p peer.ID) *inference.Error {
			if err := m.Admit(p); err != nil {
				return paymentRequired(err)
			}
			return nil
		},
		Payable: func(w peer.ID) bool { return m.Payable(w) == nil },
		Served: func(p peer.ID, c inference.Cost, receipt []byte) {
			if c.Total > 0 {
				m.Served(p, uint64(c.Total))
			}
			if receipt != nil {
				m.Relayed(receipt)
			}
		},
	}
}

// clientAdmit answers a request with 402 when no proxy the client keeps
// has a funded channel, saying why.
func (n *Node) clientAdmit() *inference.Error {
	if len(n.attestedProxies()) > 0 || len(n.payees()) == 0 {
		return nil // a proxy to pay, or none at all (503 no_proxy)
	}
	var why error
	n.pay.mu.Lock()
	for _, err := range n.pay.openErr {
		why = err
		if errors.Is(err, ton.ErrInsufficientFunds) {
			break
		}
	}
	n.pay.mu.Unlock()
	if why == nil {
		return inference.Errorf(inference.CodePaymentRequired,
			"no payment channel to a proxy is open yet (the node opens one as soon as a proxy is attested; wallet %s)", n.pay.wallet.Address())
	}
	return inference.Errorf(inference.CodePaymentRequired, "no funded payment channel to a proxy: %v", why)
}

// clientPaid pays for an answer the app got: its total, with the worker's
// receipt, on the channel to the proxy it came through.
func (n *Node) clientPaid(proxy peer.ID, end *inference.End) {
	if end.Cost == nil || end.Receipt == nil || end.Cost.Total <= 0 {
		return
	}
	if err := n.pay.m.Pay(proxy, end.Receipt, uint64(end.Cost.Total)); err != nil {
		n.log.Warn("paying for an answer", "peer", proxy, "nanoton", end.Cost.Total, "err", err)
	}
}

// payees are the peers this node pays: a client's attested proxies, a
// proxy's workers that are up.
func (n *Node) payees() []peer.ID {
	switch n.cfg.Role {
	case RoleClient:
		var out []peer.ID
		for _, p := range n.keeper.Up() {
			if _, ok := n.hs.Verified(p); ok {
				out = append(out, p)
			}
		}
		return out
	case RoleProxy:
		var out []peer.ID
		for _, w := range n.router.Workers() {
			if w.Up {
				out = append(out, w.Peer)
			}
		}
		return out
	}
	return nil
}

// keepChannels opens a channel to each payee that has none with at least
// the reserve left, checking every second, and backs off from a payee
// whose open failed (an empty wallet, an unreachable chain).
func (n *Node) keepChannels(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	next := make(map[peer.ID]time.Time) // no open before this
	wait := make(map[peer.ID]time.Duration)
	for {
		for _, p := range n.payees() {
			if n.pay.m.Payable(p) == nil || time.Now().Before(next[p]) {
				continue
			}
			err := n.pay.m.Open(ctx, p)
			if ctx.Err() != nil {
				return
			}
			n.pay.mu.Lock()
			if err != nil {
				n.pay.openErr[p] = err
			} else {
				delete(n.pay.openErr, p)
			}
			n.pay.mu.Unlock()
			if err != nil {
				wait[p] = min(max(2*wait[p], 5*time.Second), time.Minute)
				next[p] = time.Now().Add(wait[p])
				n.log.Warn("opening a payment channel failed", "peer", p, "retry_in", wait[p], "err", err)
				continue
			}
			delete(wait, p)
			delete(next, p)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// paymentsStatus is the node's channels, for Status.
func (n *Node) paymentsStatus() *PaymentsStatus {
	if n.pay == nil {
		return nil
	}
	ps := &PaymentsStatus{}
	for _, c := range n.pay.m.List() {
		role := "payee"
		if c.Payer {
			role = "payer"
		}
		ps.Channels = append(ps.Channels, ChannelStatus{Peer: c.Peer.String(), Address: c.Address, Role: role,
			Deposit: int64(c.Deposit), Sent: int64(c.Sent), Received: int64(c.Received), Unsigned: int64(c.Unsigned),
			Seqno: c.Seqno, State: c.State})
		ps.Spent += int64(c.Sent)
		ps.Earned += int64(c.Received)
	}
	return ps
}

// Role is the node's role.
func (n *Node) Role() Role { return n.cfg.Role }
