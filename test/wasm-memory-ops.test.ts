import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { addDepthNeighboursInPlace, depthInward, gatherRowsValue, shiftedChannelsFirst, sliceLeading, sumRows, zeros } from '../lib/networks/wasm-memory-ops';
import { Rng } from '../lib/util/random';

const values = (n: number, seed: number) => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
};

/**
 * Runs `op` on the cpu backend (tfjs's own ops) and on wasm (the kit's kernels) with the same
 * inputs, and checks that the results agree, that the inputs are left unchanged and that no
 * tensor is left behind.
 */
async function sameOnBothBackends(label: string, inputs: Array<{ data: Float32Array | Int32Array; shape: number[] }>, op: (...xs: tf.Tensor[]) => tf.Tensor, tolerance = 0): Promise<void> {
  const results: Float32Array[] = [];
  for (const backend of ['cpu', 'wasm'] as const) {
    await switchBackend(backend);
    const tensors = inputs.map(({ data, shape }) => tf.tensor(data, shape, data instanceof Int32Array ? 'int32' : 'float32'));
    const before = tf.memory().numTensors;
    const y = op(...tensors);
    results.push((await y.data()) as Float32Array);
    y.dispose();
    assert.equal(tf.memory().numTensors, before, `${label} on ${backend}: tensors left behind`);
    for (let i = 0; i < inputs.length; i++) assert.deepEqual(Array.from(await tensors[i].data()), Array.from(inputs[i].data), `${label} on ${backend}: input ${i} changed`);
    tf.dispose(tensors);
  }
  assert.equal(results[0].length, results[1].length, label);
  let worst = 0;
  for (let i = 0; i < results[0].length; i++) worst = Math.max(worst, Math.abs(results[0][i] - results[1][i]));
  assert.ok(worst <= tolerance, `${label}: wasm and cpu differ by ${worst}`);
}

test('gatherRowsValue: rows by index with runs, repeats and zero rows (index R) equal tf.gather on cpu', async () => {
  const rows = 9;
  const columns = 5;
  const index = Int32Array.from([0, 1, 2, 3, 9, 9, 4, 4, 8, 7, 6, 2, 3, 9, 5]);
  await sameOnBothBackends('gather', [{ data: values(rows * columns, 1), shape: [rows, columns] }, { data: index, shape: [index.length] }], (x, i) => gatherRowsValue(x as tf.Tensor2D, i as tf.Tensor1D));
});

test('sliceLeading: a block of the leading axis equals tf.slice on cpu', async () => {
  for (const [start, count] of [[0, 1], [1, 3], [2, 2], [0, 4]]) {
    await sameOnBothBackends(`slice ${start}+${count}`, [{ data: values(4 * 3 * 2, 2), shape: [4, 3, 2] }], (x) => sliceLeading(x, start, count));
  }
});

test('addDepthNeighboursInPlace: center + before shifted forward + after shifted back, into the center, equals pad-and-slice', async () => {
  await switchBackend('wasm');
  for (const depth of [1, 2, 5]) {
    const shape = [depth, 3, 2, 4];
    const [c, b, a] = [1, 2, 3].map((seed) => tf.tensor(values(depth * 24, seed), shape));
    const expected = tf.tidy(() => {
      if (depth === 1) return tf.mul(c, 1);
      const zeros = shape.slice(1).map(() => [0, 0] as [number, number]);
      return tf.addN([c, tf.pad(tf.slice(b, 0, depth - 1), [[1, 0], ...zeros]), tf.pad(tf.slice(a, 1, depth - 1), [[0, 1], ...zeros])]);
    });
    const before = [await b.data(), await a.data()];
    addDepthNeighboursInPlace(c, b, a);
    const got = await c.data();
    const want = await expected.data();
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `depth ${depth}: element ${i} is ${got[i]}, expected ${want[i]}`);
    assert.deepEqual([await b.data(), await a.data()], before, 'the neighbours are left unchanged');
    tf.dispose([c, b, a, expected]);
  }
  // By hand: c[d] += b[d - 1] + a[d + 1].
  const c = tf.tensor1d([1, 2, 3]);
  addDepthNeighboursInPlace(c, tf.tensor1d([10, 20, 30]), tf.tensor1d([100, 200, 300]));
  assert.deepEqual(Array.from(await c.data()), [1 + 200, 2 + 10 + 300, 3 + 20]);
  // A center that shares its buffer (a clone) is refused: writing it would change the other tensor.
  const shared = tf.tensor1d([1, 2]);
  const alias = tf.clone(shared);
  assert.throws(() => addDepthNeighboursInPlace(shared, tf.tensor1d([0, 0]), tf.tensor1d([0, 0])), /shared/);
  tf.dispose([shared, alias]);
});

