import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { conv3dSame } from '../lib/networks/ops';
import { conv3x3x3Direct, conv3x3x3FilterGradientDirect, directConvolutionApplies, directConvolutionMethod, directConvolutionTuning, directFilterGradientApplies, flippedTransposedFilter, packFilterPanels, packWinogradFilter } from '../lib/networks/wasm-conv';
import { rowShares } from '../lib/networks/wasm-row-pool';
import { relaxedSimdAvailable } from '../lib/networks/wasm-simd';
import { maxAbsDifference } from './helpers';
import { Rng } from '../lib/util/random';

const values = (n: number, seed: number, std = 1) => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => std * rng.normal());
};

/** conv3d 'same' on the cpu backend (tfjs's own kernel), the reference. */
async function reference(x: Float32Array, filter: Float32Array, shape: number[], cout: number): Promise<Float32Array> {
  await switchBackend('cpu');
  const [d, h, w, cin] = shape;
  const y = tf.tidy(() => tf.conv3d(tf.tensor5d(x, [1, d, h, w, cin]), tf.tensor5d(filter, [3, 3, 3, cin, cout]), 1, 'same'));
  const out = (await y.data()) as Float32Array;
  y.dispose();
  return out;
}

function withTuning<T>(settings: Partial<typeof directConvolutionTuning>, body: () => Promise<T>): Promise<T> {
  const saved = { ...directConvolutionTuning };
  Object.assign(directConvolutionTuning, settings);
  return body().finally(() => Object.assign(directConvolutionTuning, saved));
}

test('packFilterPanels lays the filter out in panels of 8 output channels, then one of 4', () => {
  const rows = 2;
  const cout = 12;
  const filter = Float32Array.from({ length: rows * cout }, (_, i) => i);
  const packed = new Float32Array(rows * cout);
  packFilterPanels(filter, rows, cout, packed);
  assert.deepEqual([...packed], [0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15, 16, 17, 18, 19, 8, 9, 10, 11, 20, 21, 22, 23]);
});

test('packWinogradFilter gives each component [9 Cin, Cout] from the three kw taps, in panels', () => {
  const cin = 2;
  const cout = 4;
  const filter = values(27 * cin * cout, 9);
  const packed = new Float32Array(36 * cin * cout);
  packWinogradFilter(filter, cin, cout, packed);
  const tap = (kd: number, kh: number, kw: number, c: number, o: number) => filter[(((kd * 3 + kh) * 3 + kw) * cin + c) * cout + o];
  // one panel of 4 channels: component k's row (kd, kh, c) at k 9 Cin Cout + ((kd 3 + kh) Cin + c) Cout
  for (const [kd, kh, c, o] of [[0, 0, 0, 0], [2, 1, 1, 3], [1, 2, 0, 2]]) {
    const [g0, g1, g2] = [0, 1, 2].map((kw) => tap(kd, kh, kw, c, o));
    const want = [g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2];
    want.forEach((value, k) => assert.ok(Math.abs(packed[k * 9 * cin * cout + ((kd * 3 + kh) * cin + c) * cout + o] - value) < 1e-6, `component ${k} at ${[kd, kh, c, o]}`));
  }
  // F(4, 3): six components (G g of Lavin and Gray)
  const packed4 = new Float32Array(54 * cin * cout);
  packWinogradFilter(filter, cin, cout, packed4, 4);
  for (const [kd, kh, c, o] of [[0, 0, 0, 0], [2, 1, 1, 3], [1, 2, 0, 2]]) {
    const [g0, g1, g2] = [0, 1, 2].map((kw) => tap(kd, kh, kw, c, o));
    const want = [g0 / 4, -(g0 + g1 + g2) / 6, -(g0 - g1 + g2) / 6, g0 / 24 + g1 / 12 + g2 / 6, g0 / 24 - g1 / 12 + g2 / 6, g2];
    want.forEach((value, k) => assert.ok(Math.abs(packed4[k * 9 * cin * cout + ((kd * 3 + kh) * cin + c) * cout + o] - value) < 1e-6, `F(4, 3) component ${k} at ${[kd, kh, c, o]}`));
  }
});

test('the input-gradient filter: taps reversed and channel axes swapped, as tf.reverse + tf.transpose; the kernel given it flipped equals cpu conv3d by that filter', async () => {
  const [a, b] = [4, 8];
  const filter = values(27 * a * b, 10, 0.3);
  await switchBackend('cpu');
  const want = tf.tidy(() => tf.transpose(tf.reverse(tf.tensor5d(filter, [3, 3, 3, a, b]), [0, 1, 2]), [0, 1, 2, 4, 3]));
  const wanted = (await want.data()) as Float32Array;
  assert.deepEqual([...flippedTransposedFilter(filter, a, b)], [...wanted]);
  // dy [D, H, W, b] through the kernel with the original filter, flipped inside, for both loops
  const shape = [3, 4, 7, b];
  const dy = values(shape.reduce((x, y) => x * y, 1), 11);
  const expected = await reference(dy, wanted, shape, a);
  want.dispose();
  await switchBackend('wasm');
  for (const tile of [4, 2, 0] as const) {
    await withTuning({ enabled: true, winograd: tile > 0, winogradTile: tile || 4 }, async () => {
      const y = conv3x3x3Direct(tf.tensor4d(dy, shape as [number, number, number, number]), tf.tensor5d(filter, [3, 3, 3, a, b]), true);
      assert.deepEqual(y.shape, [3, 4, 7, a]);
      const worst = maxAbsDifference(await y.data(), expected);
      assert.ok(worst < 1e-4, `winograd tile ${tile}: max difference ${worst}`);
      y.dispose();
    });
  }
});

