// The sandbox sidecar: a local TVM emulator (@ton/sandbox) behind a small
// JSON API on 127.0.0.1, for the Go package chain/sandbox. The API is in
// docs/registry.md, "The sandbox sidecar".
//
//   node sandbox.mjs [--port N]
//
// Its first line of stdin is a token its parent chose (at least 32
// characters): every request must carry it as "Authorization: Bearer
// <token>" (else 401) and be Content-Type application/json (else 415), so a
// web page, or another local user, cannot drive the chain. The token comes
// over stdin, not argv or the environment, which others can read in /proc.
//
// It prints "listening 127.0.0.1:PORT" on stdout once ready (port 0 unless
// --port is given) and exits when its stdin closes, so it never outlives the
// process that started it. Everything else it prints goes to stderr.
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { Address, beginCell, Cell, contractAddress, loadMessage } from '@ton/core';
import { Blockchain, EmulationError, GetMethodError } from '@ton/sandbox';

const MAX_BODY = 1 << 20; // bytes of request body
const MIN_TOKEN = 32; // characters of the parent's token, at least
const MAX_TOKEN_LINE = 1024; // bytes of stdin before the token's newline

// HttpError is an error with the status the client gets.
class HttpError extends Error {
    constructor(status, message, extra = {}) {
        super(message);
        this.status = status;
        this.extra = extra;
    }
}

const bad = (message) => new HttpError(400, message);

// Request fields. Each throws a 400 naming the field when it is missing or
// malformed.

function str(body, name, { optional = false } = {}) {
    const v = body[name];
    if (v === undefined && optional) return undefined;
    if (typeof v !== 'string' || v === '') throw bad(`${name}: want a non-empty string`);
    return v;
}

function cell(body, name, opts) {
    const v = str(body, name, opts);
    if (v === undefined) return undefined;
    try {
        return Cell.fromBase64(v);
    } catch (err) {
        throw bad(`${name}: not a base64 BoC: ${err.message}`);
    }
}

function address(body, name) {
    const v = str(body, name);
    if (!Address.isRaw(v)) throw bad(`${name}: want a raw address "wc:hex", have ${JSON.stringify(v)}`);
    return Address.parseRaw(v);
}

function amount(body, name) {
    const v = str(body, name);
    if (!/^[0-9]{1,40}$/.test(v)) throw bad(`${name}: want a decimal string of nanoTON, have ${JSON.stringify(v)}`);
    return BigInt(v);
}

function seconds(body, name) {
    const v = body[name];
    if (v === undefined) return undefined;
    if (!Number.isSafeInteger(v)) throw bad(`${name}: want an integer number of seconds`);
    return v;
}

// Stack entries, both ways.

function entryIn(e, path) {
    switch (e?.type) {
        case 'int':
            if (typeof e.value !== 'string' || !/^-?[0-9]+$/.test(e.value)) throw bad(`${path}.value: want a decimal string`);
            return { type: 'int', value: BigInt(e.value) };
        case 'cell':
        case 'slice':
            return { type: e.type, cell: cell(e, 'boc') };
        case 'null':
            return { type: 'null' };
        case 'tuple':
            if (!Array.isArray(e.items)) throw bad(`${path}.items: want an array`);
            return { type: 'tuple', items: e.items.map((x, i) => entryIn(x, `${path}.items[${i}]`)) };
        default:
            throw bad(`${path}.type: want int, cell, slice, null or tuple, have ${JSON.stringify(e?.type)}`);
    }
}

function entryOut(e) {
    switch (e.type) {
        case 'int':
            return { type: 'int', value: e.value.toString() };
        case 'cell':
        case 'slice':
            return { type: e.type, boc: e.cell.toBoc().toString('base64') };
        case 'builder':
            return { type: 'cell', boc: e.cell.toBoc().toString('base64') };
        case 'null':
            return { type: 'null' };
        case 'tuple':
            return { type: 'tuple', items: e.items.map(entryOut) };
        default:
            throw new HttpError(500, `get-method returned a ${e.type}, which has no JSON form`);
    }
}

const hex = (b) => b.toString('hex');
const hex256 = (n) => n.toString(16).padStart(64, '0');

// inMessageHash returns the hash of tx's inbound message cell, as recorded in
// the transaction, or null when it has none (tick-tock).
function inMessageHash(tx) {
    const io = tx.raw.refs[0].beginParse();
    return io.loadBit() ? hex(io.loadRef().hash()) : null;
}