test('sumRows: few rows (running sum) and many rows (grouped, down to a remainder) equal tf.sum over axis 0 on cpu', async () => {
  // 64: one running sum; 130 = 26 x 5 and 4096 = 64 x 64: grouped; 131 (prime): tf.sum.
  for (const [rows, columns] of [[1, 5], [2, 7], [45, 1001], [64, 3], [130, 9], [131, 4], [4096, 12]]) {
    await sameOnBothBackends(`[${rows}, ${columns}]`, [{ data: values(rows * columns, rows), shape: [rows, columns] }], (x) => sumRows(x as tf.Tensor2D), 1e-3);
  }
});

test('on wasm a clone (what backprop saves) shares its buffer instead of copying it, and stays independent of later assigns and disposals', async () => {
  await switchBackend('wasm');
  const backend = tf.backend() as unknown as { dataIdMap: { get(id: object): { memoryOffset: number } } };
  const x = tf.tensor([1, 2, 3, 4]);
  const copy = tf.clone(x);
  assert.equal(backend.dataIdMap.get(copy.dataId).memoryOffset, backend.dataIdMap.get(x.dataId).memoryOffset, 'the clone points at the same buffer');
  const variable = tf.variable(copy);
  variable.assign(tf.tensor([9, 9, 9, 9]));
  x.dispose();
  assert.deepEqual(Array.from(await copy.data()), [1, 2, 3, 4], 'the clone keeps its values after the original is disposed and a variable made from it is assigned');
  // Backprop through a saved input: the gradient of sum(x^2) is 2x.
  const input = tf.tensor([1, -2, 3]);
  assert.deepEqual(Array.from(await tf.grad((t: tf.Tensor) => tf.sum(tf.square(t)))(input).data()), [2, -4, 6]);
  tf.dispose([copy, variable, input]);
});

test("shiftedChannelsFirst: the three depth-shifted, padded, channels-first copies equal tfjs's pad and transpose on cpu", async () => {
  const [depth, h, w, c] = [4, 3, 5, 2];
  for (const [start, count] of [[0, 1], [0, 4], [1, 2], [3, 1], [2, 2]]) {
    await sameOnBothBackends(`shifted ${start}+${count}`, [{ data: values(depth * h * w * c, 7), shape: [depth, h, w, c] }], (x) => shiftedChannelsFirst(x as tf.Tensor4D, start, count));
  }
  // By hand: out[kd C + ch, y + 1, x + 1, j] = x[start + j + kd - 1, y, x, ch], zero outside the volume.
  await switchBackend('wasm');
  const x = tf.tensor4d(Float32Array.from({ length: depth * h * w * c }, (_, i) => i + 1), [depth, h, w, c]);
  const out = shiftedChannelsFirst(x, 0, 2);
  assert.deepEqual(out.shape, [3 * c, h + 2, w + 2, 2]);
  const at = (kd: number, ch: number, y: number, xx: number, j: number) => out.arraySync()[kd * c + ch][y][xx][j];
  const voxel = (d: number, y: number, xx: number, ch: number) => ((d * h + y) * w + xx) * c + ch + 1;
  assert.equal(at(0, 1, 2, 3, 0), 0, 'slice -1 is outside the volume');
  assert.equal(at(0, 1, 2, 3, 1), voxel(0, 1, 2, 1));
  assert.equal(at(2, 0, 3, 5, 1), voxel(2, 2, 4, 0));
  assert.equal(at(1, 0, 0, 3, 0), 0, 'the border is zero');
  tf.dispose([x, out]);
});

test('depthInward: slices moved inside ([H, W, count, C]) equal tf.transpose on cpu', async () => {
  for (const [start, count] of [[0, 1], [0, 4], [1, 2], [3, 1]]) {
    await sameOnBothBackends(`inward ${start}+${count}`, [{ data: values(4 * 3 * 5 * 2, 8), shape: [4, 3, 5, 2] }], (x) => depthInward(x as tf.Tensor4D, start, count));
  }
});

test('zeros: filled in the heap, zero even where a disposed tensor left values', async () => {
  await switchBackend('wasm');
  for (let i = 0; i < 3; i++) tf.tensor(values(4096, 9 + i), [16, 256]).dispose();
  const z = zeros([16, 256]);
  assert.deepEqual(z.shape, [16, 256]);
  assert.equal(z.dtype, 'float32');
  assert.ok((await z.data()).every((v) => v === 0));
  z.dispose();
});
