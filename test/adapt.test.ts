import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { ADAPT_METHODS, Adapter, METHODS, parseMethod } from '../lib/adapters/adapters';
import { BackboneFeatures } from '../lib/inference/features';
import { adapterProbabilities, probabilitiesToLabels, probabilitiesToMask } from '../lib/inference/segment';
import { Shape3, Volume } from '../lib/io/volume';
import { dice } from '../lib/metrics/overlap';
import { ModelPreprocessing } from '../lib/networks/model-io';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { volumeToGrid } from '../lib/networks/volume-tensor';
import { AdaptOptions, DEFAULT_ADAPT, SupportVolume, adaptToOrgan, adaptationCrop, estimateTargetSize, sampleCropStarts, shouldStopEarly } from '../lib/training/adapt';
import { RECIPES } from '../lib/training/recipes';
import { Rng } from '../lib/util/random';
import { diagonalAffine, volumeFrom } from './helpers';

const F = 12;
const SHAPE: Shape3 = [40, 36, 32];
const ROI: Shape3 = [32, 32, 32];

/** A "CT" with a bright ball (the organ) and features whose first channel sees the ball and the rest is noise. */
function syntheticCase(centre: number[], radius: number, seed: number, extraBall?: { centre: number[]; radius: number }): SupportVolume {
  const inBall = (i: number, j: number, k: number, c: number[], r: number) => (i - c[0]) ** 2 + (j - c[1]) ** 2 + (k - c[2]) ** 2 <= r * r;
  const organ = (i: number, j: number, k: number) => inBall(i, j, k, centre, radius) || (extraBall ? inBall(i, j, k, extraBall.centre, extraBall.radius) : false);
  const image = volumeFrom(SHAPE, diagonalAffine([2, 2, 2]), (i, j, k) => (organ(i, j, k) ? 0.8 : 0.3));
  const mask = image.withData(Uint8Array.from(image.data, (v) => (v > 0.5 ? 1 : 0))) as Volume<Uint8Array>;
  const intensity = volumeToGrid(image);
  const rng = new Rng(seed);
  const data = new Float32Array(intensity.data.length * F);
  for (let v = 0; v < intensity.data.length; v++) {
    data[v * F] = intensity.data[v] * 2 - 1;
    for (let c = 1; c < F; c++) data[v * F + c] = 0.3 * rng.normal();
  }
  const features: BackboneFeatures = { features: { data, shape: SHAPE, channels: F }, seconds: 0 };
  return { id: `ball-${seed}`, image, mask, features };
}

let backbone: SwinUNETR | undefined;
function tinyBackbone(): SwinUNETR {
  backbone ??= SwinUNETR.create(swinUnetrConfig({ featureSize: F, outChannels: 29 }), 0);
  return backbone;
}

const options = (method: string, extra: Partial<AdaptOptions> = {}): AdaptOptions => ({ ...DEFAULT_ADAPT, method: parseMethod(method), roi: ROI, epochs: 30, learningRate: 1e-2, cropsPerStep: 1, seed: 3, ...extra });

test('crop sampler: inside the volume, half on the organ, even starts on request, seeded', () => {
  const support = syntheticCase([20, 18, 16], 5, 1);
  const big = volumeFrom([60, 50, 40], diagonalAffine([1, 1, 1]), (i, j, k) => (i > 40 && j > 30 && k > 20 ? 1 : 0.5));
  const bigMask = big.withData(Uint8Array.from(big.data, (v) => (v === 1 ? 1 : 0)));
  const starts = sampleCropStarts(bigMask, big, [16, 16, 16], 400, new Rng(1), true);
  let onOrgan = 0;
  for (const s of starts) {
    s.forEach((v, a) => assert.ok(v >= 0 && v + 16 <= big.shape[a], `start ${s} leaves the volume`));
    s.forEach((v) => assert.equal(v % 2, 0));
    if (s[0] + 16 > 41 && s[1] + 16 > 31 && s[2] + 16 > 21) onOrgan++;
  }
  assert.ok(onOrgan >= 170 && onOrgan <= 320, `about half the crops should contain organ voxels, got ${onOrgan}/400`);
  // A volume smaller than the ROI is centred (negative start, zero padding).
  const small = sampleCropStarts(support.mask, support.image, [48, 48, 48], 2, new Rng(2));
  assert.deepEqual(small[0], [-4, -6, -8]);
  assert.deepEqual(sampleCropStarts(bigMask, big, [16, 16, 16], 5, new Rng(9)), sampleCropStarts(bigMask, big, [16, 16, 16], 5, new Rng(9)));
});

