import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { preprocessDatasets } from '../lib/data/batch';
import { openDataset, readCollection } from '../lib/data/datasets';
import { writeSynthDataset } from '../lib/data/synth/synth-datasets';
import { templateClass } from '../lib/data/template';
import { readNifti, writeNifti } from '../lib/io/nifti';
import { Volume } from '../lib/io/volume';
import { dice, maskOf } from '../lib/metrics/overlap';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { PRETRAIN_RECIPES, pretrainRecipesMarkdown } from '../lib/training/pretrain-recipes';
import { DEFAULT_PRETRAIN, TrainingCase, epochDraws, loadTrainingCases, pretrain, resolvePretrainOptions } from '../lib/training/pretrain';
import { classMasks, headProbabilities, splitValidation, validationDice } from '../lib/training/validation';
import { randCropByPosNegLabel } from '../lib/transforms/random';
import { randZoom, zoomKeepSize } from '../lib/transforms/zoom';
import { Rng } from '../lib/util/random';
import { CLI, REPO_ROOT, diagonalAffine, tempDir, volumeFrom } from './helpers';

let work = '';

before(async () => {
  await switchBackend('wasm');
  work = tempDir('fseft-pretrain-recipe-');
});

test('uniform-dataset sampling draws every dataset equally often and its volumes uniformly', () => {
  const cases = [
    ...Array.from({ length: 1 }, (_, i) => ({ dataset: 'small', id: `s${i}` })),
    ...Array.from({ length: 5 }, (_, i) => ({ dataset: 'medium', id: `m${i}` })),
    ...Array.from({ length: 20 }, (_, i) => ({ dataset: 'large', id: `l${i}` })),
  ];
  const draws = epochDraws(cases, 6000, 'uniform-dataset', new Rng(3));
  const perDataset = new Map<string, number>();
  const perCase = new Map<string, number>();
  for (const d of draws) {
    perDataset.set(d.dataset, (perDataset.get(d.dataset) ?? 0) + 1);
    perCase.set(d.id, (perCase.get(d.id) ?? 0) + 1);
  }
  assert.deepEqual([...perDataset.values()], [2000, 2000, 2000], 'each dataset gets a third of the draws, whatever its size');
  // Chi-square of the 20 volumes of 'large' against uniform (19 degrees of freedom; p = 0.001 at 43.8).
  const expected = 2000 / 20;
  const chi2 = Array.from({ length: 20 }, (_, i) => ((perCase.get(`l${i}`) ?? 0) - expected) ** 2 / expected).reduce((a, b) => a + b, 0);
  assert.ok(chi2 < 43.8, `volumes of a dataset are drawn uniformly (chi-square ${chi2.toFixed(1)})`);
  // The datasets are interleaved, not drawn in blocks.
  const firstSixty = new Set(draws.slice(0, 60).map((d) => d.dataset));
  assert.equal(firstSixty.size, 3);
  assert.deepEqual(epochDraws(cases, 6000, 'uniform-dataset', new Rng(3)), draws, 'seeded');
  const byCase = epochDraws(cases, 0, 'case', new Rng(3));
  assert.deepEqual(byCase.map((c) => c.id).sort(), cases.map((c) => c.id).sort(), 'case sampling visits every volume once');
});

test('randCropByPosNegLabel centres 4 of 5 patches on foreground at pos 4 : neg 1', () => {
  const shape: [number, number, number] = [40, 40, 40];
  const image = volumeFrom(shape, diagonalAffine([1, 1, 1]), () => 1);
  const label = image.withData(Uint8Array.from(image.data, (_, o) => (o % 40 < 10 ? 1 : 0)));
  const patches = randCropByPosNegLabel(image, label, new Rng(11), { roi: [8, 8, 8], numSamples: 4000, pos: 4, neg: 1 });
  const positive = patches.filter((p) => p.positive).length / patches.length;
  // Binomial standard deviation sqrt(0.8 * 0.2 / 4000) = 0.0063: five of them either side.
  assert.ok(Math.abs(positive - 0.8) < 0.032, `positive fraction ${positive}`);
  // The label is foreground where x < 10; centres moved inwards (x >= 4) stay on their side.
  assert.ok(patches.every((p) => (p.center[0] < 10) === p.positive), 'positive centres lie on the foreground, negative ones off it');
});

