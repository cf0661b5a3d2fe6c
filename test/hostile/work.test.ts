import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { switchBackend } from '../../lib/backend/backend';
import { writeSynthDataset } from '../../lib/data/synth/synth-datasets';
import { Dataset } from '../../lib/data/datasets';
import { ModelPreprocessing, saveModel } from '../../lib/networks/model-io';
import { SwinUNETR, swinUnetrConfig } from '../../lib/networks/swin-unetr';
import { CLI, tempDir } from '../helpers';
import { assertRefused, runCli } from './harness';

/**
 * Lost or stale work: experiment records that must follow their settings, survive torn writes and
 * full disks, and never be written twice; outputs that must never replace inputs; options that
 * are checked before any work.
 */
const PREPROCESSING: ModelPreprocessing = { spacing: 10, window: [-175, 250], roi: [32, 32, 32] };
let work = '';
let modelDir = '';
let otherModelDir = '';
let dataset: Dataset;

before(async () => {
  await switchBackend('cpu');
  work = tempDir('fseft-hostile-work-');
  dataset = await writeSynthDataset(path.join(work, 'data'), { name: 'tiny', cases: 3, seed: 5, institution: 'site-b', spacingScale: 4, organs: ['liver'] }, { workers: 1, progress: false });
  modelDir = path.join(work, 'model');
  otherModelDir = path.join(work, 'other-model');
  for (const [dir, seed] of [[modelDir, 0], [otherModelDir, 1]] as Array<[string, number]>) {
    const model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 29 }), seed);
    await saveModel(model, dir, { createdAt: 'test', origin: 'init', seed }, { preprocessing: PREPROCESSING });
    model.dispose();
  }
});

function writePlan(name: string, fields: Record<string, unknown> = {}): string {
  const plan = path.join(work, `${name}.json`);
  fs.writeFileSync(plan, JSON.stringify({ data: 'data', model: 'model', organs: ['liver'], methods: ['lp'], shots: [1], folds: 1, seeds: [0], queries: 1, epochs: 1, cropsPerStep: 1, ...fields }));
  return plan;
}

const recordLines = (file: string) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');

test('a changed plan or model runs its cells again instead of serving the old records', () => {
  const plan = writePlan('stale');
  const records = path.join(work, 'stale.records.jsonl');
  assert.equal(runCli(['experiment', '--plan', plan]).status, 0);
  assert.equal(recordLines(records).length, 1);
  const same = runCli(['experiment', '--plan', plan]);
  assert.equal(same.status, 0, same.stderr);
  assert.equal(recordLines(records).length, 1, 'an unchanged plan is served from the records');
  const changes: Array<[string, string[]]> = [
    ['epochs', []],
    ['cropsPerStep', []],
    ['learningRates', []],
    ['model', []],
  ];
  const variants: Record<string, Record<string, unknown>> = { epochs: { epochs: 2 }, cropsPerStep: { cropsPerStep: 2 }, learningRates: { learningRates: { lp: 0.05 } }, model: { model: 'other-model' } };
  for (const [field] of changes) {
    const before = recordLines(records).length;
    fs.writeFileSync(plan, JSON.stringify({ ...JSON.parse(fs.readFileSync(plan, 'utf8')), ...variants[field] }));
    const run = runCli(['experiment', '--plan', plan]);
    assert.equal(run.status, 0, run.stderr);
    assert.equal(recordLines(records).length, before + 1, `changing ${field} runs the cell again`);
  }
  const last = JSON.parse(recordLines(records).at(-1)!);
  assert.equal(last.epochs, 2);
  assert.equal(last.learningRate, 0.05);
});

test('a torn last record (an interrupted write) is ignored by report and cut off by the next experiment, whose cell runs again', () => {
  const plan = writePlan('torn');
  const records = path.join(work, 'torn.records.jsonl');
  assert.equal(runCli(['experiment', '--plan', plan]).status, 0);
  const whole = fs.readFileSync(records, 'utf8');
  fs.writeFileSync(records, whole + whole.slice(0, 40));
  const report = runCli(['report', records]);
  assert.equal(report.status, 0, report.stderr);
  assert.match(report.stderr, /ignored a torn last line of 40 bytes/);
  fs.writeFileSync(records, whole.slice(0, -1).slice(0, 60));
  const again = runCli(['experiment', '--plan', plan]);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /removed a torn last line of 60 bytes/);
  assert.equal(recordLines(records).length, 1);
  assert.doesNotThrow(() => JSON.parse(recordLines(records)[0]));
});

