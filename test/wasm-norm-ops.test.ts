import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { addLeakyRelu, instanceNorm } from '../lib/networks/ops';
import { addLeakyReluFused, leakyReluGradientFused, simdNormActive, standardizeRowsFused, standardizeRowsGradientFused } from '../lib/networks/wasm-norm-ops';
import { passTuning, rowPoolOf } from '../lib/networks/wasm-row-pool';
import { withScratch } from '../lib/networks/wasm-simd';
import { WasmBackendInternals } from '../lib/networks/wasm-views';
import { Rng } from '../lib/util/random';

const values = (n: number, seed: number, mean = 0, std = 1) => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => mean + std * rng.normal());
};

const worst = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]));
  return w;
};

/** lrelu((x - mean) / sqrt(var + eps)) per column and its gradient for upstream dz, by tfjs autodiff on cpu. */
async function reference(x: Float32Array, dz: Float32Array, shape: [number, number], slope: number): Promise<{ z: Float32Array; dx: Float32Array; rstd: Float32Array }> {
  await switchBackend('cpu');
  const f = (t: tf.Tensor) => {
    const { mean, variance } = tf.moments(t, 0);
    return tf.leakyRelu(tf.div(tf.sub(t, mean), tf.sqrt(tf.add(variance, 1e-5))), slope);
  };
  const input = tf.tensor2d(x, shape);
  const upstream = tf.tensor2d(dz, shape);
  const z = f(input);
  const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), upstream)))(input);
  const rstd = tf.tidy(() => tf.rsqrt(tf.add(tf.moments(input, 0).variance, 1e-5)));
  const out = { z: (await z.data()) as Float32Array, dx: (await dx.data()) as Float32Array, rstd: (await rstd.data()) as Float32Array };
  tf.dispose([input, upstream, z, dx, rstd]);
  return out;
}

test('fused instance norm kernels (wasm): values, 1/std and gradient equal tfjs autodiff on cpu, for slope 1 (plain norm), 0.01 and 0.2, in JavaScript (7 columns) and SIMD (8 columns)', async () => {
  // Column offsets up to 100 with std 0.1 probe the float64 E[x^2] - E[x]^2; 3001 rows are not a
  // multiple of the SIMD statistics' 64-row blocks.
  for (const shape of [[3000, 7], [3001, 8]] as Array<[number, number]>) {
    const columns = shape[1];
    const rng = new Rng(3);
    const offsets = Array.from({ length: columns }, (_, c) => (c === 6 ? 100 : rng.normal() * 5));
    const scales = Array.from({ length: columns }, (_, c) => (c === 6 ? 0.1 : 0.5 + Math.abs(rng.normal())));
    const raw = values(shape[0] * columns, 4);
    const x = raw.map((v, i) => offsets[i % columns] + scales[i % columns] * v);
    const dz = values(x.length, 5);
    for (const slope of [1, 0.01, 0.2]) {
      const want = await reference(x, dz, shape, slope);
      await switchBackend('wasm');
      assert.equal(simdNormActive(columns), columns % 4 === 0, `${columns} columns: SIMD passes ${columns % 4 === 0 ? 'expected' : 'not expected'}`);
      const before = tf.memory().numTensors;
      const input = tf.tensor2d(x, shape);
      const upstream = tf.tensor2d(dz, shape);
      const { z, rstd } = standardizeRowsFused(input, slope, 1e-5);
      const dx = standardizeRowsGradientFused(upstream, z, rstd, slope);
      const label = `${columns} columns, slope ${slope}`;
      assert.ok(worst(await z.data(), want.z) < 2e-5, `${label}: values differ by ${worst(await z.data(), want.z)}`);
      assert.ok(worst(await rstd.data(), want.rstd) / Math.max(...want.rstd) < 1e-4, `${label}: 1/std differs`);
      assert.ok(worst(await dx.data(), want.dx) < 1e-4, `${label}: gradient differs by ${worst(await dx.data(), want.dx)}`);
      assert.deepEqual(Array.from(await input.data()), Array.from(x), `${label}: the input is left unchanged`);
      tf.dispose([input, upstream, z, rstd, dx]);
      assert.equal(tf.memory().numTensors, before, `${label}: tensors left behind`);
    }
  }
});

