import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { writeSynthDataset } from '../lib/data/synth/synth-datasets';
import { Dataset, loadCase } from '../lib/data/datasets';
import { annotationVector } from '../lib/data/template';
import { readNifti, writeNifti } from '../lib/io/nifti';
import { Volume, sameGrid } from '../lib/io/volume';
import { ModelPreprocessing, loadModel, modelFingerprint, saveModel } from '../lib/networks/model-io';
import { zeroShotRow } from '../lib/adapters/adapters';
import { loadAdapter, saveAdapter } from '../lib/adapters/adapter-io';
import { backboneFeatures } from '../lib/inference/features';
import { prepareCase } from '../lib/inference/predict';
import { adapterProbabilities } from '../lib/inference/segment';
import { DEFAULT_ADAPT, METHOD_LEARNING_RATES, adaptToOrgan } from '../lib/training/adapt';
import { RECIPES, recipeGamma } from '../lib/training/recipes';
import { recipesPage } from '../lib/training/pretrain-recipes';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { preprocessCase } from '../lib/transforms/preprocess';
import { TrainingCase, pretrain } from '../lib/training/pretrain';
import { readRecords } from '../lib/training/experiment';
import { CLI, REPO_ROOT, tempDir } from './helpers';

/**
 * Few-shot commands end to end on a tiny network (F = 12, 32^3 patches) and coarse synthetic CTs
 * (10 mm voxels), so that each backbone pass takes a second or two.
 */
const PREPROCESSING: ModelPreprocessing = { spacing: 10, window: [-175, 250], roi: [32, 32, 32] };
let work = '';
let modelDir = '';
let otherModelDir = '';
let dataset: Dataset;

function fseft(...args: string[]) {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, FSEFT_BACKEND: 'wasm' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

before(async () => {
  await switchBackend('wasm');
  work = tempDir('fseft-fewshot-');
  dataset = await writeSynthDataset(path.join(work, 'data'), { name: 'tiny', cases: 3, seed: 5, institution: 'site-b', spacingScale: 4, organs: ['liver', 'spleen'] }, { workers: 1, progress: false });
  const config = swinUnetrConfig({ featureSize: 12, outChannels: 29 });
  modelDir = path.join(work, 'model');
  otherModelDir = path.join(work, 'other-model');
  for (const [dir, seed] of [[modelDir, 0], [otherModelDir, 1]] as Array<[string, number]>) {
    const model = SwinUNETR.create(config, seed);
    await saveModel(model, dir, { createdAt: 'test', origin: 'init', seed }, { preprocessing: PREPROCESSING });
    model.dispose();
  }
});

const image = (i: number) => dataset.cases[i].image;
const label = (i: number) => dataset.cases[i].label!;

test('pretraining resumes after an interruption with exactly the weights of an uninterrupted run', async () => {
  const loaded = await loadCase(dataset, dataset.cases[0]);
  const pre = preprocessCase({ image: loaded.image, label: loaded.label }, { spacing: 10 });
  const cases: TrainingCase[] = [{ id: 'a', dataset: 'tiny', image: pre.image, label: pre.label as Volume<Uint8Array>, annotation: annotationVector(dataset.annotated) }];
  const options = { featureSize: 12, roi: [32, 32, 32] as [number, number, number], epochs: 2, samplesPerVolume: 1, learningRate: 1e-3, weightDecay: 1e-5, warmupEpochs: 1, seed: 2, bce: true, checkpoint: false, preprocessing: PREPROCESSING };
  const straightDir = path.join(work, 'pretrain-straight');
  const straight = await pretrain(cases, straightDir, options);
  const resumedDir = path.join(work, 'pretrain-resumed');
  await assert.rejects(
    pretrain(cases, resumedDir, options, () => {
      throw new Error('interrupted');
    }),
    /interrupted/,
  );
  assert.equal(JSON.parse(fs.readFileSync(path.join(resumedDir, 'resume', 'epoch-1', 'train-state.json'), 'utf8')).epoch, 1);
  const tensors = tf.memory().numTensors;
  const resumed = await pretrain(cases, resumedDir, options);
  for (const [name, value] of straight.params) {
    const other = resumed.params.get(name)!;
    assert.deepEqual(await other.data(), await value.data(), `${name} differs after resuming`);
  }
  const log = fs.readFileSync(path.join(resumedDir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(log.map((r) => r.epoch), [1, 2]);
  assert.ok(Object.keys(log[0].classLoss).includes('liver'));
  resumed.dispose();
  // Killed inside the commit of epoch 2 (after its weights, after its optimizer state, after its
  // state file): the resumed run redoes epoch 2 from epoch 1's weights and ends where the straight run did.
  for (const stage of ['weights', 'optimizer', 'state', 'log'] as const) {
    const dir = path.join(work, `pretrain-killed-${stage}`);
    await assert.rejects(
      pretrain(cases, dir, options, undefined, (at, epoch) => {
        if (at === stage && epoch === 2) throw new Error('killed');
      }),
      /killed/,
    );
    assert.deepEqual(fs.readdirSync(path.join(dir, 'resume')).filter((n) => !n.endsWith('.partial')), ['epoch-1'], 'epoch 2 is not committed');
    const again = await pretrain(cases, dir, options);
    for (const [name, value] of straight.params) assert.deepEqual(await again.params.get(name)!.data(), await value.data(), `${name} differs after a kill at '${stage}'`);
    const lines = fs.readFileSync(path.join(dir, 'log.jsonl'), 'utf8').trim().split('\n');
    assert.deepEqual(lines.map((l) => JSON.parse(l).epoch), [1, 2], `the log after a kill at '${stage}'`);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'resume')), ['epoch-2']);
    again.dispose();
  }
  straight.dispose();
  assert.ok(tf.memory().numTensors <= tensors, 'pretraining leaves no tensors behind');
  await assert.rejects(pretrain(cases, resumedDir, { ...options, learningRate: 5e-4 }), /holds a run with other options/);
});

