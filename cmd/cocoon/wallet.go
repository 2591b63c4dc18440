package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/big"
	"path/filepath"

	"github.com/cocoon-mesh/cocoon/chain/liteclient"
	"github.com/cocoon-mesh/cocoon/payments/ton"
)

// Global IDs of the TON networks, which wallet v5r1 signs over.
const (
	mainnetGlobalID int32 = ton.MainnetID
	testnetGlobalID int32 = -3
)

// runWallet handles `cocoon wallet address|balance`: the node's TON wallet,
// kept as a seed in its data dir.
func runWallet(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "address" && args[0] != "balance") {
		return usageError{"usage: cocoon wallet address|balance [--data-dir DIR] [--network mainnet|testnet] [--global-config FILE|URL]"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("wallet "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", getenv("COCOON_DATA_DIR"), "the node's data directory, where the wallet seed lives (default ~/.cocoon/worker)")
	network := fs.String("network", "mainnet", "the TON network: mainnet or testnet")
	globalConfig := fs.String("global-config", "", "balance: TON global config file or URL (default: ton.org's for the network)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if *dataDir == "" {
		home := getenv("HOME")
		if home == "" {
			return fmt.Errorf("no --data-dir given and HOME is empty")
		}
		*dataDir = filepath.Join(home, ".cocoon", "worker")
	}
	var id int32
	switch *network {
	case "mainnet":
		id = mainnetGlobalID
	case "testnet":
		id = testnetGlobalID
	default:
		return usageError{fmt.Sprintf("--network: %q: want mainnet or testnet (a local network's wallets live in cocoon testnet's sandbox chain)", *network)}
	}
	if sub == "address" {
		w, err := ton.OpenWallet(*dataDir, nil, ton.WalletConfig{NetworkID: id})
		if err != nil {
			return err
		}
		a := w.Address().Bounce(false).Testnet(*network == "testnet")
		fmt.Fprintf(stdout, "%s\n", a.String())
		fmt.Fprintf(stderr, "wallet v5r1 on %s, raw %s; its seed is %s (0600): back it up\n", *network, a.StringRaw(),
			filepath.Join(*dataDir, ton.SeedFile))
		return nil
	}
	lc, err := liteclient.New(liteclient.Config{GlobalConfig: *globalConfig, Network: *network}, nil)
	if err != nil {
		return err
	}
	if err := lc.Start(ctx); err != nil {
		return fmt.Errorf("connecting to TON %s: %w", *network, err)
	}
	defer lc.Close()
	w, err := ton.OpenWallet(*dataDir, lc, ton.WalletConfig{NetworkID: id})
	if err != nil {
		return err
	}
	b, err := w.Balance(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s TON\n", formatTON(b))
	return nil
}

// formatTON writes nanoTON as TON with nine decimals.
func formatTON(nano *big.Int) string {
	q, r := new(big.Int).QuoRem(nano, big.NewInt(1_000_000_000), new(big.Int))
	return fmt.Sprintf("%s.%09d", q, r.Int64())
}
