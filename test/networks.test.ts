import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { HostTensor } from '../lib/io/host-tensor';
import { conv3dSame, convolutionTuning, depthToSpace2, gatherRows, instanceNorm, leakyRelu, linear, lookupRows, relativePositionBias, spaceToDepth2 } from '../lib/networks/ops';
import { ParamSpec, initialValue, toKitLayout, toTorchLayout } from '../lib/networks/parameters';
import { UnetrUpBlock } from '../lib/networks/unetr-blocks';
import { unetResBlock } from '../lib/networks/unet-res-block';
import { concatChannels } from '../lib/networks/ops';
import { CheckpointMode, SwinUNETR, stackSubgrids, swinUnetrConfig, swinUnetrParameterSpecs } from '../lib/networks/swin-unetr';
import { biasIndex, effectiveWindow, maskOfWindows, relativePositionIndex, windowPlan } from '../lib/networks/swin-windows';
import { AdamW } from '../lib/training/adamw';
import { Rng } from '../lib/util/random';
import { maxAbsDifference } from './helpers';

const random = (shape: number[], seed: number) => {
  const rng = new Rng(seed);
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()), shape);
};
const maxDiff = async (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).data().then((v) => v[0]);

test('parameter counts equal MONAI SwinUNETR (62,188,031 at F=48/29 outputs; 62,187,296 with 14; fixture 4,078,077)', () => {
  const count = (f: number, out: number) => swinUnetrParameterSpecs(swinUnetrConfig({ featureSize: f, outChannels: out })).reduce((s, p) => s + p.torchShape.reduce((a, b) => a * b, 1), 0);
  assert.equal(count(48, 29), 62_188_031);
  assert.equal(count(48, 14), 62_187_296);
  assert.equal(count(12, 3), 4_078_077);
});

test('layout conversion from PyTorch and back is the identity for every parameter kind', () => {
  for (const spec of swinUnetrParameterSpecs(swinUnetrConfig({ featureSize: 12, outChannels: 3 })).filter((_, i) => i % 7 === 0)) {
    const n = spec.torchShape.reduce((a, b) => a * b, 1);
    const torch: HostTensor = { dtype: 'float32', shape: spec.torchShape, data: Float32Array.from({ length: n }, (_, i) => i) };
    const back = toTorchLayout(spec, toKitLayout(spec, torch));
    assert.deepEqual(back.shape, spec.torchShape, spec.name);
    assert.deepEqual(Array.from(back.data), Array.from(torch.data), spec.name);
  }
});

test('patch embedding (space-to-depth + matmul) equals Conv3d kernel 2 stride 2', async () => {
  await switchBackend('cpu');
  const torchWeight: HostTensor = { dtype: 'float32', shape: [5, 2, 2, 2, 2], data: (await random([5, 2, 2, 2, 2], 1).data()) as Float32Array };
  const spec = (kind: ParamSpec['kind']): ParamSpec => ({ name: 'w', torchShape: [5, 2, 2, 2, 2], kind, init: 'zeros' });
  const asMatmul = toKitLayout(spec('patchEmbed'), torchWeight);
  const asConv = toKitLayout(spec('conv3d'), torchWeight);
  const x = random([1, 4, 6, 8, 2], 2) as tf.Tensor5D;
  const viaMatmul = linear(spaceToDepth2(x), tf.tensor2d(asMatmul.data, asMatmul.shape as [number, number]));
  const viaConv = tf.conv3d(x, tf.tensor5d(asConv.data, asConv.shape as [number, number, number, number, number]), 2, 'valid');
  assert.ok((await maxDiff(viaMatmul, viaConv)) < 1e-5);
});

