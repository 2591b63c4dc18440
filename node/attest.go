package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cocoon-mesh/cocoon/attest"
	"github.com/cocoon-mesh/cocoon/attest/collateral"
	"github.com/cocoon-mesh/cocoon/attest/dev"
	"github.com/cocoon-mesh/cocoon/attest/nvidia"
	"github.com/cocoon-mesh/cocoon/attest/tdx"
	"github.com/cocoon-mesh/cocoon/inference/seal"
	"github.com/cocoon-mesh/cocoon/node/config"
)

// startAttestation sets up the handshake: the evidence this node presents
// (issued once now, so that a node that cannot prove itself fails to
// start; renewed in the background by the handshaker's Run, which Start
// runs) and the kinds it accepts from peers. A worker's evidence also
// binds a sealing key from a keyring in memory (n.keys), renewed with each
// evidence (once per validity window): clients seal requests to it, and
// the worker opens them with the same keyring.
func (n *Node) startAttestation(ctx context.Context) error {
	issuer, err := n.newIssuer()
	if err != nil {
		return err
	}
	if issuer == nil {
		n.log.Info("presenting no evidence (attest.issuer none): peers hold no verdict on this node")
	}
	if n.kinds, err = n.newKinds(); err != nil {
		return err
	}
	var sealKeys attest.SealKeys // a nil interface: a proxy or client seals nothing
	if n.cfg.Role == config.RoleWorker {
		keyring, err := seal.NewKeyring(nil, nil)
		if err != nil {
			return fmt.Errorf("sealing keys: %w", err)
		}
		sealKeys, n.keys = keyring, keyring
	}
	n.hs = attest.NewHandshaker(n.h, issuer, sealKeys, n.kinds,
		attest.Config{Network: n.cfg.Network, Validity: n.cfg.Attest.Validity.D(), Now: n.opts.now}, n.log)
	n.hs.Register(n.sv)
	_, err = n.hs.Evidence(ctx)
	return err
}

// newIssuer makes the evidence this node presents, as attest.issuer says:
// dev, a TDX quote (which fails here, clearly, on a machine that is not a
// TDX guest), or none (a nil Issuer).
func (n *Node) newIssuer() (attest.Issuer, error) {
	if n.opts.issuer != nil {
		return n.opts.issuer, nil
	}
	switch n.cfg.Attest.Issuer {
	case "none":
		return nil, nil
	case "dev":
		return dev.Issuer{}, nil
	case "tdx":
		p, err := tdx.OpenHardware()
		if err != nil {
			return nil, fmt.Errorf("attest.issuer tdx: %w", err)
		}
		if n.cfg.Attest.GPU {
			return nvidia.Collecting{Inner: tdx.NewIssuer(p), Collector: nvidia.NewCollector()}, nil
		}
		return tdx.NewIssuer(p), nil
	}
	return nil, fmt.Errorf("attest.issuer: %q: want dev or tdx", n.cfg.Attest.Issuer)
}

// newKinds makes the validators of the evidence kinds this node accepts
// from peers: TDX always, against the measurements the root contract
// allows (none without one), raised to tee-gpu when it carries GPU evidence
// NVIDIA's pinned root vouches for; dev only while attest.allow_dev says
// so, and then only on the network "local" or where the root contract
// allows it (applyPolicy, which replaces this choice at its first read):
// a testnet node without a root contract refuses dev evidence.
//
// Intel's collateral is fetched from Intel PCS, and when Intel cannot be
// reached, from the peers the node is connected to (its proxies), which
// serve what they have cached: Intel signs it, so a peer can withhold it
// but not forge it. The node serves its own cache the same way.
func (n *Node) newKinds() (*attest.Kinds, error) {
	mode := tdx.CollateralOn
	if n.cfg.Attest.Collateral == "off" {
		mode = tdx.CollateralOff
	}
	v, err := tdx.NewValidator(tdx.Config{
		Policy:     n.tdxPolicy,
		Collateral: mode,
		CacheDir:   filepath.Join(n.cfg.DataDir, "intel-pcs"),
		Getter:     collateral.NewGetter(n.cfg.Network, n.opts.pcs, n.h, collateral.PeersFunc(n.h.Network().Peers), n.log),
		Log:        n.log,
	})
	if err != nil {
		return nil, err
	}
	collateral.NewServer(n.cfg.Network, v, n.log).Register(n.sv)
	gpu, err := nvidia.NewVerifier()
	if err != nil {
		return nil, err
	}
	upgrading := nvidia.Upgrading{Inner: v, Verifier: gpu, Log: n.log}
	k := attest.NewKinds(map[string]attest.Validator{tdx.Kind: upgrading})
	if n.cfg.Attest.AllowDev && n.cfg.Network == "local" {
		k.Set(dev.Kind, dev.Validator{})
	}
	return k, nil
}

// tdxPolicy is what TDX evidence must show: one of the measurements the
// root contract allows, and a TCB at or above its minimum, component by
// component. applyPolicy re-checks cached verdicts when either changes.
func (n *Node) tdxPolicy() tdx.Policy {
	var p tdx.Policy
	if n.disc.registry == nil {
		return p
	}
	reg := n.disc.registry.Current()
	for _, m := range reg.Measurements {
		p.Measurements = append(p.Measurements, tdx.Measurement{MRTD: m.MRTD, RTMR: m.RTMR})
	}
	p.MinTCB = tdx.TCB{TEETCBSVN: reg.MinTCB.TEETCBSVN, CPUSVN: reg.MinTCB.CPUSVN, PCESVN: reg.MinTCB.PCESVN}
	return p
}

// Tier is the trust tier the node's own evidence earns, announced in
// its offers: dev for dev evidence, tee for a TDX quote, tee-gpu for a TDX
// quote with NVIDIA confidential-computing evidence.
func (n *Node) Tier(ctx context.Context) (attest.Tier, error) {
	ev, err := n.hs.Evidence(ctx)
	if err != nil {
		return 0, err
	}
	switch {
	case ev == nil:
		return 0, errors.New("this node presents no evidence (attest.issuer none)")
	case ev.Kind == dev.Kind:
		return attest.TierDev, nil
	case ev.Kind == tdx.Kind && len(ev.GPU) > 0:
		return attest.TierTEEGPU, nil
	case ev.Kind == tdx.Kind:
		return attest.TierTEE, nil
	}
	return 0, fmt.Errorf("own evidence of kind %q has no trust tier", ev.Kind)
}

// evidenceDigest is the SHA-256 of the node's current evidence as it is
// sent in the handshake, announced in offers so that a peer can tell which
// evidence a verdict was reached on.
func (n *Node) evidenceDigest(ctx context.Context) ([]byte, error) {
	ev, err := n.hs.Evidence(ctx)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}
