// The sandbox sidecar, spawned as the Go side spawns it: every endpoint,
// its errors, and exit on stdin close.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Address, beginCell, Cell, external, internal, storeMessage, storeMessageRelaxed, Dictionary } from '@ton/core';
import { sha256_sync } from '@ton/crypto';
import * as L from '../layout.mjs';

const dir = dirname(dirname(fileURLToPath(import.meta.url)));
const code = Cell.fromBoc(readFileSync(join(dir, 'root.boc')))[0];
const boc = (c) => c.toBoc().toString('base64');
const msgBoc = (m) => boc(beginCell().store(storeMessage(m)).endCell());

// start spawns the sidecar, gives it a fresh token on stdin as the Go
// side does, and waits for its listening line.
async function start(args = []) {
    const proc = spawn(process.execPath, [join(dir, 'sandbox.mjs'), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    const token = randomBytes(32).toString('hex');
    proc.stdin.write(token + '\n');
    const lines = createInterface({ input: proc.stdout });
    const [line] = await once(lines, 'line');
    const m = /^listening (127\.0\.0\.1:\d+)$/.exec(line);
    assert(m, `unexpected first line ${JSON.stringify(line)}`);
    const base = `http://${m[1]}`;
    // post returns [status, body] of a POST with obj as JSON (or a raw string).
    const post = async (path, obj = {}) => {
        const res = await fetch(base + path, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: typeof obj === 'string' ? obj : JSON.stringify(obj),
        });
        return [res.status, await res.json()];
    };
    // ok posts and asserts a 200.
    const ok = async (path, obj) => {
        const [status, body] = await post(path, obj);
        assert.equal(status, 200, `${path}: ${JSON.stringify(body)}`);
        return body;
    };
    return { proc, base, token, post, ok };
}

describe('sandbox sidecar', () => {
    let s;
    let owner;
    let stranger;
    let root;

    before(async () => {
        s = await start();
        owner = (await s.ok('/treasury', { name: 'owner' })).address;
        stranger = (await s.ok('/treasury', { name: 'stranger' })).address;
        const data = L.storage({ owner: Address.parseRaw(owner), network: 'local' });
        const dep = await s.ok('/deploy', { code: boc(code), data: boc(data), value: '1000000000' });
        root = dep.address;
        assert(dep.transactions.some((t) => t.address === root && t.success), 'no successful deploy transaction');
    });

    after(async () => {
        s.proc.stdin.end();
        await once(s.proc, 'exit');
    });

    test('treasury: the same name gives the same address', async () => {
        assert.match(owner, /^0:[0-9a-f]{64}$/);
        assert.equal((await s.ok('/treasury', { name: 'owner' })).address, owner);
        assert.notEqual(stranger, owner);
    });

    test('account: active after deploy, nonexist before', async () => {
        const a = await s.ok('/account', { address: root });
        assert.equal(a.status, 'active');
        assert(Cell.fromBase64(a.code).equals(code));
        assert(BigInt(a.balance) > 0n);
        assert(BigInt(a.lastTxLt) > 0n);
        assert.match(a.lastTxHash, /^[0-9a-f]{64}$/);
        const none = await s.ok('/account', { address: `0:${'ab'.repeat(32)}` });
        assert.deepEqual(none, { status: 'nonexist', balance: '0', lastTxLt: '0', lastTxHash: '0'.repeat(64) });
    });

    test('deploy: twice is a top-up; a failing deploy is a 422', async () => {
        const data = L.storage({ owner: Address.parseRaw(owner), network: 'local' });
        assert.equal((await s.ok('/deploy', { code: boc(code), data: boc(data), value: '1000000000' })).address, root);
        // Code that is only THROW 50.
        const throws = beginCell().storeUint(0xf232, 16).endCell();
        const [status, body] = await s.post('/deploy', { code: boc(throws), data: boc(new Cell()), value: '1000000000' });
        assert.equal(status, 422, JSON.stringify(body));
        assert.match(body.error, /failed \(exit code 50\)/);
        assert(body.transactions.length > 0);
    });

    test('get: values, nulls, exit codes, arguments', async () => {
        assert.deepEqual(await s.ok('/get', { address: root, method: 'get_seqno' }), { exitCode: 0, stack: [{ type: 'int', value: '0' }] });
        const ownerOut = await s.ok('/get', { address: root, method: 'get_owner' });
        assert.equal(ownerOut.stack[0].type, 'slice');
        assert.equal(Cell.fromBase64(ownerOut.stack[0].boc).beginParse().loadAddress().toRawString(), owner);
        const fees = await s.ok('/get', { address: root, method: 'get_fees', args: [] });
        assert.deepEqual(fees.stack.map((e) => e.value), ['50000', '1000000000', '3600', '86400']);
        assert.equal((await s.ok('/get', { address: root, method: 'get_bootstrap' })).stack[0].type, 'cell');

        const missing = await s.ok('/get', { address: root, method: 'no_such_method' });
        assert.deepEqual(missing, { exitCode: 11, stack: [] });

        // A get-method leaves its arguments under its result: a round trip.
        const args = [
            { type: 'int', value: '-12345678901234567890' },
            { type: 'cell', boc: boc(L.str('c')) },
            { type: 'slice', boc: boc(L.str('s')) },
            { type: 'null' },
            { type: 'tuple', items: [{ type: 'int', value: '1' }, { type: 'tuple', items: [] }] },
        ];
        const r = await s.ok('/get', { address: root, method: 'get_seqno', args });
        assert.deepEqual(r.stack, [...args, { type: 'int', value: '0' }]);
    });

    test('get: an account that is not active is a 404', async () => {
        const [status, body] = await s.post('/get', { address: `0:${'cd'.repeat(32)}`, method: 'get_seqno' });
        assert.equal(status, 404);
        assert.match(body.error, /not active/);
    });

    test('internal: an owner update lands, a stranger update bounces with 401', async () => {
        const set = await s.ok('/internal', { from: 'owner', to: root, value: '100000000', body: boc(L.setProtocolVersion(7)) });
        const tx = set.transactions.find((t) => t.address === root);
        assert.deepEqual({ success: tx.success, exitCode: tx.exitCode, aborted: tx.aborted }, { success: true, exitCode: 0, aborted: false });
        assert.match(tx.hash, /^[0-9a-f]{64}$/);
        assert.match(tx.inMessageHash, /^[0-9a-f]{64}$/);
        assert.match(tx.lt, /^[0-9]+$/);
        assert.equal((await s.ok('/get', { address: root, method: 'get_protocol_version' })).stack[0].value, '7');

        const refused = await s.ok('/internal', { from: 'stranger', to: root, value: '100000000', body: boc(L.setProtocolVersion(8)), bounce: true });
        const rtx = refused.transactions.find((t) => t.address === root);
        assert.deepEqual({ success: rtx.success, exitCode: rtx.exitCode, aborted: rtx.aborted }, { success: false, exitCode: 401, aborted: true });
        // The stranger's own external, then the bounce coming back.
        assert.equal(refused.transactions.filter((t) => t.address === stranger).length, 2, 'no bounce back to the stranger');

        const topUp = await s.ok('/internal', { from: 'stranger', to: root, value: '10000000' });
        assert(topUp.transactions.find((t) => t.address === root).success);
    });

    test('external: a treasury transfer lands; the root refuses', async () => {
        // The sandbox treasury takes subwallet id, then a dict of (mode, ^message).
        const sub = BigInt('0x' + sha256_sync('TESTSEED' + 'owner').toString('hex'));
        const out = internal({ to: Address.parseRaw(root), value: 50_000_000n, body: L.setProtocolVersion(9) });
        const msgs = Dictionary.empty(Dictionary.Keys.Int(16), {
            serialize: (m, b) => b.storeUint(3, 8).storeRef(beginCell().store(storeMessageRelaxed(m))),
            parse: () => assert.fail('not read back'),
        });
        msgs.set(0, out);
        const body = beginCell().storeUint(sub, 256).storeDict(msgs).endCell();
        const msg = msgBoc(external({ to: Address.parseRaw(owner), body }));

        const res = await s.ok('/external', { message: msg });
        assert.equal(res.hash, Cell.fromBase64(msg).hash().toString('hex'));
        assert.equal(res.transactions[0].address, owner);
        assert.equal(res.transactions[0].inMessageHash, res.hash);
        assert(res.transactions.some((t) => t.address === root && t.success));
        assert.equal((await s.ok('/get', { address: root, method: 'get_protocol_version' })).stack[0].value, '9');

        const [status, err] = await s.post('/external', { message: msgBoc(external({ to: Address.parseRaw(root), body: L.setProtocolVersion(10) })) });
        assert.equal(status, 422);
        assert.equal(err.exitCode, 11);
        assert.match(err.error, /not accepted/);
    });

    test('external: not an external-in message is a 400', async () => {
        const intMsg = msgBoc(internal({ to: Address.parseRaw(root), value: 1n }));
        for (const message of [intMsg, boc(L.str('junk')), 'not base64 at all!']) {
            const [status, body] = await s.post('/external', { message });
            assert.equal(status, 400, JSON.stringify(body));
            assert.match(body.error, /^message: /);
        }
    });

    test('time: set and advance', async () => {
        assert.deepEqual(await s.ok('/time', { now: 1_900_000_000 }), { now: 1_900_000_000 });
        assert.deepEqual(await s.ok('/time', { advance: 60 }), { now: 1_900_000_060 });
        assert.deepEqual(await s.ok('/time', {}), { now: 1_900_000_060 });
    });

    test('errors are JSON with a status', async () => {
        const cases = [
            ['/nope', {}, 404, /no such path/],
            ['/treasury', 'not json', 400, /not JSON/],
            ['/treasury', '[1]', 400, /JSON object/],
            ['/treasury', {}, 400, /^name: /],
            ['/deploy', { code: boc(code), data: 'x', value: '1' }, 400, /^data: /],
            ['/deploy', { code: boc(code), data: boc(code), value: '-1' }, 400, /^value: /],
            ['/account', { address: 'EQ-friendly' }, 400, /^address: /],
            ['/get', { address: root, method: 'get_seqno', args: [{ type: 'float' }] }, 400, /^args\[0\]\.type: /],
            ['/internal', { from: 'owner', to: root, value: '1', bounce: 'yes' }, 400, /^bounce: /],
            ['/time', { now: 'soon' }, 400, /^now: /],
        ];
        for (const [path, body, want, re] of cases) {
            const [status, out] = await s.post(path, body);
            assert.equal(status, want, `${path} ${JSON.stringify(body)}: ${JSON.stringify(out)}`);
            assert.match(out.error, re);
        }
        const res = await fetch(s.base + '/treasury', { headers: { authorization: `Bearer ${s.token}` } });
        assert.equal(res.status, 405);
    });

    test('only its parent: no token, a wrong one, or a text/plain body is refused', async () => {
        const before = await s.ok('/time', {});
        const skip = JSON.stringify({ advance: 86400 });
        const cases = [
            // A web page's "simple" request: text/plain, no preflight, no token.
            [{ 'content-type': 'text/plain' }, 401],
            [{ 'content-type': 'application/json' }, 401],
            [{ 'content-type': 'application/json', authorization: `Bearer ${'0'.repeat(64)}` }, 401],
            [{ 'content-type': 'application/json', authorization: s.token }, 401],
            [{ 'content-type': 'text/plain', authorization: `Bearer ${s.token}` }, 415],
            [{ 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${s.token}` }, 415],
            [{ authorization: `Bearer ${s.token}` }, 415],
        ];
        for (const [headers, want] of cases) {
            const res = await fetch(s.base + '/time', { method: 'POST', headers, body: skip });
            const out = await res.json();
            assert.equal(res.status, want, `${JSON.stringify(headers)}: ${JSON.stringify(out)}`);
            assert.match(out.error, want === 401 ? /token/ : /application\/json/);
        }
        // No time skip went through.
        assert.equal((await s.ok('/time', {})).now - before.now < 86400, true);
    });

    test('a body over 1 MiB is a 413', async () => {
        const [status, body] = await s.post('/deploy', { code: 'A'.repeat((1 << 20) + 1) });
        assert.equal(status, 413);
        assert.match(body.error, /over/);
        // The sidecar still serves.
        await s.ok('/time', {});
    });
});

test('sandbox sidecar exits when stdin closes; --port is honoured', async () => {
    const first = await start();
    const port = Number(new URL(first.base).port);
    first.proc.stdin.end();
    const [code] = await once(first.proc, 'exit');
    assert.equal(code, 0);
    const again = await start(['--port', String(port)]);
    assert.equal(again.base, `http://127.0.0.1:${port}`);
    again.proc.stdin.end();
    await once(again.proc, 'exit');
});

test('sandbox sidecar will not start without a token on stdin', async () => {
    for (const input of ['', 'short\n']) {
        const proc = spawn(process.execPath, [join(dir, 'sandbox.mjs')], { stdio: ['pipe', 'pipe', 'pipe'] });
        let stderr = '';
        let stdout = '';
        proc.stderr.on('data', (d) => (stderr += d));
        proc.stdout.on('data', (d) => (stdout += d));
        proc.stdin.end(input);
        const [code] = await once(proc, 'exit');
        assert.equal(code, 1, `stdin ${JSON.stringify(input)}`);
        assert.match(stderr, /token/);
        assert.doesNotMatch(stdout, /listening/);
    }
});

test('sandbox sidecar refuses bad arguments', async () => {
    const proc = spawn(process.execPath, [join(dir, 'sandbox.mjs'), '--bogus'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const [code] = await once(proc, 'exit');
    assert.equal(code, 1);
    assert.match(stderr, /unknown argument --bogus/);
});