test('fseft adapt then predict: the mask lies on the input grid; the adapter records its backbone', async () => {
  const adapterDir = path.join(work, 'adapter-lp');
  const adapt = fseft('adapt', '--model', modelDir, '--organ', 'liver', '--method', 'lp', '--support', `${image(0)}=${label(0)}:6`, '--query', `${image(1)}=${label(1)}:6`, '--ti', '--epochs', '2', '--crops', '1', '--out', adapterDir);
  assert.equal(adapt.code, 0, adapt.stderr);
  assert.match(adapt.stdout, /trainable parameters: 13\b/);
  assert.match(adapt.stdout, /TI target size S = \d+ voxels/);
  assert.match(adapt.stdout, /query Dice \(preprocessed grid, paper recipe's evaluation\): \d\.\d{4}/);
  const manifest = JSON.parse(fs.readFileSync(path.join(adapterDir, 'adapter.json'), 'utf8'));
  assert.equal(manifest.method, 'lp');
  assert.equal(manifest.organ, 'liver');
  assert.equal(manifest.trainableParameters, 13);
  assert.match(manifest.backbone.fingerprint, /^[0-9a-f]{16}$/);

  const maskFile = path.join(work, 'pred.nii.gz');
  const predict = fseft('predict', '--model', modelDir, '--adapter', adapterDir, '--image', image(2), '--out', maskFile, '--probabilities', path.join(work, 'prob.nii.gz'));
  assert.equal(predict.code, 0, predict.stderr);
  const [mask, input] = await Promise.all([readNifti(maskFile), readNifti(image(2))]);
  assert.ok(sameGrid(mask, input), 'the mask has the input geometry');
  assert.ok(Array.from(mask.data).every((v) => v === 0 || v === 1));
  const evaluate = fseft('evaluate', '--pred', maskFile, '--label', `${label(2)}:6`);
  assert.equal(evaluate.code, 0, evaluate.stderr);
  assert.ok(Number.isFinite(JSON.parse(evaluate.stdout).dice));

  const generalization = fseft('predict', '--model', modelDir, '--organ', 'liver', '--image', image(2), '--out', path.join(work, 'gen.nii.gz'));
  assert.equal(generalization.code, 0, generalization.stderr);
  assert.match(generalization.stdout, /liver \(generalization\)/);

  const foreign = fseft('predict', '--model', otherModelDir, '--adapter', adapterDir, '--image', image(2), '--out', path.join(work, 'x.nii.gz'));
  assert.equal(foreign.code, 1);
  assert.match(foreign.stderr, /was trained on another backbone/);
  assert.ok(!fs.existsSync(path.join(work, 'x.nii.gz')));
});

test('fseft adapt refuses bad input with clear messages and writes nothing', async () => {
  const out = path.join(work, 'never');
  const support = `${image(0)}=${label(0)}:6`;
  const cases: Array<[string[], RegExp]> = [
    [['--organ', 'brainstem', '--method', 'lp', '--support', support], /unknown organ 'brainstem'/],
    [['--organ', 'liver', '--method', 'prompt', '--support', support], /unknown method 'prompt'; methods: generalization, scratch, ft, ft-last, lp, adapter, adapter-k1, residual-adapter, mlp-adapter, lora, adaptformer, bitfit, ln-affine, compacter/],
    [['--organ', 'liver', '--method', 'lp', '--support', support, '--k', '5'], /--k 5 is larger than the 1 support volume\(s\) given/],
    [['--organ', 'liver', '--method', 'lp', '--support', `${image(0)}=${label(0)}:42`], /label value 42 does not occur \(values present: 1, 6\)/],
    [['--organ', 'liver', '--method', 'lp', '--support', support, '--ti'], /--ti needs --query/],
    [['--organ', 'liver', '--method', 'ft', '--support', support, '--query', image(1), '--ti'], /transductive inference trains on cached backbone features \(lp, the adapters, ft-last\); ft changes the network/],
  ];
  for (const [args, message] of cases) {
    const result = fseft('adapt', '--model', modelDir, ...args, '--epochs', '1', '--out', out);
    assert.equal(result.code, 1, `${args.join(' ')}: ${result.stdout}`);
    assert.match(result.stderr, message);
    assert.ok(!fs.existsSync(path.join(out, 'adapter.json')), 'no adapter is written');
  }
  // A query that is not CT in Hounsfield units (e.g. already normalised to [0, 1]).
  const normalised = path.join(work, 'normalised.nii.gz');
  const ct = await readNifti(image(1));
  await writeNifti(normalised, ct.withData(Float32Array.from(ct.data, (v) => Math.min(1, Math.max(0, (v + 175) / 425)))));
  const mr = fseft('adapt', '--model', modelDir, '--organ', 'liver', '--method', 'lp', '--support', support, '--query', normalised, '--ti', '--epochs', '1', '--out', out);
  assert.equal(mr.code, 1);
  assert.match(mr.stderr, /normalised\.nii\.gz.*do not look like CT in Hounsfield units/);
});

test('fseft experiment runs a grid, skips finished cells on a rerun, and fseft report prints the table', () => {
  const plan = path.join(work, 'plan.json');
  fs.writeFileSync(plan, JSON.stringify({ data: 'data', model: 'model', organs: ['liver'], methods: ['generalization', 'lp'], shots: [1], folds: 1, seeds: [0], queries: 1, epochs: 2, cropsPerStep: 1 }));
  const first = fseft('experiment', '--plan', plan);
  assert.equal(first.code, 0, first.stderr);
  const recordsFile = path.join(work, 'plan.records.jsonl');
  const records = readRecords(recordsFile);
  assert.deepEqual(records.map((r) => r.method), ['generalization', 'lp']);
  for (const r of records) {
    assert.equal(r.k, 1);
    assert.equal(r.supports.length, 1);
    assert.ok(r.dice >= 0 && r.dice <= 1);
    assert.ok(!Object.keys(r.queryDice).includes(r.supports[0]), 'the query is never a support');
  }
  assert.equal(records[1].trainableParameters, 13);
  const again = fseft('experiment', '--plan', plan);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(readRecords(recordsFile).length, 2, 'finished cells are skipped');
  assert.match(again.stdout, /0 backbone passes/);
  const report = fseft('report', recordsFile);
  assert.equal(report.code, 0, report.stderr);
  assert.match(report.stdout, /1-shot\nmethod\s+liver\s+mean\s+params\ngeneralization\s+\d\.\d{3}\s+\d\.\d{3}\s+0\nlp\s+\d\.\d{3}\s+\d\.\d{3}\s+13/);
  const withIntervals = fseft('report', recordsFile, '--intervals');
  assert.equal(withIntervals.code, 0, withIntervals.stderr);
  assert.match(withIntervals.stdout, /lp\s+\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]\s+\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]\s+\(n 1\)/);
  const plots = path.join(work, 'plots');
  const plotted = fseft('report', recordsFile, '--plot', plots);
  assert.equal(plotted.code, 0, plotted.stderr);
  assert.match(fs.readFileSync(path.join(plots, 'dice.svg'), 'utf8'), /^<svg/);
  assert.match(fs.readFileSync(path.join(plots, 'table.csv'), 'utf8'), /^k,method,liver,mean\n1,generalization,/);
  fs.writeFileSync(plan, JSON.stringify({ data: 'data', model: 'model', organs: ['liver'], methods: ['lp'], shots: [3], queries: 1, epochs: 1 }));
  const tooMany = fseft('experiment', '--plan', plan);
  assert.equal(tooMany.code, 1);
  assert.match(tooMany.stderr, /k = 3 needs 3 support volumes but only 2 remain after 1 queries/);
});

