import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from './helpers';

/** Starts the backend in a fresh process (the choice is made once per process) and reports what it logged. */
function start(preferred: string, env: Record<string, string> = {}, then = '', nodeOptions: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const script = `const tf = require('@tensorflow/tfjs-core');
    require(${JSON.stringify(require.resolve('../lib/backend/backend'))}).initBackend(process.argv[1] || undefined)
    .then(async (c) => { console.log('chose ' + c.name); ${then} }, (e) => { console.log('error: ' + e.message); process.exitCode = 3; });`;
  // A timeout catches a process kept alive by worker threads.
  return spawnSync(process.execPath, [...nodeOptions, '-e', script, preferred], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, FSEFT_BACKEND: '', ...env } });
}

/** As `start`, without blocking the test process (for several at once). */
function startAsync(preferred: string, env: Record<string, string>, then: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const script = `const tf = require('@tensorflow/tfjs-core');
    require(${JSON.stringify(require.resolve('../lib/backend/backend'))}).initBackend(process.argv[1] || undefined)
    .then(async (c) => { console.log('chose ' + c.name); ${then} }, (e) => { console.log('error: ' + e.message); process.exitCode = 3; });`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script, preferred], { env: { ...process.env, FSEFT_BACKEND: '', ...env }, timeout: 120_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function installed(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

test('automatic choice: wasm when no native binding is installed, with one log line saying why', { skip: installed('@tensorflow/tfjs-node-gpu') && 'a native binding is installed here' }, () => {
  const result = start('');
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /chose wasm/);
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('fseft: backend'));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^fseft: backend wasm \(WebAssembly SIMD\/XNNPACK, (one thread|\d+ threads); fallback: tensorflow: no native binding installed/);
});

test('an unknown backend name is refused with the list of names', () => {
  const result = start('cuda');
  assert.equal(result.status, 3);
  assert.match(result.stdout, /error: unknown backend 'cuda'; choose one of tensorflow, wasm, cpu, webgpu/);
});

