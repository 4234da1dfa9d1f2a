'use strict';
// "A Node program that exits while operations are pending neither crashes
// nor hangs, in 100 runs out of 100": fixtures/exit-pending.js has an accept,
// a receive, an 8 MiB send its peer never reads and a shutdown behind it
// pending when it exits. Each run must end by itself within HANG_MS, with
// the expected exit code, no signal, and nothing on stderr but the expected
// exception.
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const path = require('node:path');
const os = require('node:os');

const FIXTURE = path.join(__dirname, 'fixtures', 'exit-pending.js');
const HANG_MS = 10000;
const PARALLEL = Math.max(2, Math.min(4, os.cpus().length));

function runOnce(mode) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [FIXTURE, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); }, HANG_MS);
    const started = Date.now();
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, hung: Date.now() - started >= HANG_MS });
    });
  });
}

async function runMany(mode, runs) {
  const results = [];
  let next = 0;
  async function worker() {
    while (next < runs) {
      next++;
      results.push(await runOnce(mode));
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return results;
}

function summarize(mode, results, expectedCode, stderrOk) {
  const bad = results.filter((r) => r.hung || r.signal !== null || r.code !== expectedCode ||
                                    !r.stdout.startsWith('pending ') || !stderrOk(r.stderr));
  const slowest = Math.max(...results.map((r) => r.ms));
  console.log(`# exit-pending ${mode}: ${results.length - bad.length} of ${results.length} clean ` +
              `(slowest ${slowest} ms)`);
  assert.deepStrictEqual(bad.slice(0, 3).map((r) => ({ code: r.code, signal: r.signal, hung: r.hung,
                                                       stderr: r.stderr.slice(0, 500) })), []);
}

const silent = (s) => s === '';
const onlyBoom = (s) => s.includes('boom (expected)') && !/abort|FATAL|napi|Segmentation/i.test(s);

test('process.exit with operations pending: 100 runs out of 100, no crash, no hang', async () => {
  summarize('exit', await runMany('exit', 100), 0, silent);
});

test('an uncaught exception with operations pending exits 1 (20 runs)', async () => {
  summarize('throw', await runMany('throw', 20), 1, onlyBoom);
});

test('cleanup() with operations pending, then the program ends by itself (20 runs)', async () => {
  summarize('cleanup', await runMany('cleanup', 20), 0, silent);
});

// Without the handler, process.exit waits for the outstanding dequeue on a
// libuv worker: its 1 s timeout bounds the wait (an infinite one would hang).
test('process.exit without the package exit handler, engine live (8 runs)', async () => {
  summarize('nohandler', await runMany('nohandler', 8), 0, silent);
});