test('target size for TI: mean of largest components; outliers dropped for k >= 5', () => {
  const mask = (n: number) => new Volume(Uint8Array.from({ length: 1000 }, (_, i) => (i < n ? 1 : 0)), [10, 10, 10], diagonalAffine([1, 1, 1]));
  assert.equal(estimateTargetSize([mask(100), mask(200)]), 150);
  // 100, 110, 120, 130 and an outlier 900: median 120, std ~314 keeps all but... the outlier is beyond median + std.
  const sizes = [100, 110, 120, 130, 900];
  assert.equal(estimateTargetSize(sizes.map(mask)), 115);
});

test('adapter training lowers the support loss and beats the untrained head on the query; same seed, same numbers', async () => {
  await switchBackend('wasm');
  const support = syntheticCase([18, 18, 16], 7, 1);
  const query = syntheticCase([22, 16, 15], 9, 2);
  const model = tinyBackbone();
  const untrained = Adapter.create('lp', model, undefined, 0);
  const before = dice(probabilitiesToMask(adapterProbabilities(untrained, { features: query.features }, { roi: ROI }), query.image).data, query.mask.data);
  untrained.dispose();
  for (const method of ['lp', 'adapter', 'adapter-k1', 'residual-adapter', 'mlp-adapter']) {
    const tensorsBefore = tf.memory().numTensors;
    const result = adaptToOrgan(model, [support], undefined, options(method, { epochs: 40, learningRate: method === 'lp' ? 0.3 : 3e-2 }));
    const first = result.history.slice(0, 3).reduce((s, h) => s + h.segmentationLoss, 0) / 3;
    const last = result.history.slice(-3).reduce((s, h) => s + h.segmentationLoss, 0) / 3;
    assert.ok(last < first * 0.7, `${method}: support loss ${first.toFixed(3)} -> ${last.toFixed(3)}`);
    const after = dice(probabilitiesToMask(adapterProbabilities(result.adapter, { features: query.features }, { roi: ROI }), query.image).data, query.mask.data);
    assert.ok(after > 0.7 && after > before + 0.2, `${method}: query Dice ${before.toFixed(3)} untrained -> ${after.toFixed(3)}`);
    result.adapter.dispose();
    assert.equal(tf.memory().numTensors, tensorsBefore, `${method} leaks tensors`);
  }
  const a = adaptToOrgan(model, [support], undefined, options('adapter', { epochs: 4 }));
  const b = adaptToOrgan(model, [support], undefined, options('adapter', { epochs: 4 }));
  assert.deepEqual(a.history.map((h) => h.loss), b.history.map((h) => h.loss));
  const c = adaptToOrgan(model, [support], undefined, options('adapter', { epochs: 4, seed: 4 }));
  assert.notDeepEqual(a.history.map((h) => h.loss), c.history.map((h) => h.loss));
  [a, b, c].forEach((r) => r.adapter.dispose());
});

