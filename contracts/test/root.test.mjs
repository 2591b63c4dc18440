// The root contract in @ton/sandbox: deploy, get-methods, every update from
// the owner and from others, every bound of docs/registry.md.
import { test, describe, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Blockchain, internal } from '@ton/sandbox';
import { Address, beginCell, Cell, contractAddress, Dictionary, external, ExternalAddress, toNano } from '@ton/core';
import { flattenTransaction } from '@ton/test-utils';
import * as L from '../layout.mjs';

const dir = dirname(dirname(fileURLToPath(import.meta.url)));
const code = Cell.fromBoc(readFileSync(join(dir, 'root.boc')))[0];

// setup deploys a root contract owned by the treasury "owner".
async function setup(fields = {}) {
    const chain = await Blockchain.create();
    const owner = await chain.treasury('owner');
    const stranger = await chain.treasury('stranger');
    const data = L.storage({ owner: owner.address, ...fields });
    const init = { code, data };
    const root = contractAddress(0, init);
    const res = await owner.send({ to: root, value: toNano('1'), init, bounce: false });
    assert.equal(txTo(res, root).endStatus, 'active');

    // send delivers body from the treasury `from` and returns the root's transaction.
    const send = async (from, body) => txTo(await from.send({ to: root, value: toNano('1'), body }), root);
    const get = async (method) => (await chain.runGetMethod(root, method)).stackReader;
    const data_ = async () => (await chain.getContract(root)).accountState.state.data;
    return { chain, owner, stranger, root, send, get, data: data_ };
}

// txTo returns the flattened transaction on addr in a send result.
function txTo(res, addr) {
    const txs = res.transactions.map(flattenTransaction).filter((t) => t.on?.equals(addr));
    assert.equal(txs.length, 1, `want one transaction on ${addr}, have ${txs.length}`);
    return txs[0];
}

function assertAccepted(tx, what = '') {
    assert.equal(tx.success, true, `${what}: transaction failed with exit code ${tx.exitCode}`);
    assert.equal(tx.exitCode, 0, what);
}

function assertRefused(tx, exitCode, what = '') {
    assert.equal(tx.success, false, `${what}: transaction succeeded`);
    assert.equal(tx.exitCode, exitCode, what);
}

const dictRoot = (d) => beginCell().storeDictDirect(d).endCell();

describe('deploy', () => {
    test('every get-method returns the deployed values', async () => {
        const fees = { proxyFeePpm: 123n, minDeposit: 456n, settlementPeriod: 600n, disputeTimeout: 700n };
        const bootstrap = L.dict8([L.str('/ip4/1.2.3.4/udp/1/quic-v1'), L.str('/dns/a.example/udp/2/quic-v1')]);
        const measurements = L.dict8([L.measurement(1), L.measurement(2)]);
        const models = L.models(L.modelEntries(3));
        const minTcb = { teeTcbSvn: Buffer.from('03000400000000000000000000000000', 'hex'), cpuSvn: Buffer.alloc(16, 7), pceSvn: 13 };
        const c = await setup({ seqno: 5, protocolVersion: 3, devAttestation: true, network: 'local', fees, bootstrap, measurements, models, minTcb });

        assert((await c.get('get_owner')).readAddress().equals(c.owner.address));
        assert.equal((await c.get('get_seqno')).readBigNumber(), 5n);
        assert.equal((await c.get('get_network')).readCell().beginParse().loadStringTail(), 'local');
        assert.equal((await c.get('get_protocol_version')).readBigNumber(), 3n);
        assert.equal((await c.get('get_dev_attestation')).readBigNumber(), -1n);
        const r = await c.get('get_fees');
        assert.deepEqual([r.readBigNumber(), r.readBigNumber(), r.readBigNumber(), r.readBigNumber()], [123n, 456n, 600n, 700n]);
        assert((await c.get('get_bootstrap')).readCell().equals(dictRoot(bootstrap)));
        assert((await c.get('get_measurements')).readCell().equals(dictRoot(measurements)));
        assert((await c.get('get_models')).readCell().equals(dictRoot(models)));
        assert((await c.get('get_min_tcb')).readCell().equals(L.minTcbCell(minTcb)));
    });

    test('empty lists read as null', async () => {
        const empty = L.dict8([]);
        const c = await setup({ bootstrap: empty, measurements: empty, models: L.models([]) });
        for (const m of ['get_bootstrap', 'get_measurements', 'get_models']) {
            assert.equal((await c.get(m)).readCellOpt(), null, m);
        }
        assert.equal((await c.get('get_dev_attestation')).readBigNumber(), 0n);
    });

    test('a new contract accepts any TCB: get_min_tcb is all zero', async () => {
        const c = await setup();
        const s = (await c.get('get_min_tcb')).readCell().beginParse();
        assert.equal(s.remainingBits, 272);
        assert.equal(s.remainingRefs, 0);
        assert.equal(s.loadUintBig(128), 0n);
        assert.equal(s.loadUintBig(128), 0n);
        assert.equal(s.loadUint(16), 0);
    });
});

