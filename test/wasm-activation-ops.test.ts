import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { gelu } from '../lib/networks/ops';
import { fusedGeluAvailable } from '../lib/networks/wasm-activation-ops';
import { passTuning, rowPoolOf } from '../lib/networks/wasm-row-pool';
import { WasmBackendInternals } from '../lib/networks/wasm-views';

/** erfc(u) for u >= 0 in float64: its Taylor series below 3, Laplace's continued fraction above. */
function erfc(u: number): number {
  if (u < 3) {
    let term = u;
    let sum = u;
    for (let n = 1; n < 80; n++) {
      term *= (-u * u) / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  let fraction = u;
  for (let k = 60; k >= 1; k--) fraction = u + k / 2 / fraction;
  return Math.exp(-u * u) / Math.sqrt(Math.PI) / fraction;
}

/** The standard normal CDF, with its negative tail to full relative precision. */
const phi = (x: number) => (x >= 0 ? 1 - erfc(x / Math.SQRT2) / 2 : erfc(-x / Math.SQRT2) / 2);
const geluExact = (x: number) => x * phi(x);
const geluSlope = (x: number) => phi(x) + (x * Math.exp((-x * x) / 2)) / Math.sqrt(2 * Math.PI);

/** x from -12 to 12 (n values) with its gelu and summed-gelu gradient on the current backend. */
async function geluOf(xs: Float32Array): Promise<{ y: Float32Array; dx: Float32Array }> {
  const x = tf.tensor1d(xs);
  const y = gelu(x);
  const dx = tf.grad((t: tf.Tensor) => tf.sum(gelu(t)))(x);
  const out = { y: (await y.data()) as Float32Array, dx: (await dx.data()) as Float32Array };
  tf.dispose([x, y, dx]);
  return out;
}

const grid = (n: number) => Float32Array.from({ length: n }, (_, i) => -12 + (24 * i) / (n - 1));

test('GELU on wasm (one SIMD pass each way): value and gradient as the exact erf form, the negative tail to 2 %, tails of 1-3 values, no tensor left behind', async () => {
  await switchBackend('wasm');
  const probe = tf.zeros([4]);
  assert.ok(fusedGeluAvailable(probe), 'the fused GELU serves float32 on wasm');
  probe.dispose();
  const before = tf.memory().numTensors;
  for (const n of [200_003, 4001, 6, 3]) {
    const xs = grid(n);
    const { y, dx } = await geluOf(xs);
    let value = 0;
    let slope = 0;
    let tail = 0;
    for (let i = 0; i < n; i++) {
      const x = xs[i];
      value = Math.max(value, Math.abs(y[i] - geluExact(x)) / Math.max(1, Math.abs(x)));
      slope = Math.max(slope, Math.abs(dx[i] - geluSlope(x)));
      if (x < -3 && x > -9) tail = Math.max(tail, Math.abs(y[i] - geluExact(x)) / Math.abs(geluExact(x)));
    }
    assert.ok(value < 3e-7, `${n} values: GELU differs by ${value} (relative to max(1, |x|))`);
    assert.ok(slope < 5e-7, `${n} values: its gradient differs by ${slope}`);
    assert.ok(tail < 0.02, `${n} values: the negative tail's relative error is ${tail}`);
  }
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  const x = tf.tensor1d(grid(1001));
  const info = await tf.profile(() => gelu(x));
  assert.deepEqual(info.kernels.map((k) => k.name).filter((name) => name !== ''), ['FseftGelu'], 'one kernel: no Multiply, Erf or Add');
  tf.dispose([x, info.result as tf.Tensor]);
});

test("GELU on wasm equals tfjs's erf composite on cpu, and the row pool's shares give the same floats as one thread", async (t) => {
  const xs = grid(100_001);
  await switchBackend('cpu');
  const cpu = await geluOf(xs);
  await switchBackend('wasm');
  const wasm = await geluOf(xs);
  let worst = 0;
  for (let i = 0; i < xs.length; i++) worst = Math.max(worst, Math.abs(wasm.y[i] - cpu.y[i]) / Math.max(1, Math.abs(xs[i])));
  assert.ok(worst < 4e-7, `wasm and cpu GELU differ by ${worst}`);
  if (!rowPoolOf(tf.backend() as unknown as WasmBackendInternals)) {
    t.skip('no row pool here (one core, or a tfjs-wasm build without threads)');
    return;
  }
  passTuning.threads = false;
  try {
    const single = await geluOf(xs);
    assert.deepEqual(Array.from(single.y), Array.from(wasm.y), 'values: pooled and one thread');
    assert.deepEqual(Array.from(single.dx), Array.from(wasm.dx), 'gradients: pooled and one thread');
  } finally {
    passTuning.threads = true;
  }
});