test('trainable parameters: lp F + 1, adapters 2 k^3 F^2 + F + 1, ft-last = decoder1 + head', () => {
  const model = tinyBackbone();
  const count = (method: string) => {
    const adapter = Adapter.create(parseMethod(method), model, undefined, 0);
    const n = adapter.trainableParameters;
    adapter.dispose();
    return n;
  };
  assert.equal(count('generalization'), 0);
  assert.equal(count('lp'), F + 1);
  assert.equal(count('adapter'), 2 * 27 * F * F + F + 1);
  assert.equal(count('residual-adapter'), 2 * 27 * F * F + F + 1);
  assert.equal(count('mlp-adapter'), 2 * F * F + F + 1);
  assert.equal(count('adapter-k1'), 2 * F * F + F + 1);
  // decoder1 = UnetrUpBlock(F, F): transposed conv F*F*8, conv1 2F*F*27, conv2 F*F*27, conv3 2F*F; at F = 48 with the head: 209,713 (paper: 209.6 K).
  assert.equal(count('ft-last'), F * F * 8 + 2 * F * F * 27 + F * F * 27 + 2 * F * F + F + 1);
  assert.throws(() => parseMethod('prompt'), /unknown method 'prompt'; methods: generalization, scratch, ft, ft-last, lp/);
});

test('transductive inference pulls the predicted query size into [(1 - gamma) S, (1 + gamma) S]', async () => {
  await switchBackend('wasm');
  // The query has a second bright ball: a model trained on intensity alone over-segments it about 2.3x.
  const support = syntheticCase([20, 18, 16], 7, 1);
  const query = syntheticCase([12, 18, 16], 7, 2, { centre: [29, 18, 16], radius: 8 });
  const model = tinyBackbone();
  const base = { epochs: 40, learningRate: 0.3 };
  const plain = adaptToOrgan(model, [support], undefined, options('lp', base));
  const plainSize = adapterProbabilities(plain.adapter, { features: query.features }, { roi: ROI }).data.reduce((a, b) => a + b, 0);
  plain.adapter.dispose();
  const gamma = 0.25;
  const ti = { lambda: 1, gamma, form: 'paper' as const, pool: 1, query: query.features! };
  const result = adaptToOrgan(model, [support], undefined, options('lp', { ...base, ti }));
  const S = result.targetSize!;
  assert.ok(plainSize > (1 + gamma) * S * 1.5, `without TI the query size ${plainSize.toFixed(0)} should exceed (1 + gamma) S = ${((1 + gamma) * S).toFixed(0)}`);
  const size = adapterProbabilities(result.adapter, { features: query.features }, { roi: ROI }).data.reduce((a, b) => a + b, 0);
  assert.ok(size >= (1 - gamma) * S * 0.95 && size <= (1 + gamma) * S * 1.05, `with TI the query size ${size.toFixed(0)} should be near [${((1 - gamma) * S).toFixed(0)}, ${((1 + gamma) * S).toFixed(0)}]`);
  assert.ok(result.history.slice(0, 20).every((h) => h.sizeLoss === undefined) && result.history.slice(20).every((h) => h.sizeLoss !== undefined), 'TI is active in the last half of the epochs only');
  result.adapter.dispose();
  assert.throws(() => adaptToOrgan(model, [support], undefined, options('ft', { ti })), /transductive inference trains on cached backbone features \(lp, the adapters, ft-last\); ft, scratch, the PEFT methods and a trained decoder change the network/);
});

test('scratch starts from a given Swin encoder (the reference start) and is random elsewhere; other methods refuse one', async () => {
  await switchBackend('cpu');
  const config = swinUnetrConfig({ featureSize: 12, outChannels: 29 });
  const backbone = SwinUNETR.create(config, 0);
  const encoder = SwinUNETR.create(config, 7);
  const fromEncoder = Adapter.create('scratch', backbone, undefined, 1, encoder);
  const random = Adapter.create('scratch', backbone, undefined, 1);
  const value = (adapter: Adapter, name: string) => Array.from(adapter.variables.get(`network.${name}`)!.dataSync());
  const encoderName = 'swinViT.layers1.0.blocks.0.attn.qkv.weight';
  const decoderName = 'decoder1.conv_block.conv1.conv.weight';
  assert.deepEqual(value(fromEncoder, encoderName), Array.from(encoder.p(encoderName).dataSync()), 'the encoder is copied');
  assert.notDeepEqual(value(random, encoderName), Array.from(encoder.p(encoderName).dataSync()));
  assert.deepEqual(value(fromEncoder, decoderName), value(random, decoderName), 'the decoder stays as the seed draws it');
  assert.notDeepEqual(value(fromEncoder, decoderName), Array.from(encoder.p(decoderName).dataSync()));
  const other = SwinUNETR.create(swinUnetrConfig({ featureSize: 24, outChannels: 29 }), 0);
  assert.throws(() => Adapter.create('scratch', backbone, undefined, 1, other), /has swinViT\.patch_embed\.proj\.weight of shape \[8,24\], the network needs \[8,12\]/);
  const support = syntheticCase([20, 18, 16], 6, 1);
  assert.throws(() => adaptToOrgan(backbone, [support], undefined, { ...DEFAULT_ADAPT, method: 'lp', roi: ROI, epochs: 1, scratchEncoder: encoder }), /an encoder to start from is for scratch only, not lp/);
  for (const m of [fromEncoder, random]) m.dispose();
  for (const m of [backbone, encoder, other]) m.dispose();
});

