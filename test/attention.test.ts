import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { windowAttention } from '../lib/networks/attention';
import { softmaxBackward } from '../lib/networks/wasm-softmax';
import { Rng } from '../lib/util/random';

const random = (shape: number[], seed: number, scale = 1) => {
  const rng = new Rng(seed);
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * rng.normal()), shape);
};

/** The textbook composition that autodiff differentiates: what the fused op must equal. */
function reference(q: tf.Tensor3D, kT: tf.Tensor3D, v: tf.Tensor3D, bias: tf.Tensor4D, heads: number, mask?: tf.Tensor4D, keep?: tf.Tensor3D): tf.Tensor3D {
  const [wh, n] = q.shape;
  let scores = tf.add(tf.reshape(tf.matMul(q, kT), [wh / heads, heads, n, n]), bias);
  if (mask) scores = tf.add(scores, mask);
  let p = tf.softmax(tf.reshape(scores, [wh, n, n])) as tf.Tensor3D;
  if (keep) p = tf.mul(p, keep);
  return tf.matMul(p, v);
}

interface Case {
  windows: number;
  heads: number;
  tokens: number;
  dim: number;
  chunkWindows: number;
  masked: boolean;
}

/** Values and gradients (q, kT, v, bias) of sum(attention * r) for the fused op and the reference. */
async function compare({ windows, heads, tokens, dim, chunkWindows, masked }: Case, dropout?: { rate: number; seed: number }) {
  const wh = windows * heads;
  const [q, kT, v, r] = [[wh, tokens, dim], [wh, dim, tokens], [wh, tokens, dim], [wh, tokens, dim]].map((shape, i) => random(shape, 10 + i)) as tf.Tensor3D[];
  const bias = random([1, heads, tokens, tokens], 20) as tf.Tensor4D;
  // A shifted-window style mask: 0 or -100 per pair.
  const mask = masked ? (tf.tidy(() => tf.mul(tf.cast(tf.greater(random([windows, 1, tokens, tokens], 30), 0.5), 'float32'), -100)) as tf.Tensor4D) : undefined;
  // The dropout multipliers the fused op draws: chunk i uses seed + i on its [chunk * heads, N, N] block.
  let keep: tf.Tensor3D | undefined;
  if (dropout) {
    const blocks: tf.Tensor[] = [];
    for (let start = 0, index = 0; start < windows; start += chunkWindows, index++) {
      const count = Math.min(chunkWindows, windows - start);
      blocks.push(tf.dropout(tf.ones([count * heads, tokens, tokens]), dropout.rate, undefined, dropout.seed + index));
    }
    keep = tf.concat(blocks, 0) as tf.Tensor3D;
    tf.dispose(blocks);
  }
  const run = async (f: (q: tf.Tensor3D, kT: tf.Tensor3D, v: tf.Tensor3D, bias: tf.Tensor4D) => tf.Tensor3D) => {
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => tf.sum(tf.mul(f(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, d as tf.Tensor4D), r)))([q, kT, v, bias]);
    const y = f(q, kT, v, bias);
    const out = [await y.data(), ...(await Promise.all(grads.map((g) => g.data())))];
    tf.dispose([y, ...grads]);
    return out;
  };
  const windowsOfMask = mask && ((start: number, count: number) => tf.slice(mask, [start, 0, 0, 0], [count, 1, tokens, tokens]) as tf.Tensor4D);
  const fused = await run((a, b, c, d) => windowAttention(a, b, c, d, { heads, mask: windowsOfMask, chunkWindows, dropout }));
  const expected = await run((a, b, c, d) => reference(a, b, c, d, heads, mask, keep));
  tf.dispose([q, kT, v, r, bias, ...(mask ? [mask] : []), ...(keep ? [keep] : [])]);
  return { fused, expected };
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string): void {
  assert.equal(actual.length, expected.length, label);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < actual.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  assert.ok(worst <= 1e-4 * Math.max(1, scale), `${label}: max difference ${worst} (largest value ${scale})`);
}

const NAMES = ['output', 'dq', 'dkT', 'dv', 'dbias'];

for (const backend of ['cpu', 'wasm'] as const) {
  test(`fused window attention equals autodiff of the plain composition on ${backend}: values and the four gradients, chunked, masked`, async () => {
    await switchBackend(backend);
    const cases: Case[] = [
      { windows: 1, heads: 1, tokens: 5, dim: 3, chunkWindows: 1, masked: false },
      { windows: 7, heads: 3, tokens: 8, dim: 4, chunkWindows: 3, masked: true },
      { windows: 4, heads: 2, tokens: 27, dim: 6, chunkWindows: 4, masked: true },
    ];
    for (const c of cases) {
      const { fused, expected } = await compare(c);
      NAMES.forEach((name, i) => assertClose(fused[i], expected[i], `${JSON.stringify(c)} ${name}`));
    }
  });
}