test('zoom keeps the size, the label values, and matches adaptive average pooling', () => {
  const affine = diagonalAffine([2, 2, 2]);
  const label = new Volume(Uint8Array.from({ length: 6 * 5 * 4 }, (_, o) => [0, 3, 7][o % 3]), [6, 5, 4], affine);
  const image = volumeFrom([6, 5, 4], affine, (i, j, k) => i + 10 * j + 100 * k);
  for (let seed = 0; seed < 20; seed++) {
    const [zi, zl] = randZoom(image, label, new Rng(seed), { prob: 1, minZoom: 1.1, maxZoom: 1.3 });
    assert.deepEqual(zl.shape, label.shape);
    assert.deepEqual(zi.shape, image.shape);
    assert.ok(zl.data.every((v) => v === 0 || v === 3 || v === 7), 'nearest keeps label values');
    assert.ok(zl.data instanceof Uint8Array && zi.data instanceof Float32Array);
  }
  const constant = volumeFrom([7, 7, 7], affine, () => 0.25);
  assert.ok(zoomKeepSize(constant, 1.27, 'area').data.every((v) => Math.abs(v - 0.25) < 1e-6));
  assert.deepEqual(zoomKeepSize(image, 1, 'area').data, image.data, 'zoom 1 is the identity');
  // One axis by hand: 4 voxels zoomed 1.5 -> 6, central 4 are zoomed voxels 1..4; voxel 1 covers
  // source [floor(4/6), ceil(8/6)) = [0, 2): the mean of source 0 and 1 (torch adaptive_avg_pool).
  const line = volumeFrom([4, 1, 1], affine, (i) => [10, 20, 40, 80][i]);
  const zoomed = zoomKeepSize(line, 1.5, 'area').data;
  assert.deepEqual([...zoomed], [15, 20, 40, 60]);
  assert.deepEqual([...zoomKeepSize(line, 1.5, 'nearest').data], [10, 20, 40, 40]);
});

test('an unsided kidney label is split into right and left at the midline (LRDivision), in any stored orientation', async () => {
  const sided = await writeSynthDataset(path.join(work, 'sided'), { name: 'sided', cases: 1, seed: 21, institution: 'site-b', spacingScale: 4, organs: ['rkidney', 'lkidney'] }, { workers: 1, progress: false });
  const unsidedDir = path.join(work, 'unsided');
  fs.mkdirSync(path.join(unsidedDir, 'labelsTr'), { recursive: true });
  const original = await readNifti(sided.cases[0].label!);
  const merged = original.withData(Uint8Array.from(original.data, (v) => (v > 0 ? 1 : 0)));
  assert.ok(original.orientation !== 'RAS', 'the phantom is stored in another orientation (site-b: LPS)');
  await writeNifti(path.join(unsidedDir, 'labelsTr', 'case.nii.gz'), merged);
  fs.mkdirSync(path.join(unsidedDir, 'imagesTr'));
  fs.copyFileSync(sided.cases[0].image, path.join(unsidedDir, 'imagesTr', 'case.nii.gz'));
  fs.writeFileSync(path.join(unsidedDir, 'dataset.json'), JSON.stringify({ name: 'kits-like', labels: { '0': 'background', '1': 'kidney' }, training: [{ image: './imagesTr/case.nii.gz', label: './labelsTr/case.nii.gz' }] }));
  const unsided = openDataset(unsidedDir);
  assert.deepEqual(unsided.annotated, [templateClass('rkidney'), templateClass('lkidney')], 'annotates both sides');
  const options = { spacing: 8 };
  const [fromSided] = await preprocessDatasets([sided], path.join(work, 'prep-sided'), options, { workers: 1, progress: false });
  const [fromUnsided] = await preprocessDatasets([unsided], path.join(work, 'prep-unsided'), options, { workers: 1, progress: false });
  const truth = await readNifti(fromSided.label!);
  const split = await readNifti(fromUnsided.label!);
  for (const organ of ['rkidney', 'lkidney']) {
    const cls = templateClass(organ);
    assert.ok(maskOf(truth.data, cls).some((v) => v), `${organ} is in the phantom`);
    const score = dice(maskOf(split.data, cls), maskOf(truth.data, cls));
    assert.ok(score > 0.99, `${organ}: Dice ${score} between the split and the phantom's own sides`);
  }
  const pairs = JSON.parse(fs.readFileSync(path.join(work, 'prep-unsided', 'kits-like', 'pairs.json'), 'utf8'));
  assert.deepEqual(Object.values(pairs.labels), ['rkidney', 'lkidney']);
});