// One accepted update per op: the body and how to read the new value back.
const updates = [
    {
        name: 'set_bootstrap',
        body: () => L.setBootstrap(L.dict8([L.str('/ip4/10.0.0.1/udp/9/quic-v1')])),
        check: async (c) => assert((await c.get('get_bootstrap')).readCell().equals(dictRoot(L.dict8([L.str('/ip4/10.0.0.1/udp/9/quic-v1')])))),
    },
    {
        name: 'set_measurements',
        body: () => L.setMeasurements(L.dict8([L.measurement(9)])),
        check: async (c) => assert((await c.get('get_measurements')).readCell().equals(dictRoot(L.dict8([L.measurement(9)])))),
    },
    {
        name: 'set_models',
        body: () => L.setModels(L.models(L.modelEntries(5))),
        check: async (c) => assert((await c.get('get_models')).readCell().equals(dictRoot(L.models(L.modelEntries(5))))),
    },
    {
        name: 'set_models empty',
        body: () => L.setModels(L.models([])),
        check: async (c) => assert.equal((await c.get('get_models')).readCellOpt(), null),
    },
    {
        name: 'set_dev_attestation',
        body: () => L.setDevAttestation(true),
        check: async (c) => assert.equal((await c.get('get_dev_attestation')).readBigNumber(), -1n),
    },
    {
        name: 'set_fees',
        body: () => L.setFees({ proxyFeePpm: 1n, minDeposit: 2n, settlementPeriod: 61n, disputeTimeout: 62n }),
        check: async (c) => {
            const r = await c.get('get_fees');
            assert.deepEqual([r.readBigNumber(), r.readBigNumber(), r.readBigNumber(), r.readBigNumber()], [1n, 2n, 61n, 62n]);
        },
    },
    {
        name: 'set_protocol_version',
        body: () => L.setProtocolVersion(2),
        check: async (c) => assert.equal((await c.get('get_protocol_version')).readBigNumber(), 2n),
    },
    {
        name: 'set_min_tcb',
        body: () => L.setMinTcb({ teeTcbSvn: Buffer.alloc(16, 3), cpuSvn: Buffer.alloc(16, 5), pceSvn: 11 }),
        check: async (c) => {
            const s = (await c.get('get_min_tcb')).readCell().beginParse();
            assert.deepEqual([s.loadBuffer(16), s.loadBuffer(16), s.loadUint(16)], [Buffer.alloc(16, 3), Buffer.alloc(16, 5), 11]);
        },
    },
    {
        name: 'transfer_ownership',
        body: (c) => L.transferOwnership(c.stranger.address),
        check: async (c) => assert((await c.get('get_owner')).readAddress().equals(c.stranger.address)),
    },
];