test('the method registry: one entry per method, parameter counts without building, and the spatial adapter runs the decoder\'s UnetResBlock', async () => {
  await switchBackend('cpu');
  const model = tinyBackbone();
  assert.deepEqual(ADAPT_METHODS, ['generalization', 'scratch', 'ft', 'ft-last', 'lp', 'adapter', 'adapter-k1', 'residual-adapter', 'mlp-adapter', 'lora', 'adaptformer', 'bitfit', 'ln-affine', 'compacter']);
  const tensors = tf.memory().numTensors;
  const counts: Record<string, number> = {};
  for (const method of ADAPT_METHODS) {
    const adapter = Adapter.create(method, model, undefined, 0);
    counts[method] = adapter.trainableParameters;
    assert.equal(METHODS[method].trains ? METHODS[method].parameterCount(model.config) : 0, adapter.trainableParameters, `${method}: declared and built parameter counts agree`);
    assert.equal(adapter.input, METHODS[method].input);
    adapter.dispose();
  }
  assert.equal(tf.memory().numTensors, tensors, 'building and disposing every method leaves no tensor');
  // F = 12: lp = 12 + 1; adapter = 2 x 27 x 12 x 12 + 13; kernel 1: 2 x 144 + 13.
  assert.deepEqual([counts.lp, counts.adapter, counts['adapter-k1'], counts.generalization], [13, 7789, 301, 0]);
  assert.equal(counts.ft, model.parameterCount + 13);

  // With encoder2's weights (a UnetResBlock of F -> F) the spatial adapter's features are that block's output.
  const adapter = Adapter.create('adapter', model, undefined, 0);
  adapter.variables.get('adapter.conv1')!.assign(model.p('encoder2.layer.conv1.conv.weight'));
  adapter.variables.get('adapter.conv2')!.assign(model.p('encoder2.layer.conv2.conv.weight'));
  const x = tf.randomNormal([1, 8, 8, 8, F], 0, 1, 'float32', 3) as tf.Tensor5D;
  const head = tf.tidy(() => adapter.forward({ features: x }));
  const expected = tf.tidy(() => {
    const block = model.resBlock('encoder2.layer.', x);
    return tf.add(tf.matMul(tf.reshape(block, [-1, F]), adapter.variables.get('head.weight')!), adapter.variables.get('head.bias')!).reshape([1, 8, 8, 8, 1]);
  });
  assert.ok(tf.max(tf.abs(tf.sub(head, expected))).dataSync()[0] < 1e-5, 'adapter = decoder UnetResBlock + head');
  tf.dispose([x, head, expected]);
  adapter.dispose();
});