test('TI adapts once per query volume: two queries give two records with their own S_hat trajectories', () => {
  const plan = path.join(work, 'ti-plan.json');
  fs.writeFileSync(plan, JSON.stringify({ data: 'data', model: 'model', organs: ['liver'], methods: ['lp', 'lp+ti'], shots: [1], folds: 1, seeds: [0], queries: 2, epochs: 4, cropsPerStep: 1, ti: { lambda: [1], gamma: [0.1], form: 'normalised' } }));
  const run = fseft('experiment', '--plan', plan);
  assert.equal(run.code, 0, run.stderr);
  const records = readRecords(path.join(work, 'ti-plan.records.jsonl'));
  const plain = records.filter((r) => r.method === 'lp');
  const ti = records.filter((r) => r.method === 'lp+ti');
  assert.equal(plain.length, 1, 'a method without TI adapts once and is scored on both queries');
  assert.equal(Object.keys(plain[0].queryDice).length, 2);
  assert.equal(ti.length, 2, 'one TI record per query');
  assert.deepEqual(ti.map((r) => r.query).sort(), Object.keys(plain[0].queryDice).sort());
  for (const r of ti) {
    assert.deepEqual(Object.keys(r.queryDice), [r.query], 'a TI record is scored on its own query only');
    assert.equal(r.supports.length, 1);
    assert.ok(r.targetSize! > 0);
    assert.equal(r.sizeByEpoch!.length, 2, 'S_hat in each TI epoch (the last half of 4)');
  }
  assert.equal(ti[0].targetSize, ti[1].targetSize, 'S comes from the same supports');
  assert.notDeepEqual(ti[0].sizeByEpoch, ti[1].sizeByEpoch, 'each query has its own S_hat trajectory');
  assert.match(run.stdout, /lp\+ti liver k=1 fold 0 seed 0 gamma 0\.1 lambda 1 query \S+ \(S \d+, S_hat \d+\): Dice/);
});

