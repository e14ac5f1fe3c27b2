// Node.js errors as console.error prints them, then an uncaught one.
// Regenerate nodejs.txt with: node errors.js > nodejs.txt 2>&1
function inner() { const e = new Error('db down'); e.code = 'ECONNREFUSED'; throw e; }
function outer() { try { inner(); } catch (err) { throw new TypeError('request failed', { cause: err }); } }
console.error('2026-11-26T12:00:00.001Z info starting');
try { outer(); } catch (e) { console.error(e); }
console.error('2026-11-26T12:00:00.002Z info next');
console.error(new AggregateError([new Error('a'), new RangeError('b')], 'many'));
console.error('2026-11-26T12:00:00.003Z info last');
setTimeout(() => { null.x; }, 1);