describe('updates', () => {
    let c;
    beforeEach(async () => {
        c = await setup();
    });

    for (const u of updates) {
        test(`${u.name} from the owner is accepted and bumps seqno`, async () => {
            assertAccepted(await c.send(c.owner, u.body(c)));
            assert.equal((await c.get('get_seqno')).readBigNumber(), 1n);
            await u.check(c);
        });

        test(`${u.name} from anyone else is refused with 401`, async () => {
            const before = await c.data();
            const tx = await c.send(c.stranger, u.body(c));
            assertRefused(tx, 401);
            assert((await c.data()).equals(before), 'state changed');
        });
    }

    test('seqno counts every accepted update', async () => {
        for (let i = 1; i <= 3; i++) {
            assertAccepted(await c.send(c.owner, L.setProtocolVersion(i)));
            assert.equal((await c.get('get_seqno')).readBigNumber(), BigInt(i));
        }
    });

    test('after transfer_ownership the old owner is refused and the new one accepted', async () => {
        assertAccepted(await c.send(c.owner, L.transferOwnership(c.stranger.address)));
        assertRefused(await c.send(c.owner, L.setProtocolVersion(9)), 401);
        assertAccepted(await c.send(c.stranger, L.setProtocolVersion(9)));
        assert.equal((await c.get('get_protocol_version')).readBigNumber(), 9n);
        assert.equal((await c.get('get_seqno')).readBigNumber(), 2n);
    });

    test('an unknown op from the owner is refused with 402', async () => {
        const before = await c.data();
        assertRefused(await c.send(c.owner, L.update(0x636f0009)), 402);
        assertRefused(await c.send(c.owner, L.update(0x636f0000)), 402);
        assertRefused(await c.send(c.owner, beginCell().storeUint(0, 32).storeStringTail('hi').endCell()), 402);
        assertRefused(await c.send(c.owner, beginCell().storeUint(1, 8).endCell()), 402);
        assert((await c.data()).equals(before), 'state changed');
    });

    test('a malformed body from the owner is refused with 9', async () => {
        const before = await c.data();
        const bodies = {
            'no query_id': beginCell().storeUint(L.op.setProtocolVersion, 32).endCell(),
            'short value': L.update(L.op.setProtocolVersion, (b) => b.storeUint(1, 8)),
            'trailing bits': L.update(L.op.setProtocolVersion, (b) => b.storeUint(1, 16).storeBit(0)),
            'missing fees ref': L.update(L.op.setFees),
            'fees with extra bits': L.setFees(beginCell().storeSlice(L.feesCell().beginParse()).storeBit(1).endCell()),
            'missing min tcb ref': L.update(L.op.setMinTcb),
            'min tcb with a second ref': L.update(L.op.setMinTcb, (x) => x.storeRef(L.minTcbCell()).storeRef(L.minTcbCell())),
            'bootstrap value not a ref': L.setBootstrap(Dictionary.empty(Dictionary.Keys.Uint(8), Dictionary.Values.Uint(8)).set(0, 5)),
        };
        for (const [name, body] of Object.entries(bodies)) {
            assertRefused(await c.send(c.owner, body), 9, name);
        }
        assert((await c.data()).equals(before), 'state changed');
    });
});

describe('top-ups', () => {
    test('empty bodies, comments and unknown ops from others change nothing', async () => {
        const c = await setup();
        const before = await c.data();
        const balance = (await c.chain.getContract(c.root)).balance;
        const bodies = [
            ['owner', new Cell()],
            ['stranger', new Cell()],
            ['stranger', beginCell().storeUint(0, 32).storeStringTail('thanks').endCell()],
            ['stranger', L.update(0x12345678)],
            ['stranger', beginCell().storeUint(3, 4).endCell()],
        ];
        for (const [who, body] of bodies) {
            assertAccepted(await c.send(c[who], body));
        }
        assert((await c.data()).equals(before), 'state changed');
        assert((await c.chain.getContract(c.root)).balance > balance, 'balance did not grow');
    });

    test('bounced messages are ignored', async () => {
        const c = await setup();
        const before = await c.data();
        const res = await c.chain.sendMessage(internal({
            from: c.owner.address, to: c.root, value: toNano('1'), bounced: true, bounce: false,
            body: beginCell().storeUint(0xffffffff, 32).storeSlice(L.setProtocolVersion(5).beginParse()).endCell(),
        }));
        assertAccepted(txTo(res, c.root));
        assert((await c.data()).equals(before), 'state changed');
    });

    test('external messages are refused', async () => {
        const c = await setup();
        const before = await c.data();
        // There is no onExternalMessage: the selector lookup throws 11.
        await assert.rejects(
            c.chain.sendMessage(external({ to: c.root, body: L.setProtocolVersion(5) })),
            (err) => /External message not accepted/.test(err.message) && err.exitCode === 11,
        );
        assert((await c.data()).equals(before), 'state changed');
    });
});