test("early stopping (the reference-head recipe): the 10-epoch moving average of the training loss must fall by 0.001 over 20 epochs, checked from epoch 31", async () => {
  const rule = RECIPES['reference-head'].earlyStopping!;
  assert.deepEqual(rule, { window: 10, patience: 20, minDelta: 0.001 });
  const flat = Array.from({ length: 40 }, () => 0.5);
  assert.equal(shouldStopEarly(flat.slice(0, 30), rule), false, 'not before epoch 31');
  assert.equal(shouldStopEarly(flat.slice(0, 31), rule), true);
  const falling = Array.from({ length: 60 }, (_, i) => 1 - 0.0001 * i);
  // A fall of 0.0001 per epoch is 0.002 over 20 epochs of the moving average: it goes on.
  assert.equal(shouldStopEarly(falling, rule), false);
  // After a steep fall (0.01 per epoch) the plateau of epochs 41-60 still sees the fall in the average 20 epochs back.
  const steep = Array.from({ length: 60 }, (_, i) => (i < 40 ? 1 - 0.01 * i : 1 - 0.01 * 40));
  assert.equal(shouldStopEarly(steep, rule), false);
  assert.equal(shouldStopEarly([...steep, ...Array.from({ length: 10 }, () => steep[59])], rule), true);
  // A run stops at the first epoch where the rule holds.
  await switchBackend('cpu');
  const support = syntheticCase([18, 18, 16], 7, 1);
  const result = adaptToOrgan(tinyBackbone(), [support], undefined, options('lp', { epochs: 40, learningRate: 0, earlyStopping: { window: 2, patience: 2, minDelta: 1 } }));
  assert.equal(result.history.at(-1)!.epoch, 5, 'stops after patience + window + 1 epochs when the loss cannot fall');
  result.adapter.dispose();
  const head = RECIPES['reference-head'];
  assert.deepEqual([head.weightDecay, head.warmupEpochs, head.epochs.lora, head.learningRates.lora, head.learningRates.bitfit, head.learningRates.adapter, head.threshold, head.predictionLargestComponent, head.groundTruthLargestComponent, head.head], [0, 0, 199, 1e-3, 1e-2, 1e-4, 0.5, false, false, 'zero-shot']);
});

test('a multi-class head (background + softmax over two organs) learns both on features that tell them apart; one-hot targets, argmax labels', async () => {
  await switchBackend('wasm');
  const organs = [
    { centre: [12, 12, 10], radius: 6 },
    { centre: [28, 24, 22], radius: 5 },
  ];
  const rng = new Rng(4);
  const inBall = (i: number, j: number, k: number, b: { centre: number[]; radius: number }) => (i - b.centre[0]) ** 2 + (j - b.centre[1]) ** 2 + (k - b.centre[2]) ** 2 <= b.radius ** 2;
  const labelAt = (i: number, j: number, k: number) => (inBall(i, j, k, organs[0]) ? 1 : inBall(i, j, k, organs[1]) ? 2 : 0);
  const image = volumeFrom(SHAPE, diagonalAffine([2, 2, 2]), (i, j, k) => [0.3, 0.7, 0.9][labelAt(i, j, k)]);
  const mask = volumeFrom(SHAPE, diagonalAffine([2, 2, 2]), labelAt);
  const labels = mask.withData(Uint8Array.from(mask.data)) as Volume<Uint8Array>;
  const grid = volumeToGrid(labels);
  const data = new Float32Array(grid.data.length * F);
  for (let v = 0; v < grid.data.length; v++) {
    data[v * F] = grid.data[v] === 1 ? 1 : -1;
    data[v * F + 1] = grid.data[v] === 2 ? 1 : -1;
    for (let c = 2; c < F; c++) data[v * F + c] = 0.3 * rng.normal();
  }
  const support: SupportVolume = { id: 'two-balls', image, mask: labels, features: { features: { data, shape: SHAPE, channels: F }, seconds: 0 } };
  const model = tinyBackbone();
  const tensors = tf.memory().numTensors;
  const result = adaptToOrgan(model, [support], { organs: [undefined, undefined] }, options('lp', { epochs: 100, learningRate: 0.1, cropsPerStep: 2 }));
  assert.equal(result.adapter.outputChannels, 3);
  assert.equal(result.trainableParameters, 3 * F + 3);
  const losses = result.history.map((h) => h.loss);
  assert.ok(losses.slice(-5).reduce((a, b) => a + b) < losses.slice(0, 5).reduce((a, b) => a + b), 'the loss falls');
  const predicted = probabilitiesToLabels(adapterProbabilities(result.adapter, { features: support.features }, { roi: ROI }), image);
  for (const organ of [1, 2]) {
    const d = dice(Uint8Array.from(predicted.data, (v) => (v === organ ? 1 : 0)), Uint8Array.from(labels.data, (v) => (v === organ ? 1 : 0)));
    assert.ok(d > 0.8, `organ ${organ}: Dice ${d.toFixed(3)}`);
  }
  result.adapter.dispose();
  assert.equal(tf.memory().numTensors, tensors);
  assert.throws(
    () => adaptToOrgan(tinyBackbone(), [support], { organs: [undefined, undefined] }, options('lp', { epochs: 1, ti: { lambda: 1, gamma: 0.2, form: 'paper', pool: 1, query: support.features! } })),
    /transductive inference constrains one organ's size/,
  );
});