test('a full disk while appending a record leaves only whole lines and one clear line', () => {
  const plan = writePlan('full');
  const records = path.join(work, 'full.records.jsonl');
  // Fill the file to just under an 8 KiB file-size limit (ulimit -f), with SIGXFSZ ignored so that writes fail with EFBIG.
  const filler = JSON.stringify({ key: 'other|cell', method: 'lp', organ: 'liver', k: 1, fold: 0, seed: 0, dice: 0.5, pad: '' });
  const padded = filler.replace('"pad":""', `"pad":"${'x'.repeat(8 * 1024 - 60 - filler.length)}"`) + '\n';
  fs.writeFileSync(records, padded);
  const result = spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f 8; exec "${process.execPath}" "${CLI}" experiment --plan "${plan}"`], { encoding: 'utf8', env: { ...process.env, FSEFT_BACKEND: 'wasm' }, timeout: 60_000 });
  assert.equal(result.status, 1, result.stderr);
  const lines = result.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('fseft: backend'));
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0], /could not append a record \(EFBIG\); the records so far are intact/);
  assert.equal(fs.readFileSync(records, 'utf8'), padded, 'the file is as it was');
  assert.ok(!fs.existsSync(`${records}.lock`), 'the lock is released');
});

test('two experiments on one records file: the second is refused while the first runs; report refuses duplicated cells', async () => {
  const plan = writePlan('twice', { epochs: 3 });
  const records = path.join(work, 'twice.records.jsonl');
  const first = spawn(process.execPath, [CLI, 'experiment', '--plan', plan], { env: { ...process.env, FSEFT_BACKEND: 'wasm' }, stdio: 'ignore' });
  const done = new Promise<number | null>((resolve) => first.on('close', resolve));
  while (!fs.existsSync(`${records}.lock`)) await new Promise((resolve) => setTimeout(resolve, 50));
  assertRefused(runCli(['experiment', '--plan', plan]), /another experiment \(process \d+\) is writing these records/, { mentions: [records] });
  assert.equal(await done, 0);
  assert.equal(recordLines(records).length, 1);
  // A lock left by a process that has ended is taken over.
  fs.writeFileSync(`${records}.lock`, '999999999');
  assert.equal(runCli(['experiment', '--plan', plan]).status, 0);
  fs.appendFileSync(records, recordLines(records)[0] + '\n');
  assertRefused(runCli(['report', records]), /holds the cell 'lp liver k=1 fold 0 seed 0' twice/, { mentions: [records] });
});

test('plan fields are checked before any work, each error naming the field', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ queries: 0 }, /plan: "queries" must be a whole number of at least 1, got 0/],
    [{ shots: [0] }, /plan: "shots\[0\]" must be a whole number of at least 1, got 0/],
    [{ epochs: { '1': -3 } }, /plan: "epochs\.1" must be a whole number of at least 1, got -3/],
    [{ methods: ['lp+ti'], ti: { gamma: [-1] } }, /plan: "ti\.gamma\[0\]" must be at least 0 and below 1, got -1/],
    [{ learningRates: { lp: -1 } }, /plan: "learningRates\.lp" must be above 0, got -1/],
    [{ head: 'pretrained' }, /plan: "head" must be "zero-shot" or "random", got "pretrained"/],
  ];
  for (const [fields, pattern] of cases) {
    const plan = writePlan('bad-plan', fields);
    assertRefused(runCli(['experiment', '--plan', plan]), pattern, { mentions: [plan], absent: [path.join(work, 'bad-plan.records.jsonl')] });
  }
});

test('options are checked before any work, each error naming the option', () => {
  const image = dataset.cases[0].image;
  const label = dataset.cases[0].label!;
  const out = path.join(work, 'option-out');
  const adapt = ['adapt', '--model', modelDir, '--organ', 'liver', '--method', 'lp', '--support', `${image}=${label}:6`, '--query', image, '--out', out];
  const cases: Array<[string[], RegExp]> = [
    [['predict', '--model', modelDir, '--organ', 'liver', '--image', image, '--out', path.join(out, 'm.nii.gz'), '--overlap', '1'], /option --overlap must be at least 0 and below 1, got 1/],
    [['predict', '--model', modelDir, '--organ', 'liver', '--image', image, '--out', path.join(out, 'm.nii.gz'), '--overlap', '-1'], /option --overlap must be at least 0 and below 1, got -1/],
    [[...adapt, '--lambda', '-5'], /option --lambda must be at least 0, got -5/],
    [[...adapt, '--epochs', '0'], /option --epochs must be at least 1, got 0/],
    [[...adapt, '--epochs', '-3'], /option --epochs must be at least 1, got -3/],
    [[...adapt, '--lr', '-1'], /option --lr must be above 0, got -1/],
    [[...adapt, '--crops', '0'], /option --crops must be at least 1, got 0/],
    [[...adapt, '--ti-pool', '0'], /option --ti-pool must be at least 1, got 0/],
    [[...adapt, '--gamma', '-1'], /option --gamma must be at least 0 and below 1, got -1/],
    [[...adapt, '--init', modelDir], /--init starts scratch from a model's Swin encoder; it does not apply to lp/],
    [[...adapt, '--recipe', 'mine'], /unknown recipe 'mine'; choose one of paper, reference/],
    [['pretrain', '--data', 'x.json', '--out', out, '--epochs', '0'], /option --epochs must be at least 1, got 0/],
    [['pretrain', '--data', 'x.json', '--out', out, '--samples', '0'], /option --samples must be at least 1, got 0/],
    [['import-torch', 'x.pt', '--out', out, '--feature-size', '0'], /option --feature-size must be at least 12, got 0/],
    [['import-torch', 'x.pt', '--out', out, '--depths', '0,2,2,2'], /depth of stage 0 must be a whole number from 1 to 24, got 0/],
    [['predict', image, '--model', modelDir, '--organ', 'liver', '--image', image, '--out', path.join(out, 'm.nii.gz')], /unexpected argument '.*\.nii\.gz' \(every input is given with an option/],
  ];
  for (const [args, pattern] of cases) assertRefused(runCli(args), pattern, { absent: [out] });
});

test('outputs that are inputs are refused: predict onto its CT or its mask, preprocess onto its source', () => {
  const image = dataset.cases[0].image;
  const copy = path.join(work, 'q.nii.gz');
  fs.copyFileSync(image, copy);
  const before = fs.readFileSync(copy);
  assertRefused(runCli(['predict', '--model', modelDir, '--organ', 'liver', '--image', copy, '--out', copy]), /the output would overwrite the input/, { mentions: [copy] });
  const mask = path.join(work, 'mask.nii.gz');
  assertRefused(runCli(['predict', '--model', modelDir, '--organ', 'liver', '--image', copy, '--out', mask, '--probabilities', mask]), /two outputs are the same file/, { mentions: [mask], absent: [mask] });
  const folder = path.join(work, 'case-folder');
  fs.mkdirSync(folder);
  fs.copyFileSync(image, path.join(folder, 'image.nii.gz'));
  assertRefused(runCli(['preprocess', '--image', path.join(folder, 'image.nii.gz'), '--out', folder]), /the output would overwrite the input/);
  assert.deepEqual(fs.readFileSync(copy), before);
  assert.deepEqual(fs.readFileSync(path.join(folder, 'image.nii.gz')), before);
});

test('a failed adapt leaves no output folder behind', () => {
  const out = path.join(work, 'failed-adapt');
  const image = dataset.cases[0].image;
  const run = runCli(['adapt', '--model', modelDir, '--organ', 'liver', '--method', 'lp', '--support', `${image}=${path.join(work, 'missing.nii.gz')}:6`, '--epochs', '1', '--out', out]);
  assertRefused(run, /missing\.nii\.gz: file not found/, { absent: [out] });
});

test('pairs.json with a duplicate id is refused; preprocess --data redoes a case whose source label changed', () => {
  const pairs = path.join(work, 'pairs.json');
  const [a, b] = dataset.cases;
  fs.writeFileSync(pairs, JSON.stringify({ name: 'dup', labels: { '6': 'liver' }, cases: [{ id: 'same', image: a.image, label: a.label }, { id: 'same', image: b.image, label: b.label }] }));
  const out = path.join(work, 'dup-out');
  assertRefused(runCli(['preprocess', '--data', pairs, '--out', out]), /two cases have the id 'same'/, { mentions: [pairs] });
  // A source label that changes after its case was preprocessed makes a rerun redo that case.
  const labelCopy = path.join(work, 'label-copy.nii.gz');
  fs.copyFileSync(a.label!, labelCopy);
  fs.writeFileSync(pairs, JSON.stringify({ name: 'one', labels: { '6': 'liver' }, cases: [{ id: 'a', image: a.image, label: labelCopy }] }));
  const fresh = path.join(work, 'fresh-out');
  assert.equal(runCli(['preprocess', '--data', pairs, '--out', fresh, '--workers', '1']).status, 0);
  const rerun = runCli(['preprocess', '--data', pairs, '--out', fresh, '--workers', '1']);
  assert.match(rerun.stdout, /preprocessed 0 case\(s\), skipped 1/);
  fs.copyFileSync(b.label!, labelCopy);
  fs.utimesSync(labelCopy, new Date(), new Date(Date.now() + 5000));
  const changed = runCli(['preprocess', '--data', pairs, '--out', fresh, '--workers', '1']);
  assert.equal(changed.status, 0, changed.stderr);
  assert.match(changed.stdout, /preprocessed 1 case\(s\), skipped 0/);
});

test('a full disk while predict writes the probabilities leaves neither the mask nor the probabilities', () => {
  const image = dataset.cases[0].image;
  const mask = path.join(work, 'full-mask.nii.gz');
  const probabilities = path.join(work, 'full-probabilities.nii');
  // An uncompressed float32 probability map is larger than the 64 KiB file-size limit; the mask is smaller.
  const command = `trap '' XFSZ; ulimit -f 64; exec "${process.execPath}" "${CLI}" predict --model "${modelDir}" --organ liver --image "${image}" --out "${mask}" --probabilities "${probabilities}"`;
  const result = spawnSync('bash', ['-c', command], { encoding: 'utf8', env: { ...process.env, FSEFT_BACKEND: 'wasm' }, timeout: 60_000 });
  assert.equal(result.status, 1, result.stderr);
  const lines = result.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('fseft: backend') && !/sliding window/.test(l));
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0], /full-probabilities\.nii: could not write the file \(EFBIG/);
  assert.ok(!fs.existsSync(mask), 'the mask is removed');
  assert.ok(!fs.existsSync(probabilities));
  assert.deepEqual(fs.readdirSync(work).filter((f) => f.endsWith('.tmp')), [], 'no temporary file is left');
});
