import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { batchMatMul, matMul2d, productTuning, smallSided } from '../lib/networks/matmul';
import { Rng } from '../lib/util/random';

const random = (shape: number[], seed: number) => {
  const rng = new Rng(seed);
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()), shape);
};

type Product = (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/** Values and gradients of sum(product(a, b) * r), for comparing one product with another. */
async function valueAndGrads(product: Product, a: tf.Tensor, b: tf.Tensor, r: tf.Tensor) {
  const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(product(x, y), r)))([a, b]);
  const y = product(a, b);
  const result = { y: await y.data(), ga: await ga.data(), gb: await gb.data() };
  tf.dispose([ga, gb, y]);
  return result;
}

function worstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/**
 * Runs `reference` on the cpu backend and `fast` on wasm with the same seeded operands a, b (and
 * the weights r of the loss) and checks values and both gradients.
 */
async function expectEqualToCpu(shapes: number[][], seed: number, reference: Product, fast: Product, label: string): Promise<void> {
  const values = await Promise.all(shapes.map((shape, i) => random(shape, seed + i).data()));
  const run = async (product: Product) => {
    const tensors = shapes.map((shape, i) => tf.tensor(values[i] as Float32Array, shape));
    const result = await valueAndGrads(product, tensors[0], tensors[1], tensors[2]);
    tf.dispose(tensors);
    return result;
  };
  await switchBackend('cpu');
  const expected = await run(reference);
  await switchBackend('wasm');
  const actual = await run(fast);
  for (const key of ['y', 'ga', 'gb'] as const) {
    const worst = worstDifference(expected[key], actual[key]);
    // Relative to the largest value: a gradient summed over 70,000 rows is in the hundreds.
    const scale = Array.from(expected[key]).reduce((top, v) => Math.max(top, Math.abs(v)), 1);
    assert.ok(worst < 1e-4 * scale, `${label} ${key}: max difference ${worst} (largest value ${scale})`);
  }
}

test('batchMatMul on wasm (SIMD for few rows or a short inner dimension, per-item XNNPACK views otherwise) equals tf.matMul on cpu, values and gradients', async () => {
  // [3, 4, 343, 343] and [2, 343, 16, 37]: window attention's shapes at F = 12 and 48 (4-row blocks
  // with 8-, 4- and 1-column parts, and rows left over); [5, 33, 17, 8] and [2, 40, 24, 37]: XNNPACK.
  // The SIMD products share their batch items with the row pool's helper threads (an odd batch
  // splits unevenly), or run on one thread.
  assert.ok(smallSided(4, 343) && smallSided(343, 16) && !smallSided(33, 17) && !smallSided(40, 24));
  for (const threads of [true, false]) {
    productTuning.threads = threads;
    try {
      for (const [batch, m, k, n] of [[1, 3, 4, 5], [7, 9, 2, 11], [5, 33, 17, 8], [3, 4, 343, 343], [2, 343, 16, 37], [2, 40, 24, 37]]) {
        await expectEqualToCpu(
          [[batch, m, k], [batch, k, n], [batch, m, n]],
          batch + 1,
          (x, y) => tf.matMul(x as tf.Tensor3D, y as tf.Tensor3D),
          (x, y) => batchMatMul(x as tf.Tensor3D, y as tf.Tensor3D),
          `[${batch}, ${m}, ${k}, ${n}], threads ${threads}`,
        );
      }
    } finally {
      productTuning.threads = true;
    }
  }
});

test('matMul2d on wasm equals tf.matMul on cpu, values and gradients, also for a tall operand whose a^T dy runs in chunks of rows', async () => {
  // 70,000 x 64: the weight gradient sums two chunks of 65,536 and 4,464 rows.
  for (const [m, k, n] of [[37, 19, 23], [70000, 64, 8]]) {
    await expectEqualToCpu(
      [[m, k], [k, n], [m, n]],
      41,
      (x, y) => tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D),
      (x, y) => matMul2d(x as tf.Tensor2D, y as tf.Tensor2D),
      `matMul2d ${m}x${k}x${n}`,
    );
  }
});

test('batchMatMul and matMul2d gradients match finite differences on wasm', async () => {
  await switchBackend('wasm');
  const cases: Array<{ name: string; shapes: number[][]; product: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor }> = [
    { name: 'batchMatMul', shapes: [[3, 4, 5], [3, 5, 2]], product: (x, y) => batchMatMul(x as tf.Tensor3D, y as tf.Tensor3D) },
    { name: 'matMul2d', shapes: [[4, 5], [5, 3]], product: (x, y) => matMul2d(x as tf.Tensor2D, y as tf.Tensor2D) },
  ];
  for (const { name, shapes, product } of cases) {
    const inputs = shapes.map((shape, i) => random(shape, 60 + i));
    // A loss that is not linear in either operand, so each gradient depends on both.
    const loss = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(product(x, y)));
    const analytic = await Promise.all(tf.grads(loss)(inputs).map((g) => g.data()));
    const eps = 1e-2;
    for (const operand of [0, 1]) {
      const base = await inputs[operand].data();
      for (const index of [0, Math.floor(base.length / 2), base.length - 1]) {
        const shifted = (delta: number) => {
          const values = Float32Array.from(base);
          values[index] += delta;
          const moved = inputs.map((t, i) => (i === operand ? tf.tensor(values, t.shape) : t));
          return loss(moved[0], moved[1]).dataSync()[0];
        };
        const numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
        const got = analytic[operand][index];
        assert.ok(Math.abs(numeric - got) <= 1e-2 * Math.max(1, Math.abs(numeric)), `${name} operand ${operand} [${index}]: numeric ${numeric} vs analytic ${got}`);
      }
    }
  }
});

test('batchMatMul leaves no tensors or XNNPACK views behind across repeated steps', async () => {
  await switchBackend('wasm');
  const a = random([6, 8, 5], 70);
  const b = random([6, 5, 7], 71);
  const step = () => {
    const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(batchMatMul(x as tf.Tensor3D, y as tf.Tensor3D)))([a, b]);
    tf.dispose([ga, gb]);
  };
  step();
  const before = tf.memory().numTensors;
  const backend = tf.backend() as unknown as { dataIdMap: { numDataIds(): number } };
  const dataIds = backend.dataIdMap.numDataIds();
  for (let i = 0; i < 5; i++) step();
  assert.equal(tf.memory().numTensors, before);
  assert.equal(backend.dataIdMap.numDataIds(), dataIds);
});

test('batchMatMul refuses shapes that do not multiply', async () => {
  await switchBackend('wasm');
  assert.throws(() => batchMatMul(tf.zeros([2, 3, 4]) as tf.Tensor3D, tf.zeros([2, 5, 6]) as tf.Tensor3D), /batchMatMul: shapes \[2,3,4\] and \[2,5,6\] do not multiply/);
});
