// Compiles root.tolk with @ton/tolk-js and writes root.boc, the code cell as
// a binary BoC. With --check it writes nothing and exits 1 when the committed
// root.boc differs from a fresh compile.
//
//   node build.mjs            compile and write root.boc
//   node build.mjs --check    fail unless root.boc is up to date
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { runTolkCompiler } from '@ton/tolk-js';
import { Cell } from '@ton/core';

const here = dirname(fileURLToPath(import.meta.url));

// compile returns the code cell of the contract in file (relative to here).
export async function compile(file) {
    const result = await runTolkCompiler({
        entrypointFileName: file,
        fsReadCallback: (path) => readFileSync(join(here, path), 'utf-8'),
    });
    if (result.status === 'error') {
        throw new Error(`compiling ${file}:\n${result.message}`);
    }
    if (result.stderr) {
        process.stderr.write(result.stderr);
    }
    return Cell.fromBase64(result.codeBoc64);
}

async function main(args) {
    const check = args.includes('--check');
    const code = await compile('root.tolk');
    const fresh = code.toBoc();
    const out = join(here, 'root.boc');
    if (!check) {
        writeFileSync(out, fresh);
        console.log(`root.boc: code hash ${code.hash().toString('hex')}, ${fresh.length} bytes`);
        return 0;
    }
    let committed;
    try {
        committed = readFileSync(out);
    } catch (err) {
        console.error(`root.boc: ${err.message}; run node build.mjs`);
        return 1;
    }
    if (!committed.equals(fresh)) {
        console.error('root.boc is out of date with root.tolk; run node build.mjs and commit root.boc');
        return 1;
    }
    console.log(`root.boc is up to date (code hash ${code.hash().toString('hex')})`);
    return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
    main(process.argv.slice(2)).then(
        (code) => process.exit(code),
        (err) => {
            console.error(err.message);
            process.exit(1);
        },
    );
}