test('the filter gradient kernel (wasm) equals tfjs autodiff of conv3d on cpu: 4-wide channel tails, slab seams, one thread and the pool, fused and plain', async () => {
  // Cout = 12 ends in a 4-wide tile; W = 13 and 1; Cin = 2 (one tile row of 6 per tap row), 6, 8
  const shapes: Array<[number[], number]> = [[[3, 4, 7, 2], 4], [[4, 5, 13, 6], 12], [[2, 3, 1, 8], 8], [[5, 2, 6, 4], 16]];
  for (const [shape, cout] of shapes) {
    const [d, h, w, cin] = shape;
    const x = values(d * h * w * cin, 20);
    const dy = values(d * h * w * cout, 21);
    await switchBackend('cpu');
    const wanted = tf.tidy(() => {
      const xs = tf.tensor5d(x, [1, d, h, w, cin]);
      const ds = tf.tensor5d(dy, [1, d, h, w, cout]);
      return tf.grad((f: tf.Tensor) => tf.sum(tf.mul(tf.conv3d(xs, f as tf.Tensor5D, 1, 'same'), ds)))(tf.zeros([3, 3, 3, cin, cout]));
    });
    const want = (await wanted.data()) as Float32Array;
    wanted.dispose();
    await switchBackend('wasm');
    for (const settings of [{ threads: false }, { threads: true }, { threads: true, slabFloats: 1 }, { threads: false, plain: true }]) {
      await withTuning({ enabled: true, ...settings }, async () => {
        const xs = tf.tensor4d(x, shape as [number, number, number, number]);
        const ds = tf.tensor4d(dy, [d, h, w, cout]);
        assert.ok(directFilterGradientApplies(xs, cout));
        const got = conv3x3x3FilterGradientDirect(xs, ds);
        assert.deepEqual(got.shape, [3, 3, 3, cin, cout]);
        const worst = maxAbsDifference(await got.data(), want);
        assert.ok(worst < 1e-3, `${shape} -> ${cout} ${JSON.stringify(settings)}: max difference ${worst}`);
        tf.dispose([xs, ds, got]);
      });
    }
  }
  await switchBackend('wasm');
  const odd = tf.zeros([2, 2, 2, 3]);
  assert.equal(directFilterGradientApplies(odd, 4), false, 'an odd Cin stays with XNNPACK');
  odd.dispose();
});

test('rowShares splits the rows into near-equal ranges that cover each row once', () => {
  assert.deepEqual(rowShares(7, 2), [[0, 3], [3, 7]]);
  assert.deepEqual(rowShares(9, 3), [[0, 3], [3, 6], [6, 9]]);
  assert.deepEqual(rowShares(1, 2), [[0, 0], [0, 1]]);
});

test('the direct 3x3x3 convolution (wasm) equals tfjs conv3d on cpu: every row-tail width, 4-wide channel tails, slab seams, one thread and the pool, fused and plain', async () => {
  // W = 13, 7, 11, 3 leave tails of 1, 1, 5 and 3 voxels after the blocks of 6; Cout = 12 ends in
  // a 4-wide panel; Cin = 1 is the network's input convolution.
  // With Cin a multiple of 4 the Winograd module takes it. F(2, 3): W = 13, 7, 1, 24, 2 give 7, 4,
  // 1, 12 and 1 tiles (odd widths drop the last tile's second voxel; 7 tiles leave a tail of 1
  // after 6). F(4, 3): W = 13, 7, 1, 24, 2, 15, 10 end in tiles of 1, 3, 1, 4, 2, 3, 2 voxels, and
  // 26 is 7 tiles (a tail of 1 after 6).
  const shapes: Array<[number[], number]> = [
    [[5, 6, 13, 3], 12], [[4, 5, 7, 8], 8], [[3, 4, 11, 5], 4], [[2, 3, 3, 6], 16], [[3, 4, 6, 1], 12],
    [[3, 4, 13, 4], 12], [[2, 3, 1, 8], 4], [[4, 3, 24, 12], 8], [[3, 2, 2, 4], 8], [[3, 3, 15, 8], 12], [[2, 4, 10, 4], 4], [[2, 2, 26, 16], 8],
  ];
  for (const [shape, cout] of shapes) {
    const [d, h, w, cin] = shape;
    const x = values(d * h * w * cin, 1);
    const filter = values(27 * cin * cout, 2, 0.3);
    const want = await reference(x, filter, shape, cout);
    await switchBackend('wasm');
    const planeFloats = (h + 2) * (w + 2) * cin;
    // the Winograd tile (0: the direct loop)
    const modes = cin % 4 === 0 ? ([4, 2, 0] as const) : ([0] as const);
    // slabFloats 1: a slab of one depth slice each (every seam); 4 planes: two slices each (direct)
    const seams = [{ threads: true, slabFloats: 1 }, { threads: false, slabFloats: 4 * planeFloats }];
    for (const tile of modes) for (const settings of [{ threads: false }, { threads: true }, ...seams, { threads: false, plain: true }]) {
      const winograd = tile > 0;
      await withTuning({ enabled: true, winograd, winogradTile: tile || 4, ...settings }, async () => {
        const label = `${shape} -> ${cout}, ${JSON.stringify({ tile, ...settings })}`;
        const xs = tf.tensor4d(x, [d, h, w, cin]);
        assert.ok(directConvolutionApplies(xs, cout), `${label}: the direct kernel takes it`);
        assert.equal(directConvolutionMethod(cin), winograd ? 'winograd' : 'direct', label);
        const y = conv3x3x3Direct(xs, tf.tensor5d(filter, [3, 3, 3, cin, cout]));
        assert.deepEqual(y.shape, [d, h, w, cout]);
        const worst = maxAbsDifference(await y.data(), want);
        assert.ok(worst < 1e-4, `${label}: max difference ${worst}`);
        tf.dispose([xs, y]);
      });
    }
  }
  assert.equal(typeof relaxedSimdAvailable(), 'boolean');
});