test('fused norm passes shared between the row pool\'s threads: values, 1/std and gradient as tfjs autodiff and as one thread, leaky passes too', async (t) => {
  await switchBackend('wasm');
  if (!rowPoolOf(tf.backend() as unknown as WasmBackendInternals)) {
    t.skip('no row pool here (one core, or a tfjs-wasm build without threads): the passes run on one thread');
    return;
  }
  // Above the pool's 65,536-float threshold; 20,001 rows split unevenly and are not a multiple of
  // the statistics' 64-row blocks. Columns at an offset of 50 probe the float64 sums.
  const shape: [number, number] = [20001, 12];
  const x = values(shape[0] * shape[1], 21).map((v, i) => (i % 12 === 5 ? 50 + 0.2 * v : v));
  const dz = values(x.length, 22);
  const slope = 0.01;
  const want = await reference(x, dz, shape, slope);
  await switchBackend('wasm');
  const run = async (threads: boolean) => {
    passTuning.threads = threads;
    try {
      const [input, upstream] = [tf.tensor2d(x, shape), tf.tensor2d(dz, shape)];
      const { z, rstd } = standardizeRowsFused(input, slope, 1e-5);
      const dx = standardizeRowsGradientFused(upstream, z, rstd, slope);
      const sum = addLeakyReluFused(input, upstream, slope);
      const leaky = leakyReluGradientFused(upstream, input, slope);
      const out = { z: await z.data(), rstd: await rstd.data(), dx: await dx.data(), sum: await sum.data(), leaky: await leaky.data() };
      tf.dispose([input, upstream, z, rstd, dx, sum, leaky]);
      return out;
    } finally {
      passTuning.threads = true;
    }
  };
  const before = tf.memory().numTensors;
  const pooled = await run(true);
  const single = await run(false);
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  assert.ok(worst(pooled.z, want.z) < 2e-5, `values differ by ${worst(pooled.z, want.z)}`);
  assert.ok(worst(pooled.rstd, want.rstd) / Math.max(...want.rstd) < 1e-4, '1/std differs');
  assert.ok(worst(pooled.dx, want.dx) < 1e-4, `gradient differs by ${worst(pooled.dx, want.dx)}`);
  for (const key of ['z', 'rstd', 'dx'] as const) assert.ok(worst(pooled[key], single[key]) < 1e-6, `${key}: pooled and one thread differ by ${worst(pooled[key], single[key])}`);
  const sumWant = Float32Array.from(x, (v, i) => (v + dz[i] > 0 ? v + dz[i] : slope * (v + dz[i])));
  const leakyWant = Float32Array.from(dz, (d, i) => (x[i] > 0 ? d : slope * d));
  assert.ok(worst(pooled.sum, sumWant) < 1e-5, `lrelu(a + b) differs by ${worst(pooled.sum, sumWant)}`);
  assert.ok(worst(pooled.leaky, leakyWant) < 1e-6, `leaky gradient differs by ${worst(pooled.leaky, leakyWant)}`);
  assert.deepEqual(Array.from(pooled.sum), Array.from(single.sum), 'elementwise passes: the same floats on one thread');
});

test("fused leaky ReLU gradient (wasm): where(z > 0, dy, slope dy), zero output counting as negative, as tfjs's", async () => {
  await switchBackend('wasm');
  // 11 values: two SIMD vectors and a tail of 3.
  const z = tf.tensor1d([-2, -0.5, 0, 0.25, 3, -1e-3, 7, -4, 0, 2, -3]);
  const dy = tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  const got = leakyReluGradientFused(dy, z, 0.01);
  const want = [0.01, 0.02, 0.03, 4, 5, 0.06, 7, 0.08, 0.09, 10, 0.11];
  assert.ok(worst(await got.data(), want) < 1e-7, `${await got.data()}`);
  tf.dispose([z, dy, got]);
});