test("the reference code's TI: one extra step per TI epoch, none while S_hat is inside the margin", async () => {
  await switchBackend('wasm');
  const { model } = loadModel(modelDir);
  const support = await prepareCase(image(0), PREPROCESSING, { file: label(0), value: 6 });
  const query = await prepareCase(image(1), PREPROCESSING);
  const supportFeatures = backboneFeatures(model, support.image, { roi: PREPROCESSING.roi });
  const queryFeatures = backboneFeatures(model, query.image, { roi: PREPROCESSING.roi });
  const run = async (ti?: { gamma: number }) => {
    const result = adaptToOrgan(model, [{ id: 's', image: support.image, mask: support.mask!, features: supportFeatures }], zeroShotRow(model, 5), {
      ...DEFAULT_ADAPT,
      method: 'lp',
      roi: PREPROCESSING.roi,
      epochs: 4,
      learningRate: 1e-2,
      cropsPerStep: 1,
      seed: 3,
      ti: ti ? { lambda: 1, gamma: ti.gamma, form: 'reference', pool: 2, query: queryFeatures } : undefined,
    });
    const weights = await Promise.all(result.adapter.trainable.map(async (v) => Array.from(await v.data())));
    result.adapter.dispose();
    return { result, weights };
  };
  const plain = await run();
  const inside = await run({ gamma: 1e6 });
  assert.deepEqual(inside.weights, plain.weights, 'inside the margin the reference takes no step');
  assert.deepEqual(inside.result.history.map((h) => h.predictedSize !== undefined), [false, false, true, true], 'S_hat is recorded at the end of each TI epoch');
  assert.deepEqual(inside.result.history.map((h) => h.sizeLoss ?? 0), [0, 0, 0, 0]);
  const outside = await run({ gamma: 0 });
  assert.notDeepEqual(outside.weights, plain.weights, 'outside the margin each TI epoch takes a step');
  assert.ok(outside.result.history[3].sizeLoss! > 0);
  assert.deepEqual(outside.result.history.slice(0, 2).map((h) => h.loss), plain.result.history.slice(0, 2).map((h) => h.loss), 'the support steps before TI are unchanged');
  model.dispose();
});