test('transposed conv kernel 2 stride 2 (matmul + depth-to-space) equals ConvTranspose3d', async () => {
  await switchBackend('cpu');
  const torchWeight: HostTensor = { dtype: 'float32', shape: [6, 3, 2, 2, 2], data: (await random([6, 3, 2, 2, 2], 3).data()) as Float32Array };
  const kit = toKitLayout({ name: 'w', torchShape: [6, 3, 2, 2, 2], kind: 'convTranspose2', init: 'zeros' }, torchWeight);
  const x = random([1, 2, 3, 4, 6], 4) as tf.Tensor5D;
  const ours = depthToSpace2(linear(x, tf.tensor2d(kit.data, kit.shape as [number, number])) as tf.Tensor5D);
  const filter = tf.transpose(tf.tensor5d(torchWeight.data, [6, 3, 2, 2, 2]), [2, 3, 4, 1, 0]) as tf.Tensor5D; // [kd, kh, kw, out, in]
  const reference = tf.conv3dTranspose(x, filter, [1, 4, 6, 8, 3], 2, 'valid');
  assert.ok((await maxDiff(ours, reference)) < 1e-5);
});

test('conv3dSame on wasm (conv2d decomposition) equals native Conv3d, values and gradients', async () => {
  const x = await random([1, 5, 6, 4, 3], 5).data();
  const w = await random([3, 3, 3, 3, 4], 6).data();
  const r = await random([1, 5, 6, 4, 4], 7).data();
  const run = async () => {
    const xs = tf.tensor5d(x as Float32Array, [1, 5, 6, 4, 3]);
    const ws = tf.tensor5d(w as Float32Array, [3, 3, 3, 3, 4]);
    const rs = tf.tensor5d(r as Float32Array, [1, 5, 6, 4, 4]);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv3dSame(a as tf.Tensor5D, b as tf.Tensor5D), rs));
    const [gx, gw] = tf.grads(f)([xs, ws]);
    return { y: await conv3dSame(xs, ws).data(), gx: await gx.data(), gw: await gw.data() };
  };
  await switchBackend('cpu');
  const reference = await run();
  await switchBackend('wasm');
  // The filter gradient, and under the tape the forward pass and the input gradient, in one chunk
  // of depth slices, in chunks of 2 (5 = 2 + 2 + 1) and of 1. A slice here is 6 x 4 x 4 channels
  // at most; the filter gradient's copies of a slice are 3 taps x 4 channels x 8 x 6 (padded).
  const sliceFloats = 6 * 4 * 4;
  const filterSliceFloats = 3 * 4 * 8 * 6;
  const saved = { ...convolutionTuning };
  for (const slices of [0, 2, 1]) {
    convolutionTuning.filterGradientChunkFloats = slices ? slices * filterSliceFloats : saved.filterGradientChunkFloats;
    convolutionTuning.depthChunkFloats = slices ? slices * sliceFloats : saved.depthChunkFloats;
    const fast = await run();
    for (const key of ['y', 'gx', 'gw'] as const) {
      let worst = 0;
      for (let i = 0; i < reference[key].length; i++) worst = Math.max(worst, Math.abs(reference[key][i] - fast[key][i]));
      assert.ok(worst < 1e-3, `${key} (chunks of ${slices || 'all'} slices): max difference ${worst}`);
    }
  }
  Object.assign(convolutionTuning, saved);
});

test('conv3dSame gradient matches finite differences (wasm custom gradient)', async () => {
  await switchBackend('wasm');
  const x = random([1, 3, 4, 3, 2], 8) as tf.Tensor5D;
  const w = random([3, 3, 3, 2, 2], 9) as tf.Tensor5D;
  const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(conv3dSame(a as tf.Tensor5D, b as tf.Tensor5D)));
  const [, gw] = tf.grads(loss)([x, w]);
  const analytic = await gw.data();
  const base = await w.data();
  const eps = 1e-2;
  for (const index of [0, 17, 33, 50, 71, 107]) {
    const plus = Float32Array.from(base);
    const minus = Float32Array.from(base);
    plus[index] += eps;
    minus[index] -= eps;
    const lp = (await loss(x, tf.tensor5d(plus, w.shape)).data())[0];
    const lm = (await loss(x, tf.tensor5d(minus, w.shape)).data())[0];
    const numeric = (lp - lm) / (2 * eps);
    assert.ok(Math.abs(numeric - analytic[index]) <= 2e-2 * Math.max(1, Math.abs(numeric)), `dW[${index}]: numeric ${numeric} vs analytic ${analytic[index]}`);
  }
});

