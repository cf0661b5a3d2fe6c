import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { applyAffine } from '../lib/io/affine';
import { Volume } from '../lib/io/volume';
import { cropBox, foregroundBox, spatialPad } from '../lib/transforms/crop';
import { randShiftIntensity, scaleIntensityRange } from '../lib/transforms/intensity';
import { randCropByClassBalance, randCropByPosNegLabel, randFlip, randRotate90 } from '../lib/transforms/random';
import { gaussianSmooth } from '../lib/transforms/smooth';
import { compose } from '../lib/transforms/compose';
import { Rng, seedFrom } from '../lib/util/random';
import { diagonalAffine, volumeFrom } from './helpers';

test('scaleIntensityRange maps the HU window onto [0, 1] with clipping', () => {
  const volume = new Volume(Float32Array.from([-1000, -175, 37.5, 250, 900, 0, 0, 0]), [2, 2, 2], diagonalAffine([1, 1, 1]));
  const out = scaleIntensityRange(volume, [-175, 250]);
  assert.deepEqual(Array.from(out.data.slice(0, 5)), [0, 0, 0.5, 1, 1]);
  assert.throws(() => scaleIntensityRange(volume, [10, 10]), /invalid intensity window/);
});

test('foregroundBox and cropBox: tight box, world positions kept', () => {
  const volume = volumeFrom([6, 5, 4], diagonalAffine([2, 2, 2], [1, 2, 3]), (i, j, k) => (i >= 2 && i <= 4 && j === 1 && k >= 1 && k <= 2 ? 1 : 0));
  const box = foregroundBox(volume)!;
  assert.deepEqual(box, { start: [2, 1, 1], end: [5, 2, 3] });
  const cropped = cropBox(volume, box);
  assert.deepEqual(cropped.shape, [3, 1, 2]);
  assert.ok(cropped.data.every((v) => v === 1));
  assert.deepEqual(applyAffine(cropped.affine, [0, 0, 0]), applyAffine(volume.affine, [2, 1, 1]));
  assert.equal(foregroundBox(volume.withData(new Float32Array(volume.voxelCount))), undefined);
});

test('spatialPad pads symmetrically (extra voxel after) and shifts the origin', () => {
  const volume = volumeFrom([2, 3, 1], diagonalAffine([1, 1, 1]), (i, j) => 1 + i + 2 * j);
  const padded = spatialPad(volume, [5, 3, 2]);
  assert.deepEqual(padded.shape, [5, 3, 2]);
  assert.equal(padded.data[padded.index(1, 0, 0)], 1); // 1 voxel before along x, 0 before along z
  assert.equal(padded.data[padded.index(2, 2, 0)], 6);
  assert.equal(padded.data[padded.index(0, 0, 0)], 0);
  assert.equal(padded.data[padded.index(1, 0, 1)], 0);
  assert.deepEqual(applyAffine(padded.affine, [1, 0, 0]), [0, 0, 0]);
  assert.equal(spatialPad(volume, [1, 1, 1]), volume);
});

function labelledCase() {
  const image = volumeFrom([40, 30, 20], diagonalAffine([1, 1, 1]), (i, j, k) => (i + j + k) / 90 + 0.01);
  const label = image.withData(new Uint8Array(image.voxelCount));
  for (let k = 12; k < 15; k++) for (let j = 20; j < 24; j++) for (let i = 30; i < 35; i++) label.data[label.index(i, j, k)] = 3;
  return { image, label };
}

test('randCropByPosNegLabel: seeded, inside the volume, positive crops contain foreground', () => {
  const { image, label } = labelledCase();
  const crops = randCropByPosNegLabel(image, label, new Rng(7), { roi: [16, 16, 16], numSamples: 40 });
  const again = randCropByPosNegLabel(image, label, new Rng(7), { roi: [16, 16, 16], numSamples: 40 });
  assert.deepEqual(crops.map((c) => c.center), again.map((c) => c.center));
  const positives = crops.filter((c) => c.positive);
  assert.ok(positives.length >= 10 && positives.length <= 30, `about half positive, got ${positives.length}/40`);
  for (const crop of crops) {
    assert.deepEqual(crop.image.shape, [16, 16, 16]);
    const origin = applyAffine(crop.image.affine, [0, 0, 0]);
    assert.ok(origin.every((v, a) => v >= 0 && v + 16 <= image.shape[a]), 'crop lies inside the volume');
    if (crop.positive) assert.ok(crop.label.data.some((v) => v === 3), 'a positive crop contains foreground');
  }
  // Every crop's image is the matching block of the source.
  const first = crops[0];
  const start = applyAffine(first.image.affine, [0, 0, 0]);
  assert.equal(first.image.data[first.image.index(3, 4, 5)], image.data[image.index(start[0] + 3, start[1] + 4, start[2] + 5)]);
});

test('randCropByPosNegLabel pads volumes smaller than the patch', () => {
  const { image, label } = labelledCase();
  const crops = randCropByPosNegLabel(image, label, new Rng(1), { roi: [48, 32, 24], numSamples: 3, pos: 1, neg: 0 });
  for (const crop of crops) {
    assert.deepEqual(crop.image.shape, [48, 32, 24]);
    assert.ok(crop.label.data.some((v) => v === 3));
  }
});