test('recipes: the paper recipe is the engine defaults; the reference recipe is the 2a14658 code point by point; plans and explicit values resolve against them', () => {
  const { paper, reference } = RECIPES;
  for (const method of ['lp', 'adapter', 'adapter-k1', 'residual-adapter', 'mlp-adapter', 'ft-last', 'ft', 'scratch'] as const) {
    assert.equal(paper.learningRates[method], METHOD_LEARNING_RATES[method], `paper lr of ${method}`);
    assert.equal(paper.epochs[method], DEFAULT_ADAPT.epochs);
  }
  assert.deepEqual([paper.weightDecay, paper.warmupEpochs, paper.cropsPerStep, paper.bce, paper.dice, paper.head, paper.threshold], [DEFAULT_ADAPT.weightDecay, DEFAULT_ADAPT.warmupEpochs, DEFAULT_ADAPT.cropsPerStep, DEFAULT_ADAPT.bce, 'pooled', 'zero-shot', 0.5]);
  assert.deepEqual(paper.ti, { form: 'paper', lambda: 1, gamma: 0.25 });
  assert.deepEqual(
    ['lp', 'adapter', 'ft-last', 'ft', 'scratch'].map((m) => [reference.learningRates[m as 'lp'], reference.epochs[m as 'lp']]),
    [[1e-1, 50], [1e-2, 100], [1e-2, 100], [1e-4, 150], [1e-4, 150]],
  );
  assert.deepEqual([reference.dice, reference.diceSmooth, reference.bce, reference.head, reference.groundTruthLargestComponent], ['per-crop', 1, false, 'random', true]);
  assert.deepEqual(reference.ti, { form: 'reference', lambda: 0.1, gamma: 0.3, gammaByOrgan: { rkidney: 0.5, lkidney: 0.5 } });
  assert.deepEqual(['lkidney', 'rkidney', 'liver'].map((o) => recipeGamma(reference, o)), [0.5, 0.5, 0.3]);
  assert.deepEqual(['lkidney', 'liver'].map((o) => recipeGamma(paper, o)), [0.25, 0.25]);
  assert.ok(Math.abs(reference.threshold - 0.6225) < 1e-4, 'logits > 0.5');
  for (const recipe of [paper, reference]) for (const field of ['learningRates', 'epochs', 'dice', 'head', 'ti', 'threshold', 'groundTruthLargestComponent']) assert.ok(recipe.sources[field], `${recipe.name}: no source for ${field}`);

  const plan = path.join(work, 'recipe-plan.json');
  const base = { data: 'data', model: 'model', organs: ['liver'], methods: ['lp'], shots: [1], folds: 1, seeds: [0], queries: 1, epochs: 2, cropsPerStep: 1 };
  fs.writeFileSync(plan, JSON.stringify({ ...base, recipe: 'reference' }));
  assert.equal(fseft('experiment', '--plan', plan).code, 0);
  fs.writeFileSync(plan, JSON.stringify(base));
  assert.equal(fseft('experiment', '--plan', plan).code, 0);
  fs.writeFileSync(plan, JSON.stringify({ ...base, recipe: 'reference', learningRates: { lp: 0.05 } }));
  assert.equal(fseft('experiment', '--plan', plan).code, 0);
  const records = readRecords(path.join(work, 'recipe-plan.records.jsonl'));
  assert.deepEqual(records.map((r) => [r.recipe, r.learningRate, r.epochs, r.head]), [['reference', 0.1, 2, 'random'], ['paper', 0.01, 2, 'zero-shot'], ['reference', 0.05, 2, 'random']]);
  // A plan may start the head elsewhere than its recipe: another cell, another number.
  fs.writeFileSync(plan, JSON.stringify({ ...base, head: 'random' }));
  assert.equal(fseft('experiment', '--plan', plan).code, 0);
  const randomHead = readRecords(path.join(work, 'recipe-plan.records.jsonl'))[3];
  assert.deepEqual([randomHead.recipe, randomHead.head], ['paper', 'random']);
  assert.notEqual(randomHead.key, records[1].key);
  const lines = fs.readFileSync(path.join(work, 'recipe-plan.records.jsonl'), 'utf8').split('\n').filter(Boolean);
  fs.writeFileSync(path.join(work, 'recipe-plan.records.jsonl'), lines.slice(0, 3).map((l) => l + '\n').join(''));
  // TI takes the recipe's margin for the organ unless the plan gives one for all organs.
  fs.writeFileSync(plan, JSON.stringify({ ...base, recipe: 'reference', methods: ['lp+ti'] }));
  assert.equal(fseft('experiment', '--plan', plan).code, 0);
  fs.writeFileSync(plan, JSON.stringify({ ...base, recipe: 'reference', methods: ['lp+ti'], ti: { gamma: [0.2] } }));
  assert.equal(fseft('experiment', '--plan', plan).code, 0);
  assert.deepEqual(readRecords(path.join(work, 'recipe-plan.records.jsonl')).slice(3).map((r) => [r.method, r.gamma, r.lambda]), [['lp+ti', 0.3, 0.1], ['lp+ti', 0.2, 0.1]]);
  assert.equal(fs.readFileSync(path.join(REPO_ROOT, 'docs', 'recipes.md'), 'utf8'), recipesPage(), 'docs/recipes.md is out of date: npm run docs:recipes');
  fs.writeFileSync(plan, JSON.stringify({ ...base, recipe: 'mine' }));
  assert.match(fseft('experiment', '--plan', plan).stderr, /plan: "recipe" must be one of paper, reference, reference-head, got "mine"/);
});