function txOut(tx) {
    const d = tx.description;
    const cp = d.computePhase;
    const exitCode = cp?.type === 'vm' ? cp.exitCode : null;
    const dest = tx.inMessage?.info.dest;
    const addr = Address.isAddress(dest) ? dest : new Address(0, Buffer.from(hex256(tx.address), 'hex'));
    return {
        address: addr.toRawString(),
        lt: tx.lt.toString(),
        hash: hex(tx.hash()),
        inMessageHash: inMessageHash(tx),
        success: cp?.type === 'vm' && cp.success && (d.actionPhase?.success ?? true) && !d.aborted,
        exitCode,
        aborted: Boolean(d.aborted),
    };
}

// emulating runs fn, turning the emulator's refusals into 422s.
async function emulating(fn) {
    try {
        return await fn();
    } catch (err) {
        if (err instanceof EmulationError) {
            throw new HttpError(422, err.error ?? err.message, { exitCode: err.exitCode ?? null });
        }
        throw err;
    }
}

// handlers returns the API's handlers over chain, by path.
function handlers(chain) {
    const now = () => chain.now ?? Math.floor(Date.now() / 1000);
    const treasury = (name) => {
        if (name.length > 64) throw bad('name: at most 64 characters');
        return chain.treasury(name);
    };

    return {
        async '/treasury'(body) {
            const t = await treasury(str(body, 'name'));
            return { address: t.address.toRawString() };
        },

        async '/deploy'(body) {
            const init = { code: cell(body, 'code'), data: cell(body, 'data') };
            const value = amount(body, 'value');
            const addr = contractAddress(0, init);
            const msgBody = body.body === undefined ? undefined : cell(body, 'body');
            const deployer = await treasury('deployer');
            const res = await emulating(() => deployer.send({ to: addr, value, init, body: msgBody, bounce: false }));
            const transactions = res.transactions.map(txOut);
            // The account's own transaction must succeed and leave it active.
            const tx = transactions.find((t) => t.address === addr.toRawString());
            const state = (await chain.getContract(addr)).accountState?.type ?? 'nonexist';
            if (!tx?.success || state !== 'active') {
                const why = tx ? `exit code ${tx.exitCode}` : 'no transaction';
                throw new HttpError(422, `deploy to ${addr.toRawString()} failed (${why}), account is ${state}`, { transactions });
            }
            return { address: addr.toRawString(), transactions };
        },

        async '/account'(body) {
            const c = await chain.getContract(address(body, 'address'));
            let status = c.accountState?.type ?? 'nonexist';
            if (status === 'uninit' && c.balance === 0n && c.lastTransactionLt === 0n) {
                status = 'nonexist'; // the sandbox's placeholder for an untouched account
            }
            const out = {
                status,
                balance: c.balance.toString(),
                lastTxLt: c.lastTransactionLt.toString(),
                lastTxHash: hex256(c.lastTransactionHash),
            };
            if (status === 'active') {
                out.code = c.accountState.state.code?.toBoc().toString('base64');
                out.data = c.accountState.state.data?.toBoc().toString('base64');
            }
            return out;
        },

        async '/get'(body) {
            const addr = address(body, 'address');
            const method = str(body, 'method');
            const args = body.args ?? [];
            if (!Array.isArray(args)) throw bad('args: want an array');
            const stack = args.map((e, i) => entryIn(e, `args[${i}]`));
            const c = await chain.getContract(addr);
            const state = c.accountState?.type ?? 'nonexist';
            if (state !== 'active') {
                throw new HttpError(404, `account ${addr.toRawString()} is ${state}, not active`);
            }
            try {
                const r = await c.get(method, stack);
                return { exitCode: r.exitCode, stack: r.stack.map(entryOut) };
            } catch (err) {
                if (err instanceof GetMethodError) return { exitCode: err.exitCode, stack: [] };
                throw err;
            }
        },

        async '/internal'(body) {
            const from = await treasury(str(body, 'from'));
            const args = { to: address(body, 'to'), value: amount(body, 'value'), body: cell(body, 'body', { optional: true }) };
            if (body.bounce !== undefined && typeof body.bounce !== 'boolean') throw bad('bounce: want a boolean');
            args.bounce = body.bounce ?? true;
            const res = await emulating(() => from.send(args));
            return { transactions: res.transactions.map(txOut) };
        },

        async '/external'(body) {
            const msg = cell(body, 'message');
            let info;
            try {
                info = loadMessage(msg.beginParse()).info;
            } catch (err) {
                throw bad(`message: not a Message: ${err.message}`);
            }
            if (info.type !== 'external-in') throw bad(`message: want an external-in message, have ${info.type}`);
            const res = await emulating(() => chain.sendMessage(msg));
            const transactions = res.transactions.map(txOut);
            return { hash: transactions[0].inMessageHash, transactions };
        },

        async '/time'(body) {
            const set = seconds(body, 'now');
            const advance = seconds(body, 'advance');
            if (set !== undefined) chain.now = set;
            if (advance !== undefined) chain.now = now() + advance;
            return { now: now() };
        },
    };
}