/** MONAI's pad -> roll(-shift) -> window_partition, written out directly on a small grid. */
function referencePartition(dims: number[], window: number[], shift: number[]): number[] {
  const padded = dims.map((d, a) => Math.ceil(d / window[a]) * window[a]);
  const rows: number[] = [];
  for (let wd = 0; wd < padded[0] / window[0]; wd++)
    for (let wh = 0; wh < padded[1] / window[1]; wh++)
      for (let ww = 0; ww < padded[2] / window[2]; ww++)
        for (let i = 0; i < window[0]; i++)
          for (let j = 0; j < window[1]; j++)
            for (let k = 0; k < window[2]; k++) {
              const q = [wd * window[0] + i, wh * window[1] + j, ww * window[2] + k].map((p, a) => (p + shift[a]) % padded[a]);
              rows.push(q.every((v, a) => v < dims[a]) ? (q[0] * dims[1] + q[1]) * dims[2] + q[2] : -1);
            }
  return rows;
}

test('window partition with padding and cyclic shift, and its reverse, as MONAI', async () => {
  await switchBackend('cpu');
  const dims: [number, number, number] = [5, 4, 3];
  const plan = windowPlan(dims, [2, 2, 2], [1, 1, 1]);
  const tokens = tf.tensor2d(Float32Array.from({ length: 60 }, (_, i) => i + 1), [60, 1]);
  const windows = await gatherRows(tokens, plan.partition, plan.reverse).data();
  const expected = referencePartition(dims, [2, 2, 2], [1, 1, 1]).map((t) => t + 1); // padding reads 0
  assert.deepEqual(Array.from(windows), expected);
  const back = await gatherRows(gatherRows(tokens, plan.partition, plan.reverse), plan.reverse, plan.partition).data();
  assert.deepEqual(Array.from(back), Array.from({ length: 60 }, (_, i) => i + 1));
  const [g] = tf.grads((t: tf.Tensor) => tf.sum(tf.mul(gatherRows(t as tf.Tensor2D, plan.partition, plan.reverse), 2)))([tokens]);
  assert.ok((await g.data()).every((v) => v === 2), 'each token appears exactly once in the windows');
});

test('bias table lookup: gradients of repeated rows are summed, on wasm as on cpu', async () => {
  const run = async () => {
    const table = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
    const index = tf.tensor1d([2, 0, 2, 2], 'int32');
    const weights = tf.tensor2d([1, 10, 100, 1000, 1, 1, 2, 2], [4, 2]);
    const [g] = tf.grads((t: tf.Tensor) => tf.sum(tf.mul(lookupRows(t as tf.Tensor2D, index), weights)))([table]);
    return { value: Array.from(await lookupRows(table, index).data()), grad: Array.from(await g.data()) };
  };
  await switchBackend('wasm');
  const wasm = await run();
  assert.deepEqual(wasm.value, [5, 6, 1, 2, 5, 6, 5, 6]);
  assert.deepEqual(wasm.grad, [100, 1000, 0, 0, 4, 13]);
  await switchBackend('cpu');
  assert.deepEqual(await run(), wasm);
});

test('relative position bias [1, heads, N, N]: the host loop (wasm, cpu) equals gather + transpose, value and summed gradient', async () => {
  const tokens = 8; // a 2 x 2 x 2 window: 27 relative positions
  const index = biasIndex([2, 2, 2], tokens);
  const table = tf.tensor2d(Float32Array.from({ length: 27 * 3 }, (_, i) => Math.sin(i) * 3), [27, 3]);
  const weights = tf.tensor4d(Float32Array.from({ length: 3 * tokens * tokens }, (_, i) => Math.cos(i * 0.7)), [1, 3, tokens, tokens]);
  const composed = (t: tf.Tensor2D) => tf.reshape(tf.transpose(tf.reshape(lookupRows(t, index), [tokens, tokens, 3]), [2, 0, 1]), [1, 3, tokens, tokens]);
  for (const backend of ['wasm', 'cpu']) {
    await switchBackend(backend as 'wasm' | 'cpu');
    const before = tf.memory().numTensors;
    const [want, got] = [composed, (t: tf.Tensor2D) => relativePositionBias(t, index, tokens)].map((f) => {
      const computed = tf.tidy(() => f(table));
      const value = Array.from(computed.dataSync());
      computed.dispose();
      const [g] = tf.grads((t: tf.Tensor) => tf.sum(tf.mul(f(t as tf.Tensor2D), weights)))([table]);
      const grad = Array.from(g.dataSync());
      g.dispose();
      return { value, grad };
    });
    assert.deepEqual(got.value, want.value, backend);
    for (let i = 0; i < want.grad.length; i++) assert.ok(Math.abs(got.grad[i] - want.grad[i]) < 1e-5, `${backend} gradient ${i}: ${got.grad[i]} vs ${want.grad[i]}`);
    assert.ok(want.grad.some((v) => Math.abs(v) > 0.1), 'a gradient that is not all zero');
    assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  }
  assert.throws(() => relativePositionBias(table, index, 7), /64 indices for 7 tokens/);
});