test('ft, scratch and ft-last train through the network; adapter directories round-trip to the same predictions', async () => {
  await switchBackend('wasm');
  const { model } = loadModel(modelDir);
  const fingerprint = modelFingerprint(modelDir);
  const support = await prepareCase(image(0), PREPROCESSING, { file: label(0), value: 6 });
  const query = await prepareCase(image(1), PREPROCESSING, { file: label(1), value: 6 });
  const decoderFeatures = (volume: Volume) => backboneFeatures(model, volume, { roi: PREPROCESSING.roi, decoderInputs: true });
  const supportFeatures = decoderFeatures(support.image);
  const queryFeatures = decoderFeatures(query.image);
  const tensors = tf.memory().numTensors;
  for (const method of ['ft-last', 'ft', 'scratch'] as const) {
    const result = adaptToOrgan(model, [{ id: 's', image: support.image, mask: support.mask!, features: supportFeatures }], zeroShotRow(model, 5), {
      ...DEFAULT_ADAPT,
      method,
      roi: PREPROCESSING.roi,
      epochs: 2,
      cropsPerStep: 1,
      learningRate: 1e-4,
      checkpoint: true,
    });
    assert.equal(result.history.length, 2);
    const inputs = { image: query.image, features: queryFeatures };
    const probabilities = adapterProbabilities(result.adapter, inputs, { roi: PREPROCESSING.roi });
    const dir = path.join(work, `adapter-${method}`);
    await saveAdapter(result.adapter, dir, { organ: 'liver', backbone: { fingerprint, featureSize: 12, outChannels: 29 }, preprocessing: PREPROCESSING, training: {}, createdAt: 'test' });
    const { adapter } = loadAdapter(dir, model, fingerprint);
    assert.equal(adapter.trainableParameters, result.trainableParameters);
    const again = adapterProbabilities(adapter, inputs, { roi: PREPROCESSING.roi });
    assert.deepEqual(again.data, probabilities.data, `${method}: the saved adapter predicts the same`);
    adapter.dispose();
    result.adapter.dispose();
  }
  assert.equal(tf.memory().numTensors, tensors, 'no tensors left behind');
  model.dispose();
});