// Bound cases: each value is refused with its exit code, or accepted (0).
// Values sit just inside and just outside each bound.
const b = (n) => L.str(Buffer.alloc(n, 0x61)); // an n-byte string
const bounds = [
    // bootstrap: keys 0..15, values 1..127 bytes, no refs
    ['bootstrap key 15', () => L.setBootstrap(L.dict8([[15, b(1)]])), 0],
    ['bootstrap key 16', () => L.setBootstrap(L.dict8([[16, b(1)]])), 410],
    ['bootstrap 16 entries', () => L.setBootstrap(L.dict8(Array.from({ length: 16 }, () => b(3)))), 0],
    ['bootstrap 127 bytes', () => L.setBootstrap(L.dict8([b(127)])), 0],
    ['bootstrap 128 bytes', () => L.setBootstrap(L.dict8([L.bits(1016, [b(1)])])), 410],
    ['bootstrap 0 bytes', () => L.setBootstrap(L.dict8([b(0)])), 410],
    ['bootstrap 9 bits', () => L.setBootstrap(L.dict8([L.bits(9)])), 410],
    ['bootstrap value with a ref', () => L.setBootstrap(L.dict8([L.bits(8, [b(1)])])), 410],
    ['bootstrap empty', () => L.setBootstrap(L.dict8([])), 0],
    // measurements: keys 0..15, mrtd:bits384 ^[bits384 bits384] ^[bits384 bits384]
    ['measurements key 15', () => L.setMeasurements(L.dict8([[15, L.measurement()]])), 0],
    ['measurements key 16', () => L.setMeasurements(L.dict8([[16, L.measurement()]])), 411],
    ['measurements 16 entries', () => L.setMeasurements(L.dict8(Array.from({ length: 16 }, (_, i) => L.measurement(i)))), 0],
    ['measurements mrtd 383 bits', () => L.setMeasurements(L.dict8([L.bits(383, [L.bits(768), L.bits(768)])])), 411],
    ['measurements mrtd 385 bits', () => L.setMeasurements(L.dict8([L.bits(385, [L.bits(768), L.bits(768)])])), 411],
    ['measurements one ref', () => L.setMeasurements(L.dict8([L.bits(384, [L.bits(768)])])), 411],
    ['measurements three refs', () => L.setMeasurements(L.dict8([L.bits(384, [L.bits(768), L.bits(768), L.bits(768)])])), 411],
    ['measurements rtmr01 767 bits', () => L.setMeasurements(L.dict8([L.bits(384, [L.bits(767), L.bits(768)])])), 411],
    ['measurements rtmr23 769 bits', () => L.setMeasurements(L.dict8([L.bits(384, [L.bits(768), L.bits(769)])])), 411],
    ['measurements rtmr with a ref', () => L.setMeasurements(L.dict8([L.bits(384, [L.bits(768), L.bits(768, [L.bits(1)])])])), 411],
    ['measurements exact bits', () => L.setMeasurements(L.dict8([L.bits(384, [L.bits(768), L.bits(768)])])), 0],
    // models: at most 64, names 1..127 bytes, no refs
    ['models 64 entries', () => L.setModels(L.models(L.modelEntries(64))), 0],
    ['models 65 entries', () => L.setModels(L.models(L.modelEntries(65))), 412],
    ['models name 127 bytes', () => L.setModels(L.models([[1n, b(127)]])), 0],
    ['models name 0 bytes', () => L.setModels(L.models([[1n, b(0)]])), 412],
    ['models name 7 bits', () => L.setModels(L.models([[1n, L.bits(7)]])), 412],
    ['models name with a ref', () => L.setModels(L.models([[1n, L.bits(8, [b(1)])]])), 412],
    // fees
    ['fees proxy_fee_ppm 200000', () => L.setFees({ ...L.defaultFees, proxyFeePpm: 200000n }), 0],
    ['fees proxy_fee_ppm 200001', () => L.setFees({ ...L.defaultFees, proxyFeePpm: 200001n }), 413],
    ['fees min_deposit 10^15', () => L.setFees({ ...L.defaultFees, minDeposit: 10n ** 15n }), 0],
    ['fees min_deposit 10^15+1', () => L.setFees({ ...L.defaultFees, minDeposit: 10n ** 15n + 1n }), 413],
    ['fees min_deposit 0', () => L.setFees({ ...L.defaultFees, minDeposit: 0n }), 0],
    ['fees settlement_period 59', () => L.setFees({ ...L.defaultFees, settlementPeriod: 59n }), 413],
    ['fees settlement_period 60', () => L.setFees({ ...L.defaultFees, settlementPeriod: 60n }), 0],
    ['fees settlement_period 2592000', () => L.setFees({ ...L.defaultFees, settlementPeriod: 2592000n }), 0],
    ['fees settlement_period 2592001', () => L.setFees({ ...L.defaultFees, settlementPeriod: 2592001n }), 413],
    ['fees dispute_timeout 59', () => L.setFees({ ...L.defaultFees, disputeTimeout: 59n }), 413],
    ['fees dispute_timeout 60', () => L.setFees({ ...L.defaultFees, disputeTimeout: 60n }), 0],
    ['fees dispute_timeout 2592000', () => L.setFees({ ...L.defaultFees, disputeTimeout: 2592000n }), 0],
    ['fees dispute_timeout 2592001', () => L.setFees({ ...L.defaultFees, disputeTimeout: 2592001n }), 413],
    // protocol_version 1..65535
    ['protocol_version 0', () => L.setProtocolVersion(0), 414],
    ['protocol_version 1', () => L.setProtocolVersion(1), 0],
    ['protocol_version 65535', () => L.setProtocolVersion(65535), 0],
    // min_tcb: exactly tee_tcb_svn:bits128 cpu_svn:bits128 pce_svn:uint16, no refs
    ['min_tcb all zero', () => L.setMinTcb(L.zeroTcb), 0],
    ['min_tcb all ones', () => L.setMinTcb(L.bits(272)), 0],
    ['min_tcb 271 bits', () => L.setMinTcb(L.bits(271)), 417],
    ['min_tcb 273 bits', () => L.setMinTcb(L.bits(273)), 417],
    ['min_tcb with a ref', () => L.setMinTcb(L.bits(272, [L.bits(1)])), 417],
    ['min_tcb empty', () => L.setMinTcb(L.bits(0)), 417],
    // new owner: addr_std in the basechain or the masterchain
    ['new owner basechain', () => L.transferOwnership(new Address(0, Buffer.alloc(32, 1))), 0],
    ['new owner masterchain', () => L.transferOwnership(new Address(-1, Buffer.alloc(32, 1))), 0],
    ['new owner workchain 1', () => L.transferOwnership(new Address(1, Buffer.alloc(32, 1))), 416],
    ['new owner addr_none', () => L.update(L.op.transferOwnership, (x) => x.storeUint(0, 2)), 416],
    ['new owner addr_extern', () => L.transferOwnership(new ExternalAddress(5n, 8)), 416],
    // TVM itself no longer parses anycast and addr_var: a malformed body.
    ['new owner anycast', () => L.update(L.op.transferOwnership, (x) =>
        x.storeUint(0b101, 3).storeUint(1, 5).storeUint(1, 1).storeInt(0, 8).storeBuffer(Buffer.alloc(32, 1))), 9],
    ['new owner addr_var', () => L.update(L.op.transferOwnership, (x) =>
        x.storeUint(0b110, 3).storeUint(256, 9).storeInt(0, 32).storeBuffer(Buffer.alloc(32, 1))), 9],
];