test('addLeakyRelu (wasm, one pass): value and both gradients equal tfjs leakyRelu(a + b) on cpu, SIMD and tail, no tensor left behind', async () => {
  // 60 values (SIMD only), 42 (a tail of 2) and 9 (two vectors and a tail of 1)
  for (const shape of [[4, 5, 3], [2, 3, 7], [3, 3]]) {
    const size = shape.reduce((a, b) => a * b, 1);
    const [a, b, r] = [values(size, 11), values(size, 12), values(size, 13)];
    const run = async (fn: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor) => {
      const [ta, tb, tr] = [a, b, r].map((v) => tf.tensor(v, shape));
      const y = fn(ta, tb);
      const [ga, gb] = tf.grads((x: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(fn(x, z), tr)))([ta, tb]);
      const out = { y: (await y.data()) as Float32Array, ga: (await ga.data()) as Float32Array, gb: (await gb.data()) as Float32Array };
      tf.dispose([ta, tb, tr, y, ga, gb]);
      return out;
    };
    await switchBackend('cpu');
    const want = await run((x, z) => tf.leakyRelu(tf.add(x, z), 0.01));
    await switchBackend('wasm');
    const before = tf.memory().numTensors;
    for (let repeat = 0; repeat < 2; repeat++) {
      const got = await run((x, z) => addLeakyRelu(x, z, 0.01));
      for (const key of ['y', 'ga', 'gb'] as const) assert.ok(worst(got[key], want[key]) < 1e-6, `${shape} ${key}: ${worst(got[key], want[key])}`);
    }
    assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
    const info = await tf.profile(() => addLeakyRelu(tf.tensor(a, shape), tf.tensor(b, shape), 0.01));
    assert.deepEqual(info.kernels.map((k) => k.name).filter((n) => !['Reshape', ''].includes(n)), ['FseftAddLeakyRelu'], 'one kernel, no Add or PReLU');
    tf.dispose(info.result as tf.Tensor);
  }
});

test('instance norm on wasm runs as the fused kernels: no other kernel makes a volume, forward or backward', async () => {
  await switchBackend('wasm');
  const shape: [number, number, number, number, number] = [1, 8, 8, 8, 4];
  const size = shape.reduce((a, b) => a * b, 1);
  const x = tf.tensor5d(values(size, 6), shape);
  const r = tf.tensor5d(values(size, 7), shape);
  // Kernels that make a volume-sized output, less reshapes and clones (which share buffers on wasm)
  // and the wrapper entries of custom-gradient ops (their inner kernels are listed themselves).
  const volumeKernels = (info: Awaited<ReturnType<typeof tf.profile>>) => info.kernels.filter((k) => !['Reshape', 'Identity', '', 'forward'].includes(k.name) && k.outputShapes.some((s) => s.reduce((a, b) => a * b, 1) === size)).map((k) => k.name);
  for (const slope of [undefined, 0.01]) {
    const forward = await tf.profile(() => instanceNorm(x, slope));
    assert.deepEqual(volumeKernels(forward), ['FseftStandardizeRows'], `slope ${slope}: forward`);
    tf.dispose(forward.result as tf.Tensor);
    // The gradient of sum(norm(x) r): Multiply (forward and its gradient) and Cast (the sum's
    // gradient) around one norm and one norm gradient.
    const backward = await tf.profile(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(instanceNorm(t as tf.Tensor5D, slope), r)))(x));
    const norms = volumeKernels(backward).filter((name) => !['Multiply', 'Cast'].includes(name));
    assert.deepEqual(norms, ['FseftStandardizeRows', 'FseftStandardizeRowsGradient'], `slope ${slope}: backward ran ${volumeKernels(backward)}`);
    tf.dispose(backward.result as tf.Tensor);
  }
  tf.dispose([x, r]);
});

test('fused instance norm refuses a slope of 0: its gradient recovers the input from the output', async () => {
  await switchBackend('wasm');
  const x = tf.tensor2d([1, 2, 3, 4], [2, 2]);
  assert.throws(() => standardizeRowsFused(x, 0, 1e-5), /slope 0 must be positive/);
  x.dispose();
});

test('heap scratch past 2 GiB: the address of malloc\'s negative i32 result is read unsigned, 16-byte aligned, and freed', () => {
  const freed: number[] = [];
  const fake = { wasm: { _malloc: () => -1724569992, _free: (p: number) => freed.push(p) } } as unknown as WasmBackendInternals;
  const address = withScratch(fake, 64, (a) => a);
  assert.equal(address, 2570397312, 'the unsigned address, rounded up to 16 bytes');
  assert.equal(address % 16, 0);
  assert.deepEqual(freed, [2570397304]);
});