test('get_window_size: axes not longer than the window use it whole and are not shifted', () => {
  assert.deepEqual(effectiveWindow([8, 6, 7], [7, 7, 7], [3, 3, 3]), { window: [7, 6, 7], shift: [3, 0, 0] });
});

test('shifted-window attention mask equals MONAI compute_mask', async () => {
  await switchBackend('cpu');
  const dims: [number, number, number] = [4, 4, 4];
  const window = [2, 2, 2];
  const shift = [1, 1, 1];
  const plan = windowPlan(dims, window, shift);
  // compute_mask: label regions by the slices (0, -window), (-window, -shift), (-shift, None).
  const label = new Map<string, number>();
  let count = 0;
  const ranges = (n: number, w: number, s: number) => [[0, n - w], [n - w, n - s], [n - s, n]];
  for (const [d0, d1] of ranges(4, 2, 1)) for (const [h0, h1] of ranges(4, 2, 1)) for (const [w0, w1] of ranges(4, 2, 1)) {
    for (let d = d0; d < d1; d++) for (let h = h0; h < h1; h++) for (let w = w0; w < w1; w++) label.set(`${d},${h},${w}`, count);
    count++;
  }
  const mask = await maskOfWindows(plan.mask!, 0, plan.windows).data();
  // Stored compactly: 27 windows of a 21^3 grid share eight patterns.
  assert.equal(windowPlan([21, 21, 21], [7, 7, 7], [3, 3, 3]).mask!.patterns.shape[0], 8);
  const n = plan.tokens;
  for (let win = 0; win < plan.windows; win++) {
    const [wd, wh, ww] = [Math.floor(win / 4), Math.floor(win / 2) % 2, win % 2];
    const at = (t: number) => label.get(`${wd * 2 + Math.floor(t / 4)},${wh * 2 + (Math.floor(t / 2) % 2)},${ww * 2 + (t % 2)}`);
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) assert.equal(mask[(win * n + a) * n + b], at(a) === at(b) ? 0 : -100);
  }
});

test('relative position index: hand-checked entries; small windows use MONAI index[:n, :n]', async () => {
  const index = relativePositionIndex([2, 2, 2]);
  assert.equal(index[0], 13); // same position: centre of the 3 x 3 x 3 table
  assert.equal(index[0 * 8 + 7], 0); // p = (0,0,0), q = (1,1,1): offset (-1,-1,-1)
  assert.equal(index[7 * 8 + 0], 26); // offset (+1,+1,+1)
  const full = relativePositionIndex([7, 7, 7]);
  const small = await biasIndex([7, 7, 7], 8).data();
  assert.deepEqual(Array.from(small), [0, 1, 2, 3, 4, 5, 6, 7].flatMap((p) => Array.from(full.slice(p * 343, p * 343 + 8))));
});

