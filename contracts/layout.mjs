// Builders for the root contract's storage and update messages, following
// docs/registry.md. The tests build cells with these; a bound test passes a
// ready cell where a well-formed value would go.
import { beginCell, Cell, Dictionary } from '@ton/core';

export const op = {
    setBootstrap: 0x636f0001,
    setMeasurements: 0x636f0002,
    setModels: 0x636f0003,
    setDevAttestation: 0x636f0004,
    setFees: 0x636f0005,
    setProtocolVersion: 0x636f0006,
    transferOwnership: 0x636f0007,
    setMinTcb: 0x636f0008,
};

export const defaultFees = {
    proxyFeePpm: 50000n,
    minDeposit: 1_000_000_000n,
    settlementPeriod: 3600n,
    disputeTimeout: 86400n,
};

// str returns a string cell: the bytes of s (a string or a Buffer), no refs.
export function str(s) {
    return beginCell().storeBuffer(Buffer.from(s)).endCell();
}

// bits returns a cell of n bits, all one, with the given refs.
export function bits(n, refs = []) {
    const b = beginCell();
    for (let i = 0; i < n; i++) b.storeBit(1);
    for (const r of refs) b.storeRef(r);
    return b.endCell();
}

// measurement returns a Measurement cell; fill is the byte every register
// repeats, so two measurements with different fills differ.
export function measurement(fill = 1) {
    const reg = Buffer.alloc(48, fill);
    const pair = beginCell().storeBuffer(reg).storeBuffer(reg).endCell();
    return beginCell().storeBuffer(reg).storeRef(pair).storeRef(pair).endCell();
}

// dict8 returns a HashmapE 8 ^Cell from [key, cell] pairs or a list of
// cells (keys 0, 1, ...).
export function dict8(entries) {
    const d = Dictionary.empty(Dictionary.Keys.Uint(8), Dictionary.Values.Cell());
    entries.forEach((e, i) => (Array.isArray(e) ? d.set(e[0], e[1]) : d.set(i, e)));
    return d;
}

// models returns a HashmapE 256 ^Cell from [hash bigint, name cell] pairs.
export function models(entries) {
    const d = Dictionary.empty(Dictionary.Keys.BigUint(256), Dictionary.Values.Cell());
    for (const [k, v] of entries) d.set(k, v);
    return d;
}

// modelEntries returns n model entries with distinct keys and names.
export function modelEntries(n) {
    return Array.from({ length: n }, (_, i) => [BigInt(i + 1) << 200n, str(`model-${i}`)]);
}

export function feesCell(f = defaultFees) {
    return beginCell()
        .storeUint(f.proxyFeePpm, 32)
        .storeCoins(f.minDeposit)
        .storeUint(f.settlementPeriod, 32)
        .storeUint(f.disputeTimeout, 32)
        .endCell();
}

// The minimum TCB a new contract starts with: all zero, accept any.
export const zeroTcb = { teeTcbSvn: Buffer.alloc(16), cpuSvn: Buffer.alloc(16), pceSvn: 0 };

// minTcbCell returns a MinTcb cell: tee_tcb_svn:bits128 cpu_svn:bits128
// pce_svn:uint16.
export function minTcbCell(t = zeroTcb) {
    return beginCell().storeBuffer(t.teeTcbSvn).storeBuffer(t.cpuSvn).storeUint(t.pceSvn, 16).endCell();
}

// storage returns the root contract's data cell.
export function storage({
    owner,
    seqno = 0,
    protocolVersion = 1,
    devAttestation = false,
    network = 'local',
    fees = defaultFees,
    bootstrap = dict8([str('/ip4/127.0.0.1/udp/4001/quic-v1')]),
    measurements = dict8([measurement(1)]),
    models: m = models(modelEntries(2)),
    minTcb = zeroTcb,
}) {
    const lists = beginCell().storeDict(bootstrap).storeDict(measurements).storeDict(m).endCell();
    return beginCell()
        .storeAddress(owner)
        .storeUint(seqno, 32)
        .storeUint(protocolVersion, 16)
        .storeBit(devAttestation)
        .storeRef(str(network))
        .storeRef(feesCell(fees))
        .storeRef(lists)
        .storeRef(minTcbCell(minTcb))
        .endCell();
}

// update returns an update body: op, query_id, then what write stores.
export function update(code, write = () => {}, queryId = 7) {
    const b = beginCell().storeUint(code, 32).storeUint(queryId, 64);
    write(b);
    return b.endCell();
}

export const setBootstrap = (d) => update(op.setBootstrap, (b) => b.storeDict(d));
export const setMeasurements = (d) => update(op.setMeasurements, (b) => b.storeDict(d));
export const setModels = (d) => update(op.setModels, (b) => b.storeDict(d));
export const setDevAttestation = (allow) => update(op.setDevAttestation, (b) => b.storeBit(allow));
export const setFees = (f) => update(op.setFees, (b) => b.storeRef(f instanceof Cell ? f : feesCell(f)));
export const setProtocolVersion = (v) => update(op.setProtocolVersion, (b) => b.storeUint(v, 16));
export const transferOwnership = (a) => update(op.transferOwnership, (b) => b.storeAddress(a));
export const setMinTcb = (t) => update(op.setMinTcb, (b) => b.storeRef(t instanceof Cell ? t : minTcbCell(t)));