test('conv3dSame through the direct kernel: values, input and filter gradients equal cpu, and no tensor is left behind', async () => {
  const shape = [1, 4, 5, 7, 3];
  const x = values(4 * 5 * 7 * 3, 3);
  const w = values(27 * 3 * 8, 4, 0.3);
  const r = values(4 * 5 * 7 * 8, 5);
  const run = async () => {
    const xs = tf.tensor5d(x, shape as [number, number, number, number, number]);
    const ws = tf.tensor5d(w, [3, 3, 3, 3, 8]);
    const rs = tf.tensor5d(r, [1, 4, 5, 7, 8]);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv3dSame(a as tf.Tensor5D, b as tf.Tensor5D), rs));
    const [gx, gw] = tf.grads(f)([xs, ws]);
    const y = conv3dSame(xs, ws);
    const out = { y: await y.data(), gx: await gx.data(), gw: await gw.data() };
    tf.dispose([xs, ws, rs, gx, gw, y]);
    return out;
  };
  await switchBackend('cpu');
  const want = await run();
  await switchBackend('wasm');
  await withTuning({ enabled: true }, async () => {
    const xs = tf.tensor4d(x, [4, 5, 7, 3]);
    const dy = tf.zeros([4, 5, 7, 8]);
    assert.ok(directConvolutionApplies(xs, 8) && !directConvolutionApplies(dy, 3), 'the forward pass takes the direct kernel; the input gradient (3 channels out) does not');
    tf.dispose([xs, dy]);
    const before = tf.memory().numTensors;
    for (let repeat = 0; repeat < 3; repeat++) {
      const got = await run();
      for (const key of ['y', 'gx', 'gw'] as const) {
        const worst = maxAbsDifference(got[key], want[key]);
        assert.ok(worst < 1e-3, `${key}: max difference ${worst}`);
      }
    }
    assert.ok(tf.memory().numTensors <= before + 1, `tensors grew from ${before} to ${tf.memory().numTensors}`);
  });
  // An input gradient with whole blocks of 4 channels goes through the kernel too.
  const x8 = values(3 * 4 * 6 * 4, 6);
  const w8 = values(27 * 4 * 4, 7, 0.3);
  const gradientOf = async () => {
    const xs = tf.tensor5d(x8, [1, 3, 4, 6, 4]);
    const g = tf.grad((a: tf.Tensor) => tf.sum(tf.square(conv3dSame(a as tf.Tensor5D, tf.tensor5d(w8, [3, 3, 3, 4, 4])))))(xs);
    return (await g.data()) as Float32Array;
  };
  await switchBackend('cpu');
  const wantGradient = await gradientOf();
  await switchBackend('wasm');
  const gotGradient = await withTuning({ enabled: true }, gradientOf);
  assert.ok(maxAbsDifference(gotGradient, wantGradient) < 1e-3, `input gradient: max difference ${maxAbsDifference(gotGradient, wantGradient)}`);
});

test('the direct kernel leaves convolutions it does not take to XNNPACK: when switched off (FSEFT_DIRECT_CONV=0), a Cout not a multiple of 4, too many channels', async () => {
  await switchBackend('wasm');
  const x = tf.zeros([2, 2, 2, 4]);
  await withTuning({ enabled: false }, async () => assert.equal(directConvolutionApplies(x, 8), false));
  await withTuning({ enabled: true }, async () => {
    assert.equal(directConvolutionApplies(x, 6), false);
    const wide = tf.zeros([1, 1, 1, 768]);
    assert.equal(directConvolutionApplies(wide, 768), false);
    wide.dispose();
    assert.equal(directConvolutionApplies(x, 8), true);
  });
  tf.dispose(x);
});