test("PatchMerging sub-grid order: MONAI 'merging' repeats x2 and x3, 'mergingv2' is itertools.product", async () => {
  await switchBackend('cpu');
  // Value = flat sub-grid offset d*4 + h*2 + w, so each output slot shows which sub-grid it took.
  const x = tf.tensor5d(Float32Array.from({ length: 8 }, (_, i) => i), [1, 2, 2, 2, 1]);
  assert.deepEqual(Array.from(await stackSubgrids(x, 'merging').data()), [0, 4, 2, 1, 5, 2, 1, 7]);
  assert.deepEqual(Array.from(await stackSubgrids(x, 'mergingv2').data()), [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('instance norm: zero mean and unit variance per channel', async () => {
  await switchBackend('cpu');
  const y = instanceNorm(tf.add(tf.mul(random([1, 4, 4, 4, 3], 10), 5), 2) as tf.Tensor5D);
  const { mean, variance } = tf.moments(y, [1, 2, 3]);
  assert.ok((await tf.max(tf.abs(mean)).data())[0] < 1e-5);
  assert.ok((await tf.max(tf.abs(tf.sub(variance, 1))).data())[0] < 1e-3);
});

test("leaky ReLU's gradient from its output equals tfjs's own, on cpu and wasm", async () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    await switchBackend(backend);
    const x = tf.tensor5d([-2, -0.5, 0, 0.25, 3, -1e-3, 7, -4], [1, 2, 2, 2, 1]);
    const weights = tf.tensor5d([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 2, 2, 1]);
    const ours = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(leakyRelu(t, 0.01), weights)))(x);
    const theirs = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.leakyRelu(t, 0.01), weights)))(x);
    assert.deepEqual(Array.from(await leakyRelu(x, 0.01).data()), Array.from(await tf.leakyRelu(x, 0.01).data()));
    assert.ok(maxAbsDifference(await ours.data(), await theirs.data()) < 1e-7, `${backend}: ${await ours.data()} vs ${await theirs.data()}`);
    tf.dispose([x, weights, ours, theirs]);
  }
});

test('instance norm (and with leaky ReLU) custom gradients equal autodiff of the plain composition, on cpu and wasm', async () => {
  const plain = (x: tf.Tensor, slope?: number) => {
    const { mean, variance } = tf.moments(x, [1, 2, 3], true);
    const y = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5)));
    return slope === undefined ? y : tf.leakyRelu(y, slope);
  };
  for (const backend of ['cpu', 'wasm'] as const) {
    await switchBackend(backend);
    for (const slope of [undefined, 0.01, 0.2]) {
      const x = tf.add(tf.mul(random([1, 3, 4, 5, 6], 11), 3), 1) as tf.Tensor5D;
      const r = random([1, 3, 4, 5, 6], 12);
      const run = (f: (x: tf.Tensor) => tf.Tensor) => {
        const y = f(x);
        const [dx] = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(f(a), r)))([x]);
        return [y, dx];
      };
      const [y, dx] = run((a) => instanceNorm(a as tf.Tensor5D, slope));
      const [yRef, dxRef] = run((a) => plain(a, slope));
      assert.ok((await maxDiff(y, yRef)) < 1e-5, `${backend} slope ${slope}: values`);
      assert.ok((await maxDiff(dx, dxRef)) < 1e-4, `${backend} slope ${slope}: gradient differs by ${await maxDiff(dx, dxRef)}`);
      tf.dispose([x, r, y, dx, yRef, dxRef]);
    }
  }
});

test('bad input: size not divisible by 32, wrong channel count', async () => {
  await switchBackend('cpu');
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 2 }), 1);
  assert.throws(() => model.forward(tf.zeros([1, 32, 48, 32, 1]) as tf.Tensor5D), /32x48x32 must be divisible by 32/);
  assert.throws(() => model.forward(tf.zeros([1, 32, 32, 32, 2]) as tf.Tensor5D), /input has 2 channels, the model expects 1/);
  model.dispose();
});

test("decoderInputsOf gives forward's dec0 and enc0 without the last block, leaking nothing", async () => {
  await switchBackend('wasm');
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 2 }), 4);
  const x = random([1, 32, 32, 32, 1], 5) as tf.Tensor5D;
  const full = model.forward(x, { decoderInputs: true });
  const before = tf.memory().numTensors;
  const alone = model.decoderInputsOf(x, { frozen: true });
  assert.equal(tf.memory().numTensors, before + 2);
  assert.deepEqual(alone.dec0.shape, [1, 16, 16, 16, 12]);
  assert.deepEqual(alone.enc0.shape, [1, 32, 32, 32, 12]);
  assert.equal(await maxDiff(alone.dec0, full.dec0!), 0);
  assert.equal(await maxDiff(alone.enc0, full.enc0!), 0);
  tf.dispose([x, full.logits, full.features, full.dec0!, full.enc0!, alone.dec0, alone.enc0]);
  model.dispose();
});

