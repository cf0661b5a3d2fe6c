import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as fseft from '../lib';
import { switchBackend } from '../lib/backend/backend';
import { NOVEL_STRUCTURES } from '../lib/data/synth/anatomy';
import { generatePhantom, institutionByName } from '../lib/data/synth/phantom';
import { readMsdDataset } from '../lib/data/datasets';
import { readNifti } from '../lib/io/nifti';
import { saveModel } from '../lib/networks/model-io';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { Rng } from '../lib/util/random';
import { CLI, tempDir } from './helpers';

/**
 * Structures outside the 29-class template (the reference's heart, lung lobe and gluteal
 * experiments): the phantom draws the psoas muscles on request, and `adapt` learns a structure by
 * any name with a new head (`novel`).
 */
let work = '';
let modelDir = '';
let data = '';

before(async () => {
  await switchBackend('wasm');
  work = tempDir('fseft-novel-');
  data = path.join(work, 'psoas');
  const run = spawnSync(process.execPath, [CLI, 'synth', '--out', data, '--cases', '2', '--seed', '3', '--institution', 'site-b', '--spacing-scale', '4', '--organs', 'liver', '--structures', 'psoas', '--workers', '1'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  modelDir = path.join(work, 'model');
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 29 }), 0);
  await saveModel(model, modelDir, { createdAt: 'test', origin: 'init', seed: 0 }, { preprocessing: { spacing: 10, window: [-175, 250], roi: [32, 32, 32] } });
  model.dispose();
});

test('the phantom draws the psoas muscles only on request, leaves every template organ where it was, and labels them 30 and 31', () => {
  const institution = institutionByName('source');
  const plain = generatePhantom(new Rng(11), { institution, spacingScale: 2 });
  const withPsoas = generatePhantom(new Rng(11), { institution, spacingScale: 2, structures: ['psoas'] });
  const spacing = [0, 1, 2].map((a) => Math.hypot(plain.label.affine[0][a], plain.label.affine[1][a], plain.label.affine[2][a]));
  const ml = (count: number) => (count * spacing[0] * spacing[1] * spacing[2]) / 1000;
  let changedOrgans = 0;
  const counts = { [NOVEL_STRUCTURES.psoas_right]: 0, [NOVEL_STRUCTURES.psoas_left]: 0 };
  for (let i = 0; i < plain.label.data.length; i++) {
    const v = withPsoas.label.data[i];
    if (v === NOVEL_STRUCTURES.psoas_right || v === NOVEL_STRUCTURES.psoas_left) {
      counts[v]++;
      if (plain.label.data[i] !== 0) changedOrgans++;
    } else if (v !== plain.label.data[i]) changedOrgans++;
  }
  assert.equal(changedOrgans, 0, 'the organs lie over the psoas: no template organ voxel changes');
  assert.ok(!plain.label.data.some((v) => v >= 30), 'without the option the phantom has no novel structure');
  for (const [value, count] of Object.entries(counts)) {
    // The field of view (170 mm) holds the upper part of each muscle.
    assert.ok(ml(count) > 30 && ml(count) < 300, `psoas ${value}: ${ml(count).toFixed(0)} ml`);
  }
});

