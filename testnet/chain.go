package testnet

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoon-mesh/cocoon/chain/sandbox"
	"github.com/cocoon-mesh/cocoon/contracts"
	"github.com/cocoon-mesh/cocoon/discovery/registry"
	"github.com/cocoon-mesh/cocoon/node"
)

// Chain is a local network's TON: the sandbox emulator with the root
// contract deployed, owned by the sandbox wallet "owner".
type Chain struct {
	Sandbox *sandbox.Sandbox
	Root    *address.Address
	owner   string
	queryID uint64
}

// ownerWallet is the sandbox treasury that owns a local root contract.
const ownerWallet = "owner"

// StartChain starts the sandbox chain and deploys a root contract for the
// network, with no bootstrap proxies yet (each proxy is added as it
// starts), dev attestation accepted, and models as the allowed models
// (their hashes stand in for weights the sim backend does not have).
func StartChain(ctx context.Context, network string, models []string, log *slog.Logger) (*Chain, error) {
	sb := sandbox.New(sandbox.Config{}, log)
	if err := sb.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the sandbox chain: %w", err)
	}
	c := &Chain{Sandbox: sb, owner: ownerWallet}
	owner, err := sb.Treasury(ctx, c.owner)
	if err != nil {
		sb.Close()
		return nil, err
	}
	reg := &registry.Registry{
		Owner: owner, Network: network, ProtocolVersion: 1,
		DevAttestation: network == "local",
		Fees:           registry.DefaultFees(),
	}
	for _, m := range models {
		reg.Models = append(reg.Models, registry.Model{Hash: sha256.Sum256([]byte(m)), Name: m})
	}
	data, err := reg.Cell()
	if err != nil {
		sb.Close()
		return nil, err
	}
	root, err := sb.Deploy(ctx, contracts.RootCode(), data, big.NewInt(1_000_000_000))
	if err != nil {
		sb.Close()
		return nil, fmt.Errorf("deploying the root contract: %w", err)
	}
	c.Root = root
	return c, nil
}

// SetBootstrap has the owner replace the root contract's bootstrap list
// with the proxies, each by its first address.
func (c *Chain) SetBootstrap(ctx context.Context, proxies []*node.Node) error {
	var list []peer.AddrInfo
	for _, p := range proxies {
		addrs := p.Addrs()
		if len(addrs) == 0 {
			return fmt.Errorf("proxy %s has no address", p.ID())
		}
		ai, err := peer.AddrInfoFromP2pAddr(ma.StringCast(addrs[0]))
		if err != nil {
			return err
		}
		list = append(list, *ai)
	}
	c.queryID++
	body, err := registry.SetBootstrap(c.queryID, list)
	if err != nil {
		return err
	}
	return c.send(ctx, body)
}

// SetDevAttestation has the owner turn dev attestation on or off.
func (c *Chain) SetDevAttestation(ctx context.Context, allow bool) error {
	c.queryID++
	return c.send(ctx, registry.SetDevAttestation(c.queryID, allow))
}

// SetMeasurements has the owner replace the TEE images the root contract
// allows.
func (c *Chain) SetMeasurements(ctx context.Context, list []registry.Measurement) error {
	body, err := registry.SetMeasurements(c.queryID+1, list)
	if err != nil {
		return err
	}
	c.queryID++
	return c.send(ctx, body)
}

// SetMinTCB has the owner set the minimum TDX TCB the root contract
// allows; the zero TCB accepts any.
func (c *Chain) SetMinTCB(ctx context.Context, t registry.TCB) error {
	c.queryID++
	return c.send(ctx, registry.SetMinTCB(c.queryID, t))
}

// send sends an owner message to the root contract and checks the
// contract accepted it.
func (c *Chain) send(ctx context.Context, body *cell.Cell) error {
	txs, err := c.Sandbox.SendInternal(ctx, c.owner, c.Root, big.NewInt(50_000_000), body)
	if err != nil {
		return fmt.Errorf("updating the root contract: %w", err)
	}
	// The owner wallet's transaction comes first, then the contract's.
	if len(txs) < 2 {
		return fmt.Errorf("updating the root contract: %d transactions, want the contract's", len(txs))
	}
	if tx := txs[1]; !tx.Success {
		return fmt.Errorf("the root contract refused the update: exit code %d", tx.ExitCode)
	}
	return nil
}

// Close stops the sandbox.
func (c *Chain) Close() error { return c.Sandbox.Close() }