test('adaptation crops: the model\'s adaptation ROI for cached-feature methods, its ROI where the network runs on crops; sizes a method cannot take are refused', async () => {
  await switchBackend('wasm');
  const preprocessing: ModelPreprocessing = { spacing: 4, window: [-175, 250], roi: [64, 64, 64], adaptationRoi: [32, 32, 32] };
  assert.deepEqual(adaptationCrop(preprocessing, 'adapter'), [32, 32, 32]);
  assert.deepEqual(adaptationCrop(preprocessing, 'lp'), [32, 32, 32]);
  assert.deepEqual(adaptationCrop(preprocessing, 'ft-last'), [32, 32, 32]);
  assert.deepEqual(adaptationCrop(preprocessing, 'ft'), [64, 64, 64]);
  assert.deepEqual(adaptationCrop(preprocessing, 'lora'), [64, 64, 64]);
  assert.deepEqual(adaptationCrop(preprocessing, 'adapter', 'fine-tuned'), [64, 64, 64], 'a trained decoder reads the image on every crop');
  assert.deepEqual(adaptationCrop({ ...preprocessing, adaptationRoi: undefined }, 'adapter'), [64, 64, 64]);
  assert.deepEqual(adaptationCrop(preprocessing, 'adapter', 'frozen', 20), [20, 20, 20]);
  assert.throws(() => adaptationCrop(preprocessing, 'ft', 'frozen', 48), /adaptation crop 48x48x48: .*divisible by 32/);
  assert.throws(() => adaptationCrop(preprocessing, 'ft-last', 'frozen', 21), /adaptation crop 21x21x21: .*even/);
  assert.throws(() => adaptationCrop(preprocessing, 'adapter', 'frozen', 1), /at least 2 voxels/);

  // Crops smaller than the volume still learn the organ from cached features, and are what the step trains on.
  const support = syntheticCase([18, 18, 16], 7, 1);
  const query = syntheticCase([22, 16, 15], 9, 2);
  const model = tinyBackbone();
  const tensorsBefore = tf.memory().numTensors;
  const small = adaptToOrgan(model, [support], undefined, options('adapter', { roi: [16, 16, 16], epochs: 40, learningRate: 3e-2 }));
  const after = dice(probabilitiesToMask(adapterProbabilities(small.adapter, { features: query.features }, { roi: ROI }), query.image).data, query.mask.data);
  assert.ok(after > 0.7, `adapter on 16^3 crops: query Dice ${after.toFixed(3)}`);
  small.adapter.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore, 'small crops leak tensors');
  const full = adaptToOrgan(model, [support], undefined, options('adapter', { epochs: 2 }));
  const smallAgain = adaptToOrgan(model, [support], undefined, options('adapter', { roi: [16, 16, 16], epochs: 2 }));
  assert.notDeepEqual(full.history.map((h) => h.loss), smallAgain.history.map((h) => h.loss), 'the crop size changes what a step sees');
  [full, smallAgain].forEach((r) => r.adapter.dispose());
  // Without the cache the backbone runs on every crop, which needs sizes divisible by 32.
  assert.throws(() => adaptToOrgan(model, [support], undefined, options('adapter', { roi: [16, 16, 16], cachedFeatures: false })), /divisible by 32/);
});
