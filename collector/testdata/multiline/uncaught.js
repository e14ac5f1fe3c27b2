// Regenerate nodejs_uncaught.txt: for m in async string esm; do node uncaught.js $m; done > nodejs_uncaught.txt 2>&1
const mode = process.argv[2];
console.error(`2026-11-26T12:00:00.000Z info mode ${mode}`);
if (mode === 'async') { (async () => { await null; throw new Error('async boom'); })(); }
if (mode === 'string') { setTimeout(() => { throw 'str'; }, 1); }
if (mode === 'esm') { setTimeout(() => { require('node:fs').readFileSync(123n); }, 1); }
