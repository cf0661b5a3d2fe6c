import { before, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { Adapter, METHODS, zeroShotRow } from '../lib/adapters/adapters';
import { loadAdapter, saveAdapter } from '../lib/adapters/adapter-io';
import { PEFT_METHOD_NAMES, PeftMethodName, peftParameters } from '../lib/adapters/methods/peft';
import { adapterProbabilities } from '../lib/inference/segment';
import { Shape3, Volume } from '../lib/io/volume';
import { SwinUNETR, phmLinear, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { DEFAULT_ADAPT, SupportVolume, adaptToOrgan } from '../lib/training/adapt';
import { RECIPES } from '../lib/training/recipes';
import { Rng, seedFrom } from '../lib/util/random';
import { CLI, diagonalAffine, maxAbsDifference, tempDir, volumeFrom } from './helpers';

/**
 * The PEFT methods of the authors' later code (lib/adapters/methods/peft.ts) on a tiny network
 * (F = 12, 32^3 crops): parameter counts against the reference's shapes at F = 48, what an untrained
 * method does to the network's output, where gradients go, and saving.
 */
const F = 12;
const SHAPE: Shape3 = [40, 36, 32];
const ROI: Shape3 = [32, 32, 32];
const LIVER = 5;
let model: SwinUNETR;

before(async () => {
  await switchBackend('wasm');
  model = SwinUNETR.create(swinUnetrConfig({ featureSize: F, outChannels: 29 }), 0);
});

function ballCase(centre: number[], radius: number): SupportVolume {
  const inBall = (i: number, j: number, k: number) => (i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2 <= radius * radius;
  const image = volumeFrom(SHAPE, diagonalAffine([2, 2, 2]), (i, j, k) => (inBall(i, j, k) ? 0.8 : 0.3) + 0.05 * Math.sin(i * 1.3 + j * 0.7 + k));
  const mask = image.withData(Uint8Array.from({ length: image.data.length }, (_, v) => (image.data[v] > 0.6 ? 1 : 0))) as Volume<Uint8Array>;
  return { id: `ball-${centre.join('-')}`, image, mask };
}

const sum = (sizes: Map<string, number>, keep: (name: string) => boolean = () => true) => [...sizes].filter(([name]) => keep(name)).reduce((a, [, n]) => a + n, 0);

test("PEFT parameter counts at F = 48 equal the reference code's, computed from its shapes", () => {
  const paper = swinUnetrConfig({ featureSize: 48 });
  const counts = Object.fromEntries(PEFT_METHOD_NAMES.map((name) => [name, peftParameters(name, paper)])) as Record<PeftMethodName, ReturnType<typeof peftParameters>>;
  assert.deepEqual([sum(counts.lora.added), sum(counts.lora.inPlace)], [69_120, 0]);
  assert.deepEqual([sum(counts.adaptformer.added), sum(counts.adaptformer.inPlace)], [47_648, 0]);
  const table = (name: string) => name.endsWith('relative_position_bias_table');
  assert.equal(sum(counts.bitfit.added), 0);
  assert.deepEqual([sum(counts.bitfit.inPlace, (n) => !table(n)), sum(counts.bitfit.inPlace, table)], [12_960, 197_730]);
  assert.ok(![...counts.bitfit.inPlace.keys()].some((n) => n.includes('norm')), 'BitFit leaves the LayerNorm biases frozen');
  assert.deepEqual([sum(counts['ln-affine'].added), sum(counts['ln-affine'].inPlace)], [0, 17_280]);
  assert.deepEqual([sum(counts.compacter.added), sum(counts.compacter.inPlace)], [199_744, 17_280]);
  // The registry's count (head included) is what a built adapter trains.
  for (const name of PEFT_METHOD_NAMES) {
    const adapter = Adapter.create(name, model, zeroShotRow(model, LIVER), 1);
    const own = peftParameters(name, model.config);
    assert.equal(adapter.trainableParameters, sum(own.added) + sum(own.inPlace) + F + 1, name);
    assert.equal(METHODS[name].parameterCount(model.config), adapter.trainableParameters, name);
    adapter.dispose();
  }
});

test('fseft methods --feature-size 48 prints every method with the reference counts plus the 49 of the head, without a model', () => {
  const run = spawnSync(process.execPath, [CLI, 'methods', '--feature-size', '48', '--json'], { encoding: 'utf8', env: { ...process.env, FSEFT_BACKEND: 'cpu' } });
  assert.equal(run.status, 0, run.stderr);
  const listed = JSON.parse(run.stdout) as { featureSize: number; parameters: number; methods: Array<{ method: string; trainableParameters: number }> };
  const count = Object.fromEntries(listed.methods.map((m) => [m.method, m.trainableParameters]));
  assert.equal(listed.parameters, 62_188_031);
  assert.deepEqual(
    [count.lora, count.adaptformer, count.bitfit, count['ln-affine'], count.compacter, count.lp],
    [69_120 + 49, 47_648 + 49, 12_960 + 197_730 + 49, 17_280 + 49, 199_744 + 17_280 + 49, 49],
  );
  assert.match(spawnSync(process.execPath, [CLI, 'methods', '--feature-size', '50'], { encoding: 'utf8' }).stderr, /feature size must be divisible by 12/);
});

test('phmLinear is x (sum_i rule_i (x) W_i) + b', () => {
  const rng = new Rng(4);
  const n = 4;
  const [inPart, outPart] = [2, 3];
  const draw = (count: number) => Float32Array.from({ length: count }, () => rng.uniform(-1, 1));
  const rule = draw(n * n * n);
  const w = draw(n * inPart * outPart);
  const bias = draw(n * outPart);
  const x = draw(5 * n * inPart);
  const h = new Float64Array(n * inPart * n * outPart);
  for (let i = 0; i < n; i++)
    for (let a = 0; a < n; a++)
      for (let c = 0; c < n; c++)
        for (let k = 0; k < inPart; k++)
          for (let p = 0; p < outPart; p++) h[(a * inPart + k) * n * outPart + c * outPart + p] += rule[(i * n + a) * n + c] * w[(i * inPart + k) * outPart + p];
  const expected = new Float64Array(5 * n * outPart);
  for (let r = 0; r < 5; r++)
    for (let o = 0; o < n * outPart; o++) {
      let total = bias[o];
      for (let j = 0; j < n * inPart; j++) total += x[r * n * inPart + j] * h[j * n * outPart + o];
      expected[r * n * outPart + o] = total;
    }
  const y = tf.tidy(() => phmLinear(tf.tensor2d(x, [5, n * inPart]), tf.tensor3d(rule, [n, n, n]), tf.tensor3d(w, [n, inPart, outPart]), tf.tensor1d(bias)).dataSync());
  assert.ok(maxAbsDifference(y, expected) < 1e-5, `PHM product differs by ${maxAbsDifference(y, expected)}`);
});

test("an untrained LoRA, AdaptFormer, BitFit or LN-affine gives the frozen network's output exactly; Compacter's PHM layers shrink the blocks' branches", () => {
  const image = tf.randomUniform([1, 32, 32, 32, 1], 0, 1, 'float32', 7) as tf.Tensor5D;
  const frozen = model.forward(image);
  const probe = Adapter.create('lp', model, zeroShotRow(model, LIVER), 1);
  const expected = probe.forward({ features: frozen.features });
  for (const name of PEFT_METHOD_NAMES) {
    const adapter = Adapter.create(name, model, zeroShotRow(model, LIVER), 1);
    const logits = adapter.forward({ image });
    const difference = maxAbsDifference(logits.dataSync(), expected.dataSync());
    if (name === 'compacter') assert.ok(difference > 1e-3, `compacter replaces each branch by PHM(branch), about 0.01 of it at the start: the output must change (difference ${difference})`);
    else assert.equal(difference, 0, `${name} at its initial values must not change the output`);
    logits.dispose();
    adapter.dispose();
  }
  tf.dispose([image, frozen.logits, frozen.features, expected]);
  probe.dispose();
});

test('gradients through the backbone are the same with and without checkpointing, and reach the added modules and the tuned norms', () => {
  const image = tf.randomUniform([1, 32, 32, 32, 1], 0, 1, 'float32', 8) as tf.Tensor5D;
  for (const name of ['lora', 'compacter'] as const) {
    const adapter = Adapter.create(name, model, zeroShotRow(model, LIVER), 2);
    const gradients = (checkpoint: boolean) => {
      const { grads, value } = tf.variableGrads(() => tf.mean(tf.sigmoid(adapter.forward({ image }, { checkpoint }))) as tf.Scalar, adapter.trainable);
      const host = new Map(Object.entries(grads).map(([key, g]) => [key, g.dataSync().slice()]));
      tf.dispose([value, ...Object.values(grads)]);
      return host;
    };
    const plain = gradients(false);
    const recomputed = gradients(true);
    assert.equal(recomputed.size, adapter.trainable.length);
    let nonZero = 0;
    for (const [key, g] of plain) {
      const scale = Math.max(...Array.from(g, Math.abs));
      assert.ok(maxAbsDifference(g, recomputed.get(key)!) <= 1e-4 * scale + 1e-12, `${name}: gradient of ${key} differs under checkpointing`);
      if (scale > 0) nonZero++;
    }
    // LoRA's A gets no gradient while B is zero; B, the head and every PHM layer and norm do
    // (Compacter's are small: each branch passes through a PHM product of scale 0.01).
    assert.ok(nonZero >= (name === 'lora' ? plain.size / 2 : plain.size - 1), `${name}: only ${nonZero} of ${plain.size} variables got a gradient`);
    adapter.dispose();
  }
  image.dispose();
});

test('each PEFT method lowers the support loss, trains only its own variables, and saves and loads to the same predictions', async () => {
  const support = ballCase([18, 18, 16], 7);
  const query = ballCase([22, 16, 15], 8);
  const snapshot = () => new Map([...model.params].map(([name, p]) => [name, p.dataSync().slice()]));
  const backboneBefore = snapshot();
  const work = tempDir('fseft-peft-');
  const tensors = tf.memory().numTensors;
  for (const name of PEFT_METHOD_NAMES) {
    const initial = Adapter.create(name, model, zeroShotRow(model, LIVER), seedFrom(3, 'adapter-init'));
    const result = adaptToOrgan(model, [support], zeroShotRow(model, LIVER), { ...DEFAULT_ADAPT, method: name, roi: ROI, epochs: 8, cropsPerStep: 1, learningRate: RECIPES.paper.learningRates[name], warmupEpochs: 0, seed: 3 });
    const losses = result.history.map((r) => r.segmentationLoss);
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    assert.ok(mean(losses.slice(-3)) < mean(losses.slice(0, 3)), `${name}: support loss did not fall (${losses.map((l) => l.toFixed(3)).join(' ')})`);
    let moved = 0;
    for (const [variable, value] of result.adapter.variables) {
      if (variable.startsWith('head.')) continue;
      if (maxAbsDifference(value.dataSync(), initial.variables.get(variable)!.dataSync()) > 0) moved++;
    }
    assert.ok(moved > 0, `${name}: none of its own variables changed`);
    initial.dispose();
    const probabilities = adapterProbabilities(result.adapter, { image: query.image }, { roi: ROI });
    const dir = path.join(work, name);
    await saveAdapter(result.adapter, dir, { organ: 'liver', backbone: { fingerprint: 'test', featureSize: F, outChannels: 29 }, preprocessing: { spacing: 2, window: [-175, 250], roi: ROI }, training: {}, createdAt: 'test' });
    const { adapter } = loadAdapter(dir, model, 'test');
    assert.equal(adapter.trainableParameters, result.trainableParameters);
    assert.deepEqual(adapterProbabilities(adapter, { image: query.image }, { roi: ROI }).data, probabilities.data, `${name}: the saved adapter predicts the same`);
    adapter.dispose();
    result.adapter.dispose();
  }
  assert.equal(tf.memory().numTensors, tensors, 'no tensors left behind');
  for (const [name, values] of snapshot()) assert.equal(maxAbsDifference(values, backboneBefore.get(name)!), 0, `backbone parameter ${name} changed`);
  // A saved adapter that lacks one of its method's variables is refused by name.
  const manifest = JSON.parse(fs.readFileSync(path.join(work, 'lora', 'adapter.json'), 'utf8'));
  fs.writeFileSync(path.join(work, 'lora', 'adapter.json'), JSON.stringify({ ...manifest, method: 'adaptformer' }));
  assert.throws(() => loadAdapter(path.join(work, 'lora'), model, 'test'), /the saved adaptformer adapter has no swinViT\.layers1\.0\.blocks\.0\.mlpAdapter\.down_proj\.weight/);
});

test("--decoder fine-tuned and new (the reference's option): the decoder trains under its own names, the adapter reads the image and round-trips with its mode", async () => {
  const decoderSize = model.specs.filter((s) => s.name.startsWith('decoder')).reduce((total, s) => total + s.torchShape.reduce((a, b) => a * b, 1), 0);
  const image = tf.randomUniform([1, 32, 32, 32, 1], 0, 1, 'float32', 9) as tf.Tensor5D;
  const frozen = model.forward(image);
  const probe = Adapter.create('lp', model, zeroShotRow(model, LIVER), 1);
  const expected = probe.forward({ features: frozen.features });
  const fineTuned = Adapter.create('lp', model, zeroShotRow(model, LIVER), 1, undefined, 'fine-tuned');
  assert.equal(fineTuned.input, 'image');
  assert.equal(fineTuned.trainableParameters, decoderSize + F + 1);
  assert.equal(maxAbsDifference(fineTuned.forward({ image }).dataSync(), expected.dataSync()), 0, 'a fine-tuned decoder starts as the pretrained one');
  const fresh = Adapter.create('lp', model, zeroShotRow(model, LIVER), 1, undefined, 'new');
  assert.ok(maxAbsDifference(fresh.forward({ image }).dataSync(), expected.dataSync()) > 1e-3, 'a new decoder and head start random');
  const withLora = Adapter.create('lora', model, zeroShotRow(model, LIVER), 1, undefined, 'fine-tuned');
  assert.equal(withLora.trainableParameters, sum(peftParameters('lora', model.config).added) + decoderSize + F + 1);
  tf.dispose([image, frozen.logits, frozen.features, expected]);
  for (const adapter of [probe, fineTuned, fresh, withLora]) adapter.dispose();
  assert.throws(() => Adapter.create('ft', model, undefined, 1, undefined, 'fine-tuned'), /a fine-tuned decoder does not apply to ft \(it trains the whole network already\)/);
  assert.throws(() => Adapter.create('lp', model, undefined, 1, undefined, 'warm' as 'new'), /decoder must be one of frozen, fine-tuned, new, got 'warm'/);

  const support = ballCase([18, 18, 16], 7);
  const query = ballCase([22, 16, 15], 8);
  const before = new Map([...model.params].map(([name, p]) => [name, p.dataSync().slice()]));
  const result = adaptToOrgan(model, [support], zeroShotRow(model, LIVER), { ...DEFAULT_ADAPT, method: 'adapter', decoder: 'fine-tuned', roi: ROI, epochs: 2, cropsPerStep: 1, learningRate: 1e-4, seed: 4 });
  const moved = [...result.adapter.variables].filter(([name, v]) => name.startsWith('decoder') && maxAbsDifference(v.dataSync(), before.get(name)!) > 0).length;
  assert.ok(moved > 0, 'the decoder trained');
  for (const [name, p] of model.params) assert.equal(maxAbsDifference(p.dataSync(), before.get(name)!), 0, `backbone parameter ${name} changed`);
  const dir = path.join(tempDir('fseft-decoder-'), 'adapter');
  await saveAdapter(result.adapter, dir, { organ: 'liver', backbone: { fingerprint: 'test', featureSize: F, outChannels: 29 }, preprocessing: { spacing: 2, window: [-175, 250], roi: ROI }, training: {}, createdAt: 'test' });
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'adapter.json'), 'utf8')).decoder, 'fine-tuned');
  const { adapter } = loadAdapter(dir, model, 'test');
  assert.equal(adapter.decoder, 'fine-tuned');
  assert.deepEqual(adapterProbabilities(adapter, { image: query.image }, { roi: ROI }).data, adapterProbabilities(result.adapter, { image: query.image }, { roi: ROI }).data);
  adapter.dispose();
  result.adapter.dispose();
});