// readBody returns the request's body, or throws a 413 past MAX_BODY bytes.
function readBody(req) {
    return new Promise((resolve, reject) => {
        if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) {
            reject(new HttpError(413, `request body over ${MAX_BODY} bytes`));
            return;
        }
        const chunks = [];
        let size = 0;
        const onData = (chunk) => {
            size += chunk.length;
            if (size > MAX_BODY) {
                // Stop keeping it; the rest drains and the connection closes.
                req.off('data', onData);
                req.resume();
                reject(new HttpError(413, `request body over ${MAX_BODY} bytes`));
                return;
            }
            chunks.push(chunk);
        };
        req.on('data', onData);
        req.on('end', () => resolve(Buffer.concat(chunks)));
        req.on('error', reject);
    });
}

// watchStdin resolves to the first line of stdin, the parent's token, and
// exits the process when stdin closes: with 0 once the token came, so the
// sidecar never outlives its parent; before it, main fails.
function watchStdin() {
    return new Promise((resolve, reject) => {
        let buf = '';
        let done = false;
        process.stdin.setEncoding('utf-8');
        process.stdin.on('data', (chunk) => {
            if (done) return;
            buf += chunk;
            const i = buf.indexOf('\n');
            if (i >= 0) {
                done = true;
                resolve(buf.slice(0, i).trim());
            } else if (buf.length > MAX_TOKEN_LINE) {
                done = true;
                reject(new Error(`stdin: no token line within ${MAX_TOKEN_LINE} bytes`));
            }
            buf = done ? '' : buf;
        });
        process.stdin.on('end', () => {
            if (!done) reject(new Error('stdin closed before the token line: the parent passes a token on stdin'));
            else process.exit(0);
        });
        process.stdin.on('error', () => process.exit(0));
    });
}

// checkToken throws a 401 unless req carries the token.
function checkToken(req, token) {
    const auth = req.headers['authorization'] ?? '';
    const got = Buffer.from(auth.startsWith('Bearer ') ? auth.slice('Bearer '.length) : '');
    if (got.length !== token.length || !timingSafeEqual(got, token)) {
        throw new HttpError(401, 'missing or wrong token: the sidecar answers only the process that started it (Authorization: Bearer <token>)');
    }
}

// checkJSON throws a 415 unless req's body is declared JSON: a web page
// can post text/plain without a preflight, not application/json.
function checkJSON(req) {
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/json') {
        throw new HttpError(415, `Content-Type ${JSON.stringify(type)}: want application/json`);
    }
}

function reply(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
}

async function main(argv) {
    let port = 0;
    for (let i = 0; i < argv.length; i++) {
        const m = /^--port(?:=(.*))?$/.exec(argv[i]);
        if (!m) throw new Error(`unknown argument ${argv[i]}; usage: node sandbox.mjs [--port N]`);
        port = Number(m[1] ?? argv[++i]);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('--port: want 0..65535');
    }

    const token = Buffer.from(await watchStdin());
    if (token.length < MIN_TOKEN) throw new Error(`stdin: the token must have at least ${MIN_TOKEN} characters`);
    const chain = await Blockchain.create();
    const routes = handlers(chain);

    // The emulator is one shared state: run requests one at a time, in order.
    let queue = Promise.resolve();
    const serial = (fn) => {
        const p = queue.then(fn);
        queue = p.catch(() => {});
        return p;
    };

    const server = http.createServer(async (req, res) => {
        try {
            checkToken(req, token);
            const route = Object.hasOwn(routes, req.url) ? routes[req.url] : undefined;
            if (!route) throw new HttpError(404, `no such path ${req.url}`);
            if (req.method !== 'POST') throw new HttpError(405, `${req.method} ${req.url}: want POST`);
            checkJSON(req);
            const raw = await readBody(req);
            let body;
            try {
                body = JSON.parse(raw.toString('utf-8') || '{}');
            } catch (err) {
                throw bad(`body is not JSON: ${err.message}`);
            }
            if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('body: want a JSON object');
            reply(res, 200, await serial(() => route(body)));
        } catch (err) {
            const status = err instanceof HttpError ? err.status : 500;
            if (status >= 500) console.error(`${req.url}: ${err.stack ?? err}`);
            if (!res.headersSent && !res.destroyed) {
                if (status === 413 || status === 401 || status === 415) res.setHeader('connection', 'close'); // the body is unread
                reply(res, status, { error: err.message, ...(err.extra ?? {}) });
            }
        }
    });

    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
    });
    process.stdout.write(`listening 127.0.0.1:${server.address().port}\n`);
    // Keep stdout for the one line above; contract debug output goes to stderr.
    console.log = console.error;
}

main(process.argv.slice(2)).catch((err) => {
    console.error(`sandbox: ${err.message}`);
    process.exit(1);
});