test('webgpu is opt-in: asked for without its packages it fails and says what to install', { skip: installed('webgpu') && "the 'webgpu' package is installed here" }, () => {
  const result = start('webgpu');
  assert.equal(result.status, 3);
  assert.match(result.stdout, /error: backend 'webgpu' is not available \(webgpu: Dawn's Node binding is not installed or does not load \(npm install webgpu @tensorflow\/tfjs-backend-webgpu@4\.22\.0\)/);
});

test('wasm on two threads (FSEFT_WASM_THREADS=2): says so, computes what one thread computes, and lets Node exit', () => {
  // A convolution large enough for XNNPACK to split it across its pool.
  const convolve = `const x = tf.randomNormal([4, 24, 24, 16], 0, 1, 'float32', 1); const w = tf.randomNormal([3, 3, 16, 16], 0, 1, 'float32', 2);
    console.log('values ' + JSON.stringify(Array.from(await tf.conv2d(x, w, 1, 'same').data()).filter((_, i) => i % 97 === 0)));`;
  const runs = ['1', '2'].map((threads) => start('wasm', { FSEFT_WASM_THREADS: threads }, convolve));
  for (const run of runs) assert.equal(run.status, 0, `status ${run.status} (null: the process did not exit): ${run.stderr}`);
  assert.match(runs[0].stderr, /fseft: backend wasm \(WebAssembly SIMD\/XNNPACK, one thread; requested\)/);
  assert.match(runs[1].stderr, /fseft: backend wasm \(WebAssembly SIMD\/XNNPACK, 2 threads; requested\)/);
  const values = runs.map((run) => JSON.parse(/values (.*)/.exec(run.stdout)![1]) as number[]);
  assert.ok(values[0].length > 100);
  values[0].forEach((v, i) => assert.ok(Math.abs(v - values[1][i]) <= 1e-4 * Math.max(1, Math.abs(v)), `value ${i}: ${v} vs ${values[1][i]}`));
});

test('FSEFT_WASM_THREADS that is not a whole number is refused by name, also when no backend is named', () => {
  for (const preferred of ['wasm', '']) {
    const result = start(preferred, { FSEFT_WASM_THREADS: 'many' });
    assert.equal(result.status, 3, result.stdout);
    assert.match(result.stdout, /^error: FSEFT_WASM_THREADS must be a whole number of at least 1, got 'many'/);
  }
});

test('wasm out of memory is an error that says so, on one thread and on two, and the backend goes on working', () => {
  // 4.6 GB at once (its size wraps around 32 bits), then 1.2 GB while 3.2 GB are held.
  const exhaust = `const attempt = (shape) => { try { const t = tf.zeros(shape); console.log('allocated ' + shape); return t; } catch (e) { console.log('refused: ' + e.name + ': ' + e.message); } };
    attempt([1100, 1024, 1024]);
    const held = attempt([1000, 1000, 800]);
    attempt([1000, 1000, 300]);
    held.dispose();
    console.log('after ' + (await tf.add(tf.ones([3]), 1).data()).join());`;
  for (const threads of ['1', '2']) {
    const run = start('wasm', { FSEFT_WASM_THREADS: threads }, exhaust);
    assert.equal(run.status, 0, `status ${run.status} (null: the process hung): ${run.stdout} ${run.stderr}`);
    const refusals = run.stdout.split('\n').filter((line) => line.startsWith('refused: '));
    assert.equal(refusals.length, 2, run.stdout);
    assert.match(refusals[0], /^refused: FseftError: the WebAssembly backend is out of memory: a tensor of 4400 MiB does not fit in its 4 GiB heap/);
    assert.match(refusals[1], /a tensor of 1144 MiB does not fit in its 4 GiB heap \(3052 MiB held by tensors/);
    assert.match(run.stdout, /after 2,2,2/);
  }
});

/** A module preloaded with -r: worker threads inherit it, so it runs first in each wasm pool worker. */
function workerFault(body: string): string {
  const file = path.join(tempDir('fseft-worker-fault-'), 'fault.js');
  fs.writeFileSync(file, `if (!require('node:worker_threads').isMainThread) { ${body} }`);
  return file;
}

const SMALL_CONV = `const x = tf.randomNormal([2, 16, 16, 8], 0, 1, 'float32', 1); const w = tf.randomNormal([3, 3, 8, 8], 0, 1, 'float32', 2);
  console.log('sum ' + (await tf.conv2d(x, w, 1, 'same').sum().data())[0].toFixed(3));`;

test('a wasm pool worker that fails while loading: the start falls back to one thread at once and says why', () => {
  const fault = workerFault("throw new Error('injected worker fault');");
  const result = start('', { FSEFT_WASM_THREADS: '2' }, SMALL_CONV, ['-r', fault]);
  assert.equal(result.status, 0, `status ${result.status} (null: hung): ${result.stderr}`);
  assert.match(result.stdout, /chose wasm/);
  assert.match(result.stderr, /fseft: backend wasm \(WebAssembly SIMD\/XNNPACK, one thread: the 2-thread start failed: a pool worker failed while loading \(injected worker fault\)/);
  assert.match(result.stdout, /sum -?\d/);
});

test('a wasm pool worker that never loads: the start gives up after FSEFT_WASM_START_TIMEOUT_S, runs on one thread, and Node exits', () => {
  const fault = workerFault('Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);');
  const result = start('wasm', { FSEFT_WASM_THREADS: '2', FSEFT_WASM_START_TIMEOUT_S: '3' }, SMALL_CONV, ['-r', fault]);
  assert.equal(result.status, 0, `status ${result.status} (null: hung): ${result.stderr}`);
  assert.match(result.stderr, /fseft: backend wasm \(WebAssembly SIMD\/XNNPACK, one thread: the 2-thread start did not finish within 3 s \(FSEFT_WASM_START_TIMEOUT_S\); requested\)/);
  // The same numbers as an undisturbed single-threaded run.
  const plain = start('wasm', { FSEFT_WASM_THREADS: '1' }, SMALL_CONV);
  assert.equal(/sum (.*)/.exec(result.stdout)?.[1], /sum (.*)/.exec(plain.stdout)?.[1]);
});

test('when no wasm start finishes in time the automatic choice falls back to cpu with one line naming both attempts', () => {
  const result = start('', { FSEFT_WASM_THREADS: '2', FSEFT_WASM_START_TIMEOUT_S: '0.001' }, SMALL_CONV);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /chose cpu/);
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('fseft: backend'));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /wasm: one thread: the 2-thread start did not finish within 0\.001 s \(FSEFT_WASM_START_TIMEOUT_S\); the single-threaded start did not finish within 0\.001 s/);
  const refused = start('', { FSEFT_WASM_START_TIMEOUT_S: 'soon' });
  assert.match(refused.stdout, /^error: FSEFT_WASM_START_TIMEOUT_S must be a positive number of seconds, got 'soon'/);
});

test('stress: parallel processes on a loaded machine, each starting threaded wasm and running many kernels, all finish and exit', async () => {
  // Two busy loops load both cores while six processes start the backend and run 200 kernels each.
  const burners = [0, 1].map(() => spawn(process.execPath, ['-e', 'const end = Date.now() + 120000; while (Date.now() < end) {}'], { stdio: 'ignore' }));
  try {
    const kernels = `let t = tf.ones([64, 64]); for (let i = 0; i < 200; i++) { const n = tf.tidy(() => tf.matMul(t, t).div(64)); t.dispose(); t = n; }
      console.log('value ' + (await t.data())[0]);`;
    const runs = await Promise.all(Array.from({ length: 6 }, () => startAsync('wasm', { FSEFT_WASM_THREADS: '2' }, kernels)));
    for (const run of runs) {
      assert.equal(run.status, 0, `status ${run.status} (null: hung past 120 s): ${run.stderr}`);
      assert.match(run.stderr, /fseft: backend wasm \(WebAssembly SIMD\/XNNPACK, (2 threads|one thread: the 2-thread start [^;]*); requested\)/);
      assert.match(run.stdout, /value 1\b/);
    }
  } finally {
    for (const burner of burners) burner.kill();
  }
});
