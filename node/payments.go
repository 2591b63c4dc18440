package node

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cocoon-mesh/cocoon/admin"
	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/node/config"
	"github.com/cocoon-mesh/cocoon/payments/channels"
	"github.com/cocoon-mesh/cocoon/payments/ledger"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// LedgerFile is the payment ledger's file in the data dir.
const LedgerFile = "ledger.db"

// payState is a node's payments, when they are on.
type payState struct {
	m      *channels.Manager
	led    *ledger.Ledger
	wallet *ton.Wallet
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
// chain, and before the role, which uses it.
func (n *Node) startPayments() error {
	pc := n.cfg.Payments
	if !pc.Enabled {
		return nil
	}
	if n.disc.chain == nil {
		return errors.New("payments.enabled: payments need the chain; set discovery.root (and discovery.global_config)")
	}
	key, err := ton.LoadKey(n.cfg.DataDir)
	if err != nil {
		return err
	}
	w, err := ton.NewWallet(key, n.disc.chain, ton.WalletConfig{NetworkID: WalletNetworkID(n.cfg.Network)})
	if err != nil {
		return err
	}
	led, err := ledger.Open(filepath.Join(n.cfg.DataDir, LedgerFile), ledger.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("%w (is another node running on this data dir?)", err)
	}
	cc := channels.Config{Network: n.cfg.Network, Deposit: pc.Deposit, Reserve: pc.Reserve, Renew: pc.RenewBelow, MaxCredit: pc.MaxCredit,
		SettleAbove: pc.SettleAbove, SettleAfter: pc.SettleAfter.D(),
		Forward: n.cfg.Role == config.RoleProxy, FeePPM: n.cfg.Proxy.FeePPM, Quarantine: pc.Quarantine.D(), Batch: pc.Batch.D(),
		OpenTimeout: time.Minute, Watch: min(pc.Quarantine.D()/4, time.Minute)}
	if n.disc.registry != nil {
		cc.Rules = n.disc.registry
	}
	if n.opts.payLate > 0 {
		cc.Batch = n.opts.payLate
	}
	m := channels.New(cc, n.h, n.disc.chain, w, key, led, n.log)
	if err := m.Start(n.sv); err != nil {
		led.Close()
		return err
	}
	n.pay = &payState{m: m, led: led, wallet: w}
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

// opener keeps a channel open to each of a paying role's payees; nil
// without payments.
func (n *Node) opener(payees channels.Payees) *channels.Opener {
	if n.pay == nil {
		return nil
	}
	return channels.NewOpener(n.pay.m, payees, n.log)
}

// adminPayments is what the admin API shows of the node's payments.
func (n *Node) adminPayments() admin.Payments {
	return admin.Payments{Channels: n.pay.m, Wallet: n.pay.wallet, Deposit: n.cfg.Payments.Deposit}
}

// clientPayer is a client's side of payments: a request is admitted while
// a proxy it keeps has a funded channel, and each answer is paid on the
// channel to the proxy it came through.
type clientPayer struct {
	m      *channels.Manager
	opener *channels.Opener
	log    *slog.Logger
}

// Admit answers a request with 402 when no proxy the client keeps has a
// funded channel, saying why.
func (p clientPayer) Admit() *inference.Error {
	if err := p.opener.Refusal(); err != nil {
		return inference.Errorf(inference.CodePaymentRequired, "%v", err)
	}
	return nil
}

// Pay pays for an answer the app got: its total, with the worker's
// receipt.
func (p clientPayer) Pay(proxy peer.ID, end *inference.End) {
	if end.Cost == nil || end.Receipt == nil || end.Cost.Total <= 0 {
		return
	}
	if err := p.m.Pay(proxy, end.Receipt, uint64(end.Cost.Total)); err != nil {
		p.log.Warn("paying for an answer", "peer", proxy, "nanoton", end.Cost.Total, "err", err)
	}
}