test('training steps (forward, backward, AdamW) on wasm keep the tensor count constant and lower the loss', async () => {
  await switchBackend('wasm');
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 2 }), 3);
  const x = random([1, 32, 32, 32, 1], 11) as tf.Tensor5D;
  const target = tf.tidy(() => tf.cast(tf.greater(random([1, 32, 32, 32, 2], 12), 0), 'float32'));
  const optimizer = new AdamW({ learningRate: 1e-3 });
  const variables = [...model.params.values()];
  const step = () => {
    const { value, grads } = tf.variableGrads(() => tf.losses.sigmoidCrossEntropy(target, model.forward(x).logits) as tf.Scalar, variables);
    optimizer.apply(new Map(variables.map((v) => [v, grads[v.name]])));
    const loss = value.dataSync()[0];
    value.dispose();
    return loss;
  };
  const first = step();
  const counts: number[] = [];
  let last = first;
  for (let i = 0; i < 3; i++) {
    last = step();
    counts.push(tf.memory().numTensors);
  }
  assert.equal(new Set(counts).size, 1, `tensor counts ${counts}`);
  assert.ok(last < first, `loss ${first} -> ${last}`);
  optimizer.dispose();
  model.dispose();
});

test("checkpointed blocks ('swin', all and fine) give the same gradients, keep less memory and leak nothing", async () => {
  await switchBackend('wasm');
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 2 }), 4);
  const x = random([1, 32, 32, 32, 1], 13) as tf.Tensor5D;
  const variables = [...model.params.values()];
  const gradients = async (checkpoint: CheckpointMode) => {
    let taped = 0;
    let values: Float32Array[] = [];
    // tf.profile's record is shared between calls: read its peak before the next one.
    const { peakBytes } = await tf.profile(async () => {
      const { value, grads } = tf.variableGrads(() => {
        const loss = tf.mean(tf.square(model.forward(x, { checkpoint }).logits)) as tf.Scalar;
        taped = tf.memory().numBytes;
        return loss;
      }, variables);
      values = (await Promise.all(variables.map((v) => grads[v.name].data()))) as Float32Array[];
      tf.dispose([value, ...Object.values(grads)]);
    });
    return { values, taped, peak: peakBytes };
  };
  const plain = await gradients(false);
  const before = tf.memory().numTensors;
  const swin = await gradients('swin');
  const all = await gradients(true);
  const fine = await gradients('fine');
  assert.equal(tf.memory().numTensors, before, 'no tensor leaks');
  for (const [name, saved] of [['swin', swin], ['all', all], ['fine', fine]] as const) {
    let worst = 0;
    plain.values.forEach((g, i) => g.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - saved.values[i][j])))));
    assert.ok(worst < 1e-6, `${name}: gradient difference ${worst}`);
  }
  // Memory held when the forward pass ends: each mode keeps less than the one before.
  assert.ok(swin.taped < plain.taped, `swin: ${swin.taped} vs ${plain.taped} bytes`);
  // The convolutional blocks' share: since the tape keeps only their norms' and activations'
  // outputs, 'all' holds 0.58 of 'swin' here (it held under half when it kept every intermediate).
  assert.ok(all.taped < 0.75 * swin.taped, `all: ${all.taped} vs ${swin.taped} bytes`);
  // 'fine' keeps what 'all' keeps when the forward pass ends (its saving is inside the recomputation: next test).
  assert.equal(fine.taped, all.taped);
  model.dispose();
});

