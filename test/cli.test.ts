import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeNifti, readNifti } from '../lib/io/nifti';
import { Volume } from '../lib/io/volume';
import { CLI, EXAMPLE_DIR, EXAMPLE_SKIP, tempDir } from './helpers';

function fseft(...args: string[]) {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

async function smallCase(dir: string) {
  const affine = [[-2, 0, 0, 40], [0, -2, 0, 30], [0, 0, 3, 0], [0, 0, 0, 1]];
  const image = new Volume(Int16Array.from({ length: 30 * 25 * 8 }, (_, i) => ((i % 30) > 5 && (i % 30) < 25 ? 60 : -1000)), [30, 25, 8], affine);
  const label = image.withData(Uint8Array.from(image.data, (v, i) => (v > 0 && i % 7 === 0 ? 6 : 0)));
  await writeNifti(path.join(dir, 'ct.nii.gz'), image);
  await writeNifti(path.join(dir, 'seg.nii.gz'), label);
  return { image: path.join(dir, 'ct.nii.gz'), label: path.join(dir, 'seg.nii.gz') };
}

test('fseft info prints shape, spacing, orientation, datatype, range and affine source', async () => {
  const dir = tempDir();
  const { image } = await smallCase(dir);
  const { code, stdout } = fseft('info', image);
  assert.equal(code, 0);
  assert.match(stdout, /shape\s+30 x 25 x 8/);
  assert.match(stdout, /spacing\s+2 x 2 x 3 mm/);
  assert.match(stdout, /orientation\s+LPS/);
  assert.match(stdout, /datatype\s+int16/);
  assert.match(stdout, /value range\s+-1000 \.\. 60/);
  assert.match(stdout, /affine from\s+sform/);
  const json = JSON.parse(fseft('info', image, '--json').stdout);
  assert.equal(json.orientation, 'LPS');
});

test('fseft preprocess: one case, RAS 1.5 mm float32 image and uint8 label, one summary line', async () => {
  const dir = tempDir();
  const { image, label } = await smallCase(dir);
  const out = path.join(dir, 'out');
  const { code, stdout, stderr } = fseft('preprocess', '--image', image, '--label', label, '--out', out, '--window=-175,250');
  assert.equal(code, 0, stderr);
  assert.equal(stdout.trim().split('\n').length, 1);
  assert.match(stdout, /30x25x8 @ 2x2x3 mm LPS -> .* @ 1\.5x1\.5x1\.5 mm RAS, label values 6/);
  const processed = await readNifti(path.join(out, 'image.nii.gz'));
  const processedLabel = await readNifti(path.join(out, 'label.nii.gz'));
  assert.ok(processed.data instanceof Float32Array);
  assert.ok(processedLabel.data instanceof Uint8Array);
  assert.equal(processed.orientation, 'RAS');
  assert.deepEqual(processed.shape, processedLabel.shape);
});

test('fseft preprocess: bad inputs exit non-zero with one clear line and leave no output', async () => {
  const dir = tempDir();
  const { image } = await smallCase(dir);
  const corrupt = path.join(dir, 'corrupt.nii.gz');
  const whole = fs.readFileSync(image);
  fs.writeFileSync(corrupt, whole.subarray(0, Math.floor(whole.length / 2)));
  const mismatched = path.join(dir, 'other.nii.gz');
  await writeNifti(mismatched, new Volume(new Uint8Array(8), [2, 2, 2], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]));
  const empty = path.join(dir, 'empty.nii.gz');
  await writeNifti(empty, new Volume(new Uint8Array(30 * 25 * 8), [30, 25, 8], (await readNifti(image)).affine));
  const cases: Array<[string[], RegExp]> = [
    [['--image', corrupt], /corrupt\.nii\.gz: corrupt or truncated gzip/],
    [['--image', path.join(dir, 'missing.nii.gz')], /missing\.nii\.gz: file not found/],
    [['--image', image, '--label', mismatched], /other\.nii\.gz: label geometry does not match/],
    [['--image', image, '--label', empty], /empty\.nii\.gz: label is empty/],
    [['--image', image, '--spacng', '2'], /unknown option: --spacng/],
  ];
  for (const [args, pattern] of cases) {
    const out = path.join(dir, `out-${Math.random().toString(36).slice(2)}`);
    const { code, stderr } = fseft('preprocess', ...args, '--out', out);
    assert.equal(code, 1, `${args.join(' ')} should fail`);
    assert.match(stderr, pattern);
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    assert.ok(!fs.existsSync(path.join(out, 'image.nii.gz')), 'no partial output');
  }
  const blocker = path.join(dir, 'blocker');
  fs.writeFileSync(blocker, '');
  const { code, stderr } = fseft('preprocess', '--image', image, '--out', path.join(blocker, 'sub'));
  assert.equal(code, 1);
  assert.match(stderr, /output directory is not writable/);
});