test('fused window attention with dropout replays the same masks in the backward pass', async () => {
  await switchBackend('wasm');
  const { fused, expected } = await compare({ windows: 5, heads: 2, tokens: 8, dim: 4, chunkWindows: 2, masked: true }, { rate: 0.3, seed: 7 });
  NAMES.forEach((name, i) => assertClose(fused[i], expected[i], `dropout ${name}`));
  // Dropout is active: some probabilities were dropped, so the output differs from no dropout.
  const plain = await compare({ windows: 5, heads: 2, tokens: 8, dim: 4, chunkWindows: 2, masked: true });
  assert.ok(fused[0].some((value, i) => Math.abs(value - plain.fused[0][i]) > 1e-3));
});

test('fused window attention gradient matches finite differences', async () => {
  await switchBackend('cpu');
  const heads = 2;
  const tokens = 6;
  const dim = 3;
  const wh = 3 * heads;
  const inputs = [[wh, tokens, dim], [wh, dim, tokens], [wh, tokens, dim]].map((shape, i) => random(shape, 40 + i, 0.5)) as tf.Tensor3D[];
  const bias = random([1, heads, tokens, tokens], 44, 0.5) as tf.Tensor4D;
  const r = random([wh, tokens, dim], 45);
  const loss = (q: tf.Tensor, kT: tf.Tensor, v: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(windowAttention(q as tf.Tensor3D, kT as tf.Tensor3D, v as tf.Tensor3D, b as tf.Tensor4D, { heads, chunkWindows: 2 }), r)) as tf.Scalar;
  const all = [...inputs, bias];
  const grads = tf.grads(loss)(all);
  const eps = 1e-2;
  for (let which = 0; which < all.length; which++) {
    const base = await all[which].data();
    const analytic = await grads[which].data();
    for (const index of [0, 5, base.length - 1]) {
      const shifted = (delta: number) => {
        const values = Float32Array.from(base);
        values[index] += delta;
        const args = all.map((t, i) => (i === which ? tf.tensor(values, t.shape) : t));
        const value = loss(args[0], args[1], args[2], args[3]).dataSync()[0];
        if (args[which] !== all[which]) args[which].dispose();
        return value;
      };
      const numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
      assert.ok(Math.abs(numeric - analytic[index]) < 2e-3 * Math.max(1, Math.abs(numeric)), `input ${which} element ${index}: numeric ${numeric}, analytic ${analytic[index]}`);
    }
  }
  tf.dispose([...all, r, ...grads]);
});

test('fused window attention keeps the tensor count constant across training steps', async () => {
  await switchBackend('wasm');
  const heads = 3;
  const variables = [[6 * heads, 10, 4], [6 * heads, 4, 10], [6 * heads, 10, 4], [1, heads, 10, 10]].map((shape, i) => tf.variable(random(shape, 50 + i)));
  const step = () => {
    const { value, grads } = tf.variableGrads(
      () => tf.sum(windowAttention(variables[0] as tf.Tensor3D, variables[1] as tf.Tensor3D, variables[2] as tf.Tensor3D, variables[3] as tf.Tensor4D, { heads, chunkWindows: 4 })) as tf.Scalar,
      variables,
    );
    tf.dispose([value, ...Object.values(grads)]);
  };
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) step();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose(variables);
});

test("softmax's backward pass on wasm (one SIMD pass per row) equals P (dP - rowsum(dP P)) on cpu, rows of 343, 8 and 3", async () => {
  for (const shape of [[3, 7, 343], [2, 5, 8], [2, 3, 3]]) {
    const [p, dp] = [tf.softmax(random(shape, 21, 3)), random(shape, 22)];
    const values = [await p.data(), await dp.data()];
    tf.dispose([p, dp]);
    const run = async () => {
      const [pt, dpt] = values.map((v) => tf.tensor(v, shape));
      const out = softmaxBackward(pt, dpt);
      const data = await out.data();
      tf.dispose([pt, dpt, out]);
      return data;
    };
    await switchBackend('cpu');
    const want = await run();
    await switchBackend('wasm');
    const before = tf.memory().numTensors;
    const got = await run();
    assert.equal(tf.memory().numTensors, before);
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    assert.ok(worst < 1e-6, `[${shape}]: max difference ${worst}`);
    assert.ok(want.some((v) => Math.abs(v) > 1e-3), 'a gradient that is not all zero');
  }
  assert.throws(() => softmaxBackward(tf.zeros([2, 3]), tf.zeros([3, 2])), /shapes \[2,3\] and \[3,2\] differ/);
});