test('a decoder block in checkpointed segments: same output and gradients, a lower peak while training', async () => {
  await switchBackend('wasm');
  const block = new UnetrUpBlock('decoder1.', 8, 8);
  const rng = new Rng(3);
  const weights = new Map(block.specs.map((spec) => {
    const host = toKitLayout(spec, initialValue(spec, rng));
    return [spec.name, tf.variable(tf.tensor(host.data, host.shape, 'float32'))];
  }));
  const param = (name: string) => weights.get(name)!;
  const x = random([1, 16, 16, 16, 8], 21) as tf.Tensor5D;
  const skip = random([1, 32, 32, 32, 8], 22) as tf.Tensor5D;
  const run = async (segments: boolean) => {
    let out: Float32Array = new Float32Array();
    let grads: Float32Array[] = [];
    const { peakBytes } = await tf.profile(async () => {
      const { value, grads: g } = tf.variableGrads(() => {
        const y = block.forward(x, skip, param, segments);
        out = y.dataSync().slice() as Float32Array;
        return tf.mean(tf.square(y)) as tf.Scalar;
      }, [...weights.values()]);
      grads = (await Promise.all([...weights.values()].map((v) => g[v.name].data()))) as Float32Array[];
      tf.dispose([value, ...Object.values(g)]);
    });
    return { out, grads, peak: peakBytes };
  };
  const plain = await run(false);
  const before = tf.memory().numTensors;
  const segmented = await run(true);
  assert.equal(tf.memory().numTensors, before, 'no tensor leaks');
  assert.equal(maxAbsDifference(plain.out, segmented.out), 0);
  plain.grads.forEach((g, i) => assert.ok(maxAbsDifference(g, segmented.grads[i]) < 1e-6, `gradient ${i} differs by ${maxAbsDifference(g, segmented.grads[i])}`));
  // Above the tensors held before, counted per tensor (tf.memory counts a shared clone twice):
  // 17.3 volumes of 32^3 x 8 for the plain block, 16.1 in segments. Before the plain block's tape
  // kept only what its backward reads, the segments' peak was under 0.75 of the plain one's; before
  // the residual sum and its activation became one op (no sum volume), 19.3 against 16.1.
  const held = tf.memory().numBytes;
  const volume = 32 ** 3 * 8 * 4;
  assert.ok(segmented.peak - held < plain.peak - held - volume, `peak above the inputs: ${segmented.peak - held} in segments against ${plain.peak - held} bytes (at least one volume less expected)`);
  tf.dispose([x, skip, ...weights.values()]);
});

test('a block fed its input as channel parts equals the block on their concatenation (values, gradients), and a constant part gets no input gradient', async () => {
  await switchBackend('wasm');
  const up = random([1, 8, 8, 8, 2], 11) as tf.Tensor5D;
  const skip = random([1, 8, 8, 8, 4], 12) as tf.Tensor5D;
  const weights = { conv1: random([3, 3, 3, 6, 3], 13), conv2: random([3, 3, 3, 3, 3], 14), conv3: random([6, 3], 15) };
  const loss = (out: tf.Tensor) => tf.sum(tf.mul(out, tf.sin(tf.reshape(tf.range(0, out.size), out.shape))));
  for (const segments of [false, true]) {
    const block = (input: tf.Tensor5D | tf.Tensor5D[], w1: tf.Tensor, w2: tf.Tensor, w3: tf.Tensor) => loss(unetResBlock(input, { conv1: w1, conv2: w2, conv3: w3 }, 3, segments));
    const joined = (a: tf.Tensor, b: tf.Tensor, w1: tf.Tensor, w2: tf.Tensor, w3: tf.Tensor) => block(concatChannels(a, b) as tf.Tensor5D, w1, w2, w3);
    const parts = (a: tf.Tensor, b: tf.Tensor, w1: tf.Tensor, w2: tf.Tensor, w3: tf.Tensor) => block([a as tf.Tensor5D, b as tf.Tensor5D], w1, w2, w3);
    const args = [up, skip, weights.conv1, weights.conv2, weights.conv3];
    const expected = tf.grads(joined)(args);
    const actual = tf.grads(parts)(args);
    for (let i = 0; i < args.length; i++) {
      const scale = Math.max(...Array.from(expected[i].dataSync(), Math.abs));
      assert.ok(scale > 0 && (await maxDiff(actual[i], expected[i])) <= 1e-5 * scale, `segments ${segments}: gradient ${i} differs`);
    }
    tf.dispose([...expected, ...actual]);
    // The skip part's input gradient convolves dy (3 channels) to the skip's 4: three conv2d with a
    // [3, 3, 3, 4] kernel, or one call of the kit's kernel on dy [8, 8, 8, 3] with the part's own
    // [3, 3, 3, 4, 3] filter (flipped inside), when the skip's gradient is asked for; none when
    // the skip is a constant.
    const skipGradientCalls = async (withSkip: boolean) => {
      const xs = withSkip ? [up, skip, weights.conv1] : [up, weights.conv1];
      const f = (...t: tf.Tensor[]) => parts(t[0], withSkip ? t[1] : skip, t[withSkip ? 2 : 1], weights.conv2, weights.conv3);
      const kernels = (await tf.profile(() => tf.dispose(tf.grads(f)(xs)))).kernels;
      const sliced = kernels.filter((k) => k.name === 'Conv2D' && JSON.stringify(k.inputShapes[1]) === '[3,3,3,4]').length;
      const direct = kernels.filter((k) => k.name === 'FseftConv3x3x3' && JSON.stringify(k.inputShapes) === '[[8,8,8,3],[3,3,3,4,3]]').length;
      return sliced / 3 + direct;
    };
    assert.equal(await skipGradientCalls(true), 1, `segments ${segments}: the skip's gradient asked for`);
    assert.equal(await skipGradientCalls(false), 0, `segments ${segments}: the skip a constant`);
  }
  tf.dispose([up, skip, ...Object.values(weights)]);
});