test('fseft synth + preprocess --data: parallel batch, then a rerun resumes without redoing cases', async () => {
  const dir = tempDir();
  const data = path.join(dir, 'synth');
  const synth = fseft('synth', '--out', data, '--cases', '3', '--seed', '4', '--organs', 'liver,spleen', '--spacing-scale', '3', '--workers', '2');
  assert.equal(synth.code, 0, synth.stderr);
  assert.match(synth.stdout, /SYNTHETIC DATA/);
  const out = path.join(dir, 'pre');
  const first = fseft('preprocess', '--data', data, '--out', out, '--workers', '2');
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /preprocessed 3 case\(s\), skipped 0/);
  assert.match(first.stderr, /preprocess \[#+\] 3\/3 100%/);
  const caseDir = path.join(out, 'synth', 'synth_001');
  assert.ok(fs.existsSync(path.join(caseDir, 'label.nii.gz')));
  const collection = JSON.parse(fs.readFileSync(path.join(out, 'collection.json'), 'utf8'));
  assert.deepEqual(collection.datasets, [{ path: 'synth/pairs.json', name: 'synth' }]);
  // Simulate an interruption: one case lost its completion record.
  fs.rmSync(path.join(caseDir, 'case.json'));
  const second = fseft('preprocess', '--data', data, '--out', out, '--workers', '2');
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /preprocessed 1 case\(s\), skipped 2 already done/);
});

test('fseft preprocess --data reports every failed case and keeps the good ones', async () => {
  const dir = tempDir();
  const { image, label } = await smallCase(dir);
  fs.writeFileSync(path.join(dir, 'broken.nii.gz'), 'not a nifti at all, long enough to be read as a header?'.repeat(10));
  fs.writeFileSync(path.join(dir, 'pairs.json'), JSON.stringify({ labels: { '6': 'liver' }, cases: [{ image, label }, { image: 'broken.nii.gz', label }] }));
  const out = path.join(dir, 'out');
  const { code, stderr } = fseft('preprocess', '--data', path.join(dir, 'pairs.json'), '--out', out, '--workers', '2');
  assert.equal(code, 1);
  assert.match(stderr, /1 of 2 cases failed/);
  assert.match(stderr, /broken\.nii\.gz: not a NIfTI-1\/2 file/);
  assert.ok(fs.existsSync(path.join(out, 'pairs', 'ct', 'case.json')));
});

test('fseft preprocess on the real example matches MONAI shape (241 x 191 x 59)', { skip: EXAMPLE_SKIP }, () => {
  const out = tempDir();
  const { code, stdout, stderr } = fseft('preprocess', '--image', path.join(EXAMPLE_DIR, 'example_ct_sm.nii.gz'), '--label', path.join(EXAMPLE_DIR, 'example_seg.nii.gz'), '--out', out);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /122x101x30 @ 3x3x3 mm RAS -> 241x191x59 @ 1\.5x1\.5x1\.5 mm RAS/);
});

test('fseft without a command prints usage; unknown commands exit 2', () => {
  assert.match(fseft().stdout, /usage: fseft <command>/);
  assert.equal(fseft('frobnicate').code, 2);
  assert.match(fseft('preprocess', '--help').stdout, /--window=-175,250/);
});

test('fseft evaluate prints Dice, HD95 and surface Dice as JSON; mismatched grids are an error', async () => {
  const dir = tempDir();
  const affine = [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]];
  const labels = new Uint8Array(20 * 20 * 20);
  const prediction = new Uint8Array(labels.length);
  for (let z = 5; z < 15; z++) for (let y = 5; y < 15; y++) for (let x = 5; x < 15; x++) {
    labels[x + 20 * (y + 20 * z)] = 3;
    prediction[x + 5 + 20 * (y + 20 * z)] = x + 5 < 20 ? 1 : 0;
  }
  await writeNifti(path.join(dir, 'label.nii.gz'), new Volume(labels, [20, 20, 20], affine));
  await writeNifti(path.join(dir, 'pred.nii.gz'), new Volume(prediction, [20, 20, 20], affine));
  await writeNifti(path.join(dir, 'other.nii.gz'), new Volume(prediction, [20, 20, 20], [[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]));
  const run = fseft('evaluate', '--pred', path.join(dir, 'pred.nii.gz'), '--label', `${path.join(dir, 'label.nii.gz')}:3`);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  assert.equal(result.dice, 0.5); // 500 of 1000 voxels overlap, both masks have 1000
  assert.ok(result.hd95_mm > 0 && result.hd95_mm <= 10);
  assert.ok(result.surface_dice > 0 && result.surface_dice < 1);
  const missing = fseft('evaluate', '--pred', path.join(dir, 'pred.nii.gz'), '--label', `${path.join(dir, 'label.nii.gz')}:7`);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /label value 7 does not occur in the label/);
  const mismatch = fseft('evaluate', '--pred', path.join(dir, 'other.nii.gz'), '--label', path.join(dir, 'label.nii.gz'));
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.stderr, /label\.nii\.gz: geometry differs/);
});