test('validation Dice per class equals fseft evaluate on the same masks and labels', async () => {
  const dataset = await writeSynthDataset(path.join(work, 'val'), { name: 'val', cases: 1, seed: 4, institution: 'source', spacingScale: 4, organs: ['liver', 'spleen'] }, { workers: 1, progress: false });
  await preprocessDatasets([dataset], path.join(work, 'prep-val'), { spacing: 10 }, { workers: 1, progress: false });
  const [prepared] = await loadTrainingCases(readCollection(path.join(work, 'prep-val', 'collection.json')));
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 29 }), 0);
  // A head that calls every voxel liver and no voxel spleen: known, non-trivial Dice values.
  const liver = templateClass('liver');
  const bias = Float32Array.from({ length: 29 }, (_, c) => (c === liver - 1 ? 20 : -20));
  (model.p('out.conv.conv.bias') as tf.Variable).assign(tf.tensor1d(bias));
  validationDice(model, [prepared], [32, 32, 32]); // the first forward pass caches the model's window masks
  const tensors = tf.memory().numTensors;
  const result = validationDice(model, [prepared], [32, 32, 32]);
  assert.equal(tf.memory().numTensors, tensors, 'validation leaves no tensors behind');
  assert.deepEqual(Object.keys(result.dice), ['spleen', 'liver']);
  const masks = classMasks(headProbabilities(model, prepared.image, [32, 32, 32]), prepared.image, [templateClass('spleen'), liver]);
  model.dispose();
  const labelFile = path.join(work, 'val-label.nii.gz');
  await writeNifti(labelFile, prepared.label);
  for (const organ of ['spleen', 'liver']) {
    const cls = templateClass(organ);
    const maskFile = path.join(work, `val-${organ}.nii.gz`);
    await writeNifti(maskFile, prepared.label.withData(masks.get(cls)!));
    const run = spawnSync(process.execPath, [CLI, 'evaluate', '--pred', maskFile, '--label', `${labelFile}:${cls}`], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const evaluated = JSON.parse(run.stdout.trim().split('\n').pop()!).dice as number;
    assert.ok(Math.abs(evaluated - result.dice[organ]) < 1e-12, `${organ}: validation ${result.dice[organ]} vs evaluate ${evaluated}`);
  }
  assert.equal(result.dice.spleen, 0, 'no voxel called spleen');
  assert.ok(result.dice.liver > 0 && result.dice.liver < 1, `liver Dice ${result.dice.liver}`);
});

test('validation holds out the last volumes of each dataset and refuses to leave a dataset empty', () => {
  const cases = ['a', 'a', 'a', 'b', 'b'].map((dataset, i) => ({ dataset, id: String(i) }));
  const { train, validation } = splitValidation(cases, 1);
  assert.deepEqual(validation.map((c) => c.id), ['2', '4']);
  assert.deepEqual(train.map((c) => c.id), ['0', '1', '3']);
  assert.throws(() => splitValidation(cases, 2), /dataset b has 2 volumes: holding out 2/);
});

test('a balanced BCE without the BCE term is refused, and an unset option is not recorded (older runs still resume)', () => {
  const base = { ...DEFAULT_PRETRAIN, preprocessing: { spacing: 4, window: [-175, 250] as [number, number], roi: [32, 32, 32] as [number, number, number] } };
  assert.throws(() => resolvePretrainOptions({ ...base, bce: false, balancedBce: true }), /needs the BCE term: add --bce/);
  assert.equal(resolvePretrainOptions({ ...base, bce: true, balancedBce: true }).balancedBce, true);
  assert.ok(!('balancedBce' in resolvePretrainOptions({ ...base, bce: true, balancedBce: undefined })));
  assert.throws(() => resolvePretrainOptions({ ...base, bce: false, exclusionBce: true }), /exclusion BCE needs the BCE term: add --bce/);
  assert.ok(!('exclusionBce' in resolvePretrainOptions({ ...base, bce: true, exclusionBce: undefined })), 'runs recorded before the option still resume');
});