describe('bounds', () => {
    for (const [name, body, exitCode] of bounds) {
        test(`${name}: ${exitCode === 0 ? 'accepted' : `refused with ${exitCode}`}`, async () => {
            const c = await setup();
            const before = await c.data();
            const tx = await c.send(c.owner, body());
            if (exitCode === 0) {
                assertAccepted(tx);
                assert.equal((await c.get('get_seqno')).readBigNumber(), 1n);
            } else {
                assertRefused(tx, exitCode);
                assert((await c.data()).equals(before), 'state changed');
            }
        });
    }

    test('dev attestation only on the local network', async () => {
        for (const [network, allow, exitCode] of [
            ['local', true, 0],
            ['local', false, 0],
            ['mainnet', true, 415],
            ['mainnet', false, 0],
            ['localx', true, 415],
            ['loca', true, 415],
        ]) {
            const c = await setup({ network });
            const tx = await c.send(c.owner, L.setDevAttestation(allow));
            if (exitCode === 0) {
                assertAccepted(tx, `${network} ${allow}`);
            } else {
                assertRefused(tx, exitCode);
                assert.equal((await c.get('get_dev_attestation')).readBigNumber(), 0n);
            }
        }
    });
});

test('the committed root.boc is up to date', async () => {
    await promisify(execFile)(process.execPath, [join(dir, 'build.mjs'), '--check'], { cwd: dir });
});
