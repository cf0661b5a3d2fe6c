import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as fseft from '../lib';
import { switchBackend } from '../lib/backend/backend';
import { writeSynthDataset } from '../lib/data/synth/synth-datasets';
import { Dataset } from '../lib/data/datasets';
import { prepareCase } from '../lib/inference/predict';
import { readNifti } from '../lib/io/nifti';
import { Volume, sameGrid } from '../lib/io/volume';
import { saveModel } from '../lib/networks/model-io';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { CLI, tempDir } from './helpers';

let work = '';
let modelDir = '';
let dataset: Dataset;

before(async () => {
  await switchBackend('wasm');
  work = tempDir('fseft-api-');
  dataset = await writeSynthDataset(path.join(work, 'data'), { name: 'api', cases: 3, seed: 8, institution: 'site-b', spacingScale: 4, organs: ['liver', 'spleen'] }, { workers: 1, progress: false });
  modelDir = path.join(work, 'model');
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 29 }), 0);
  await saveModel(model, modelDir, { createdAt: 'test', origin: 'init', seed: 0 }, { preprocessing: { spacing: 10, window: [-175, 250], roi: [32, 32, 32] } });
  model.dispose();
});

const ct = (i: number) => ({ image: dataset.cases[i].image, label: dataset.cases[i].label!, value: 6 });

test('load, adapt, segment, save and evaluate: the common path in a few calls, nothing leaked', async () => {
  const model = await fseft.load(modelDir);
  assert.ok(model.organs.includes('liver') && model.organs.length === 29);
  const generalization = await model.segment(ct(2).image, { organ: 'spleen' }); // the first pass caches the model's window masks
  const tensors = tf.memory().numTensors;
  const liver = await model.adapt({ organ: 'liver', supports: [ct(0)], method: 'lp', epochs: 2, cropsPerStep: 1, ti: { query: ct(1).image } });
  assert.equal(liver.trainableParameters, 13);
  assert.equal(liver.history.length, 2);
  assert.ok(liver.targetSize! > 0, 'TI estimated the target size from the support');
  const result = await liver.segment(ct(2).image);
  const source = await readNifti(ct(2).image);
  assert.ok(sameGrid(result.mask, source), 'the mask lies on the CT grid');
  const maskFile = path.join(work, 'mask.nii.gz');
  await result.save(maskFile, path.join(work, 'probabilities.nii.gz'));
  assert.ok(fs.existsSync(path.join(work, 'probabilities.nii.gz')));
  const label = await readNifti(ct(2).label);
  const scores = fseft.evaluate(result.mask, label, { labelValue: 6 });
  const cli = spawnSync(process.execPath, [CLI, 'evaluate', '--pred', maskFile, '--label', `${ct(2).label}:6`], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  const printed = JSON.parse(cli.stdout.trim().split('\n').pop()!);
  assert.equal(printed.dice, scores.dice, 'the API and fseft evaluate agree');
  assert.equal(printed.voxels.label, scores.voxels.label);
  const score = await liver.score(ct(2));
  assert.ok(score >= 0 && score <= 1);
  await liver.save(path.join(work, 'adapter'));
  const predict = spawnSync(process.execPath, [CLI, 'predict', '--model', modelDir, '--adapter', path.join(work, 'adapter'), '--image', ct(2).image, '--out', path.join(work, 'cli-mask.nii.gz')], { encoding: 'utf8', env: { ...process.env, FSEFT_BACKEND: 'wasm' } });
  assert.equal(predict.status, 0, predict.stderr);
  assert.deepEqual((await readNifti(path.join(work, 'cli-mask.nii.gz'))).data, result.mask.data, 'a saved adapter predicts what the API predicted');
  const reloaded = model.loadAdapter(path.join(work, 'adapter'));
  assert.deepEqual([reloaded.organ, reloaded.method, reloaded.settings.epochs, reloaded.settings.crops, reloaded.history.length], ['liver', 'lp', 2, 1, 2], 'settings and the step log travel with the adapter');
  assert.equal(reloaded.targetSize, liver.targetSize);
  assert.deepEqual((await reloaded.segment(ct(2).image)).mask.data, result.mask.data, 'a reloaded adapter segments as the trained one');
  reloaded.dispose();
  liver.dispose();
  assert.ok(sameGrid(generalization.mask, source));
  await model.segment(ct(1).image, { organ: 'liver' });
  assert.equal(tf.memory().numTensors, tensors, 'adapting and segmenting leave no tensors behind');
  // Backbone features are computed once per file and model; a changed file is read again.
  const prepared = await prepareCase(ct(1).image, model.preprocessing);
  const first = model.featuresOf(ct(1).image, prepared);
  assert.equal(model.featuresOf(ct(1).image, prepared), first, 'the second request is served from the cache');
  const later = new Date(Date.now() + 5000);
  fs.utimesSync(ct(1).image, later, later);
  assert.notEqual(model.featuresOf(ct(1).image, prepared), first, 'a file changed since is passed through the backbone again');
  await assert.rejects(model.adapt({ organ: 'livr', supports: [ct(0)] }), /unknown organ 'livr'/);
  await assert.rejects(model.adapt({ organ: 'liver', supports: [] }), /at least one support/);
  await assert.rejects(model.adapt({ organ: 'liver', supports: [{ ...ct(0), value: 99 }] }), /label value 99 does not occur/);
  assert.throws(() => fseft.evaluate(result.mask, new Volume(new Uint8Array(8), [2, 2, 2], source.affine)), /not on one grid/);
  model.dispose();
});