test('the reference recipe resumes after an interruption, or a stop after an epoch, with the weights of an uninterrupted run, and logs validation Dice', async () => {
  const dataset = await writeSynthDataset(path.join(work, 'resume'), { name: 'synth-msd-liver', cases: 3, seed: 9, institution: 'source', spacingScale: 4, organs: ['liver'] }, { workers: 1, progress: false });
  await preprocessDatasets([dataset], path.join(work, 'prep-resume'), { spacing: 10 }, { workers: 1, progress: false });
  const all = await loadTrainingCases(readCollection(path.join(work, 'prep-resume', 'collection.json')));
  const { train, validation } = splitValidation(all, 1);
  const reference = PRETRAIN_RECIPES.reference.values;
  const options = {
    ...reference,
    featureSize: 12,
    roi: [32, 32, 32] as [number, number, number],
    epochs: 2,
    stepsPerEpoch: 1,
    zoom: { ...reference.zoom!, prob: 1 },
    seed: 3,
    checkpoint: false,
    preprocessing: { spacing: 10, window: [-175, 250] as [number, number], roi: [32, 32, 32] as [number, number, number] },
    validation,
  };
  const straight = await pretrain(train as TrainingCase[], path.join(work, 'ref-straight'), options);
  const resumedDir = path.join(work, 'ref-resumed');
  await assert.rejects(pretrain(train, resumedDir, options, () => { throw new Error('interrupted'); }), /interrupted/);
  const resumed = await pretrain(train, resumedDir, options);
  for (const [name, value] of straight.params) assert.deepEqual(await resumed.params.get(name)!.data(), await value.data(), `${name} differs after resuming`);
  resumed.dispose();
  // A stop after epoch 1 of the 2-epoch schedule, then the same run continued: the uninterrupted weights.
  const stoppedDir = path.join(work, 'ref-stopped');
  (await pretrain(train, stoppedDir, { ...options, stopAfterEpoch: 1 })).dispose();
  const stoppedLog = fs.readFileSync(path.join(stoppedDir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(stoppedLog.map((r) => r.epoch), [1], 'stops after epoch 1');
  const continued = await pretrain(train, stoppedDir, options);
  for (const [name, value] of straight.params) assert.deepEqual(await continued.params.get(name)!.data(), await value.data(), `${name} differs after a stop and a continuation`);
  continued.dispose();
  straight.dispose();
  assert.throws(() => resolvePretrainOptions({ ...options, stopAfterEpoch: 0 }), /epoch to stop after must be a positive integer/);
  const log = fs.readFileSync(path.join(resumedDir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(log.map((r) => r.step), [1, 2], 'one step of batch 2 per epoch');
  assert.deepEqual(Object.keys(log[1].validation.dice), ['liver']);
  await assert.rejects(pretrain(train, resumedDir, { ...options, validation: all }), /holds a run with other options or data/);
});

test('docs/recipes.md lists both pretraining recipes as the code has them', () => {
  assert.ok(fs.readFileSync(path.join(REPO_ROOT, 'docs', 'recipes.md'), 'utf8').includes(pretrainRecipesMarkdown()), 'run npm run docs:recipes');
  assert.match(pretrainRecipesMarkdown(), /\| positive : negative centres \| `--pos-neg` \| 1 : 1 \| 4 : 1 \|/);
});

test('scripts/train-default-model.sh runs every stage end to end on tiny settings and resumes as a no-op', { timeout: 600_000 }, () => {
  const out = path.join(work, 'default-model');
  const env = { ...process.env, FSEFT_TINY: '1', FSEFT_SKIP_BUILD: '1', FSEFT_BACKEND: 'wasm' };
  const run = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'train-default-model.sh'), out], { encoding: 'utf8', env, cwd: REPO_ROOT });
  assert.equal(run.status, 0, run.stderr.slice(-3000));
  const log = fs.readFileSync(path.join(out, 'stage5b', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log.length, 2);
  assert.ok(log[0].validation.dice.liver >= 0);
  assert.equal(fs.readFileSync(path.join(out, 'stage5a', 'log.jsonl'), 'utf8').trim().split('\n').length, 1, 'stage 5a stops after its first epoch of the schedule (tiny settings)');
  assert.equal(fs.readFileSync(path.join(out, 'stage6', 'log.jsonl'), 'utf8').trim().split('\n').length, 1, 'stage 6 continues from stage 5b (tiny settings: one epoch)');
  assert.equal(fs.readFileSync(path.join(out, 'stage7', 'log.jsonl'), 'utf8').trim().split('\n').length, 1, 'stage 7 continues from stage 6 (tiny settings: one epoch)');
  assert.equal(readCollection(path.join(out, 'prep36', 'collection.json'))[0].cases.length, 4, 'stage 7 trains on the larger collection (tiny settings: 4 volumes per dataset)');
  const stage8 = fs.readFileSync(path.join(out, 'stage8', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(stage8.length, 1, 'stage 8 continues from stage 7 (tiny settings: one epoch)');
  const stage7 = JSON.parse(fs.readFileSync(path.join(out, 'stage7', 'log.jsonl'), 'utf8').trim().split('\n')[0]);
  assert.ok(Math.abs(stage8[0].learningRate / stage7.learningRate - 0.4) < 1e-9, 'stage 8 runs the same schedule at a peak rate of 2e-4 instead of 5e-4');
  const stage9 = fs.readFileSync(path.join(out, 'stage9', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(stage9.length, 1, 'stage 9 continues from stage 8 (tiny settings: one epoch)');
  assert.ok(Math.abs(stage9[0].learningRate / stage8[0].learningRate - 1) < 1e-9, 'stage 9 keeps stage 8\'s peak rate of 2e-4');
  assert.equal(readCollection(path.join(out, 'prep72', 'collection.json'))[0].cases.length, 5, 'stage 9 trains on the largest collection (tiny settings: 5 volumes per dataset)');
  const stage10 = fs.readFileSync(path.join(out, 'stage10', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(stage10.length, 1, 'stage 10 continues from stage 9 (tiny settings: one epoch)');
  assert.ok(Math.abs(stage10[0].learningRate / stage9[0].learningRate - 1) < 1e-9, 'stage 10 keeps the peak rate of 2e-4');
  const stage10State = fs.readdirSync(path.join(out, 'stage10', 'resume')).map((dir) => path.join(out, 'stage10', 'resume', dir, 'train-state.json'));
  assert.equal(JSON.parse(fs.readFileSync(stage10State[0], 'utf8')).options.exclusionBce, true, 'stage 10 trains with the exclusion BCE');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'stage10', 'config.json'), 'utf8')).preprocessing, { spacing: 8, window: [-175, 250], roi: [32, 32, 32] }, 'the final model records its preprocessing (tiny settings), with no adaptation crop of its own');
  const source = JSON.parse(fs.readFileSync(path.join(out, 'stage10', 'validation-source.json'), 'utf8'));
  assert.ok('lkidney' in source.dice && 'liver' in source.dice, 'the source table has every organ');
  assert.match(run.stdout, /\| all \(6\) \|/);
  const provenance = JSON.parse(fs.readFileSync(path.join(out, 'stage10', 'config.json'), 'utf8')).provenance;
  assert.deepEqual(Object.keys(provenance.validation), ['source-held-out', 'target-site-b', 'source-fresh', 'site-c-fresh', 'target-fresh']);
  assert.equal(provenance.validation['source-held-out'].dice.liver, Math.round(source.dice.liver * 1e4) / 1e4);
  const fresh = JSON.parse(fs.readFileSync(path.join(out, 'stage10', 'validation-source-fresh.json'), 'utf8'));
  assert.deepEqual(Object.keys(fresh.datasets), ['held-out-source']);
  assert.equal(fresh.datasets['held-out-source'].perCase.length, 2);
  assert.deepEqual(Object.keys(fresh.dice).sort(), ['aorta', 'duodenum', 'esophagus', 'gall', 'liver', 'lkidney', 'pancreas', 'postcava', 'rkidney', 'spleen', 'stomach'], 'every fresh volume labels the eleven organs');
  assert.match(run.stdout, /\| held-out-site-b \(2\) \|/);
  assert.match(run.stdout, /\| held-out-site-c \(2\) \|/);
  // pretrain --adaptation-roi records the crop edge few-shot adaptation defaults to.
  const cropped = path.join(work, 'adaptation-roi');
  const withCrop = spawnSync(process.execPath, [path.join(REPO_ROOT, 'dist', 'lib', 'cli', 'main.js'), 'pretrain', '--data', path.join(out, 'prep12', 'collection.json'), '--out', cropped, '--feature-size', '12', '--roi', '32', '--epochs', '1', '--steps', '1', '--recipe', 'reference', '--adaptation-roi', '16', '--no-checkpoint'], { encoding: 'utf8', env, cwd: REPO_ROOT });
  assert.equal(withCrop.status, 0, withCrop.stderr.slice(-3000));
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(cropped, 'config.json'), 'utf8')).preprocessing.adaptationRoi, [16, 16, 16]);
  const again = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'train-default-model.sh'), out], { encoding: 'utf8', env, cwd: REPO_ROOT });
  assert.equal(again.status, 0, again.stderr.slice(-3000));
  assert.equal(fs.readFileSync(path.join(out, 'stage10', 'log.jsonl'), 'utf8').trim().split('\n').length, 1, 'a finished run is not trained again');
});