test('random augmentations are seeded and apply the same change to image and label', () => {
  const { image, label } = labelledCase();
  const [rotatedImage, rotatedLabel] = randRotate90([image, label], new Rng(3), { prob: 1 });
  assert.deepEqual(rotatedImage.shape, rotatedLabel.shape);
  const [againImage] = randRotate90([image, label], new Rng(3), { prob: 1 });
  assert.deepEqual(Array.from(againImage.data), Array.from(rotatedImage.data));
  const [flipped, flippedLabel] = randFlip([image, label], new Rng(3), { prob: 1, axes: [0] });
  assert.equal(flipped.data[flipped.index(0, 0, 0)], image.data[image.index(39, 0, 0)]);
  assert.equal(flippedLabel.data[flippedLabel.index(39 - 31, 21, 13)], 3);
  const unchanged = randRotate90([image, label], new Rng(3), { prob: 0 });
  assert.equal(unchanged[0], image);
  const shifted = randShiftIntensity(image, new Rng(5), 0.1, 1);
  const delta = shifted.data[0] - image.data[0];
  assert.ok(Math.abs(delta) <= 0.1 && delta !== 0);
  assert.ok(Math.abs(shifted.data[100] - image.data[100] - delta) < 1e-6);
});

test('gaussianSmooth keeps constants, spreads an impulse symmetrically and preserves its mass', () => {
  const impulse = volumeFrom([15, 15, 15], diagonalAffine([1, 1, 1]), (i, j, k) => (i === 7 && j === 7 && k === 7 ? 1 : 0));
  const out = gaussianSmooth(impulse, [1.5, 1, 0.5]);
  let sum = 0;
  for (const v of out.data) sum += v;
  assert.ok(Math.abs(sum - 1) < 1e-5);
  assert.ok(Math.abs(out.data[out.index(6, 7, 7)] - out.data[out.index(8, 7, 7)]) < 1e-7);
  assert.ok(out.data[out.index(6, 7, 7)] > out.data[out.index(7, 7, 6)], 'wider along x (sigma 1.5) than along z (0.5)');
  const constant = gaussianSmooth(volumeFrom([5, 5, 5], diagonalAffine([1, 1, 1]), () => 3), [2, 2, 2]);
  assert.ok(constant.data.every((v) => Math.abs(v - 3) < 1e-5));
});

test('Rng: same seed same stream, forks and derived seeds are independent', () => {
  const a = new Rng(42);
  const b = new Rng(42);
  assert.deepEqual([a.next(), a.normal(), a.int(10)], [b.next(), b.normal(), b.int(10)]);
  assert.notEqual(new Rng(1).next(), new Rng(2).next());
  assert.notEqual(seedFrom(1, 'a', 0), seedFrom(1, 'a', 1));
  const values = Array.from({ length: 20000 }, () => a.next());
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01);
  assert.deepEqual(new Rng(3).shuffle([1, 2, 3, 4, 5]).sort(), [1, 2, 3, 4, 5]);
});

test('compose runs steps in order with independent seeded streams', () => {
  const trace: string[] = [];
  const pipeline = compose<number>(
    (x) => (trace.push('double'), x * 2),
    (x, rng) => x + rng.int(1000),
  );
  const a = pipeline(5, new Rng(9));
  const b = pipeline(5, new Rng(9));
  assert.equal(a, b);
  assert.ok(a >= 10 && a < 1010);
  assert.deepEqual(trace, ['double', 'double']);
  const withExtra = compose<number>((x) => x * 2, (x, rng) => x + rng.int(1000), (x) => x);
  assert.equal(withExtra(5, new Rng(9)), a, 'adding a step keeps the random draws');
});

test('class-balanced patches: half background, the rest spread evenly over the classes present', () => {
  const shape: [number, number, number] = [40, 40, 20];
  const image = new Volume(new Float32Array(40 * 40 * 20).fill(0.5), shape, diagonalAffine([1, 1, 1]));
  // Class 6 fills a big block, class 1 a 2x2x2 cube: any-voxel sampling would almost never pick class 1.
  const labels = new Uint8Array(image.voxelCount);
  for (let k = 0; k < 20; k++) for (let j = 0; j < 20; j++) for (let i = 0; i < 20; i++) labels[i + 40 * (j + 40 * k)] = 6;
  for (let k = 10; k < 12; k++) for (let j = 30; j < 32; j++) for (let i = 30; i < 32; i++) labels[i + 40 * (j + 40 * k)] = 1;
  const label = image.withData(labels);
  const patches = randCropByClassBalance(image, label, new Rng(4), { roi: [8, 8, 8], numSamples: 600 });
  const centreClass = patches.map((p) => labels[p.center[0] + 40 * (p.center[1] + 40 * p.center[2])]);
  const count = (c: number) => centreClass.filter((v) => v === c).length;
  assert.ok(Math.abs(count(0) - 300) < 50, `background centres ${count(0)}`);
  assert.ok(Math.abs(count(1) - 150) < 40, `small-class centres ${count(1)}`);
  assert.ok(Math.abs(count(6) - 150) < 40, `large-class centres ${count(6)}`);
  assert.ok(patches.every((p) => p.image.shape.join() === '8,8,8'));
  assert.deepEqual(randCropByClassBalance(image, label, new Rng(5), { roi: [8, 8, 8], numSamples: 3 }).map((p) => p.center), randCropByClassBalance(image, label, new Rng(5), { roi: [8, 8, 8], numSamples: 3 }).map((p) => p.center));
});