test('fseft synth --structures psoas lists them under "structures"; adapt --novel learns psoas_left with a new head; unknown names are refused with advice', async () => {
  const descriptor = JSON.parse(fs.readFileSync(path.join(data, 'dataset.json'), 'utf8'));
  assert.deepEqual(descriptor.structures, { '30': 'psoas_right', '31': 'psoas_left' });
  assert.deepEqual(Object.values(descriptor.labels), ['background', 'liver']);
  const dataset = readMsdDataset(data);
  const label = await readNifti(dataset.cases[0].label!);
  assert.ok(label.data.includes(31) && label.data.includes(30) && label.data.includes(6));

  const model = await fseft.load(modelDir);
  const support = { image: dataset.cases[0].image, label: dataset.cases[0].label!, value: 31 };
  await assert.rejects(model.adapt({ organ: 'psoas_left', supports: [support], method: 'lp', epochs: 1 }), /unknown organ 'psoas_left'.*fseft adapt --novel/);
  await assert.rejects(model.adapt({ organ: 'kidney_left', novel: true, supports: [support], method: 'lp', epochs: 1 }), /'kidney_left' is the template organ lkidney: adapt it without --novel/);
  await assert.rejects(model.adapt({ organ: 'psoas_left', novel: true, supports: [support], method: 'generalization' }), /the model's head has no psoas_left channel/);
  const adapted = await model.adapt({ organ: 'psoas_left', novel: true, supports: [support], method: 'lp', epochs: 2, cropsPerStep: 1 });
  assert.equal(adapted.organ, 'psoas_left');
  const dir = path.join(work, 'adapter');
  await adapted.save(dir);
  const cli = spawnSync(process.execPath, [CLI, 'predict', '--model', modelDir, '--adapter', dir, '--image', dataset.cases[1].image, '--out', path.join(work, 'psoas.nii.gz')], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /psoas_left \(lp\)/);
  const adapt = spawnSync(process.execPath, [CLI, 'adapt', '--model', modelDir, '--organ', 'psoas_right', '--novel', '--method', 'lp', '--support', `${dataset.cases[0].image}=${dataset.cases[0].label}:30`, '--epochs', '1', '--crops', '1', '--out', path.join(work, 'right')], { encoding: 'utf8' });
  assert.equal(adapt.status, 0, adapt.stderr);
  assert.match(adapt.stdout, /to psoas_right \(a structure outside the template: new head\) with lp/);
  assert.equal(JSON.parse(fs.readFileSync(path.join(work, 'right', 'adapter.json'), 'utf8')).organ, 'psoas_right');
  model.dispose();
});

test('several structures at once: one multi-class head over psoas_right and psoas_left; predict writes their label values; values must match the organs', async () => {
  const dataset = readMsdDataset(data);
  const model = await fseft.load(modelDir);
  const support = { image: dataset.cases[0].image, label: dataset.cases[0].label! };
  await assert.rejects(model.adapt({ organ: ['psoas_right', 'psoas_left'], novel: true, supports: [support], method: 'lp', epochs: 1 }), /give the label values of psoas_right, psoas_left/);
  await assert.rejects(model.adapt({ organ: ['psoas_right', 'psoas_left'], novel: true, supports: [{ ...support, values: [30] }], method: 'lp', epochs: 1 }), /1 label values for 2 organs/);
  await assert.rejects(model.adapt({ organ: ['psoas_right', 'psoas_left'], novel: true, supports: [{ ...support, values: [30, 31] }], method: 'lp', epochs: 1, ti: { query: dataset.cases[1].image } }), /TI constrains one organ at a time/);
  const adapted = await model.adapt({ organ: ['psoas_right', 'psoas_left'], novel: true, supports: [{ ...support, values: [30, 31] }], method: 'lp', epochs: 2, cropsPerStep: 1 });
  assert.deepEqual(adapted.organs, ['psoas_right', 'psoas_left']);
  assert.equal(adapted.trainableParameters, 3 * 12 + 3);
  const scores = await adapted.scoreByOrgan({ image: dataset.cases[1].image, label: dataset.cases[1].label! });
  assert.deepEqual(Object.keys(scores), ['psoas_right', 'psoas_left']);
  const dir = path.join(work, 'both');
  await adapted.save(dir);
  const segmentation = await adapted.segment(dataset.cases[1].image);
  assert.deepEqual(segmentation.organs!.map((o) => [o.organ, o.value]), [['psoas_right', 30], ['psoas_left', 31]]);
  assert.ok([...new Set(segmentation.mask.data)].every((v) => v === 0 || v === 30 || v === 31), 'the mask holds the organs\' label values');
  adapted.dispose();
  const out = path.join(work, 'both.nii.gz');
  const cli = spawnSync(process.execPath, [CLI, 'predict', '--model', modelDir, '--adapter', dir, '--image', dataset.cases[1].image, '--out', out], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /psoas_right,psoas_left \(lp\)/);
  assert.match(cli.stdout, /psoas_left \(value 31\): \d+ voxels/);
  const written = await readNifti(out);
  assert.deepEqual(Array.from(written.data), Array.from(segmentation.mask.data), 'the CLI and the API write the same labels');
  const adapt = spawnSync(process.execPath, [CLI, 'adapt', '--model', modelDir, '--organ', 'psoas_right,psoas_left', '--novel', '--method', 'lp', '--support', `${support.image}=${support.label}:30,31`, '--query', `${dataset.cases[1].image}=${dataset.cases[1].label}:30,31`, '--epochs', '1', '--crops', '1', '--out', path.join(work, 'both-cli')], { encoding: 'utf8' });
  assert.equal(adapt.status, 0, adapt.stderr);
  assert.match(adapt.stdout, /query Dice \(preprocessed grid, paper recipe's evaluation\): psoas_right \d\.\d{4}, psoas_left \d\.\d{4}/);
  model.dispose();
});

test('several organs: label values outside 1-255 are refused by file', async () => {
  const dataset = readMsdDataset(data);
  const model = await fseft.load(modelDir);
  const support = { image: dataset.cases[0].image, label: dataset.cases[0].label!, values: [30, 300] };
  await assert.rejects(model.adapt({ organ: ['psoas_right', 'psoas_left'], novel: true, supports: [support], method: 'lp', epochs: 1 }), /labelsTr.*label values must be whole numbers from 1 to 255, got 30, 300/);
  model.dispose();
});