test('UnetResBlock by hand: identity kernels give lrelu(norm(lrelu(norm(x))) + x)', async () => {
  await switchBackend('cpu');
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 2 }), 5);
  // encoder2 is a 12 -> 12 block (no projection); make both kernels the identity per channel.
  const identity = new Float32Array(27 * 12 * 12);
  for (let c = 0; c < 12; c++) identity[13 * 144 + c * 12 + c] = 1; // centre tap (1,1,1), channel c -> c
  model.params.get('encoder2.layer.conv1.conv.weight')!.assign(tf.tensor5d(identity, [3, 3, 3, 12, 12]));
  model.params.get('encoder2.layer.conv2.conv.weight')!.assign(tf.tensor5d(identity, [3, 3, 3, 12, 12]));
  const values = Float32Array.from({ length: 2 * 2 * 2 * 12 }, (_, i) => Math.sin(i * 1.7) * 3 + (i % 12));
  const out = await model.resBlock('encoder2.layer.', tf.tensor5d(values, [1, 2, 2, 2, 12])).data();
  const lrelu = (v: number) => (v > 0 ? v : 0.01 * v);
  const normalise = (xs: number[]) => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
    return xs.map((v) => (v - mean) / Math.sqrt(variance + 1e-5));
  };
  for (let c = 0; c < 12; c++) {
    const channel = [0, 1, 2, 3, 4, 5, 6, 7].map((p) => values[p * 12 + c]);
    const expected = normalise(normalise(channel).map(lrelu)).map((v, p) => lrelu(v + channel[p]));
    expected.forEach((e, p) => assert.ok(Math.abs(out[p * 12 + c] - e) < 1e-4, `channel ${c} voxel ${p}: ${out[p * 12 + c]} vs ${e}`));
  }
  model.dispose();
});

test('AdamW per-variable rate multipliers: a scaled variable takes a proportionally larger step', () => {
  const plain = tf.variable(tf.tensor1d([1, -2]));
  const scaled = tf.variable(tf.tensor1d([1, -2]));
  const optimizer = new AdamW({ learningRate: 0.01, weightDecay: 0 });
  optimizer.rateScale.set(scaled, 20);
  optimizer.apply(new Map([[plain, tf.tensor1d([0.3, -5])], [scaled, tf.tensor1d([0.3, -5])]]));
  // Adam's first step is lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|).
  assert.ok(maxAbsDifference(plain.dataSync(), [0.99, -1.99]) < 1e-6);
  assert.ok(maxAbsDifference(scaled.dataSync(), [0.8, -1.8]) < 1e-5);
  optimizer.dispose();
  tf.dispose([plain, scaled]);
});
