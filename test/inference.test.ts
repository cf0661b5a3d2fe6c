import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { Affine, applyAffine } from '../lib/io/affine';
import { Shape3 } from '../lib/io/volume';
import { checkHounsfield, toInputGeometry } from '../lib/inference/predict';
import { gaussianImportance, slidingWindow, windowStarts } from '../lib/inference/sliding-window';
import { dice } from '../lib/metrics/overlap';
import { cropGrid, gridChannelToVolumeData, poolGrid, volumeToGrid } from '../lib/networks/volume-tensor';
import { preprocessCase } from '../lib/transforms/preprocess';
import { REPO_ROOT, diagonalAffine, volumeFrom } from './helpers';

test('window starts follow MONAI dense_patch_slices (stride roi * (1 - overlap), last flush)', () => {
  assert.deepEqual(windowStarts(96, 96, 0.25), [0]);
  assert.deepEqual(windowStarts(50, 96, 0.25), [0]);
  assert.deepEqual(windowStarts(200, 96, 0.25), [0, 72, 104]);
  assert.deepEqual(windowStarts(80, 32, 0.25), [0, 24, 48]);
  assert.deepEqual(windowStarts(100, 32, 0.5), [0, 16, 32, 48, 64, 68]);
});

test('Gaussian importance: MONAI 1.2 (centre (roi - 1) / 2, sigma = 0.125 roi, separable, floor 1e-3)', () => {
  const roi: Shape3 = [16, 8, 32];
  const map = gaussianImportance(roi);
  const at = (x: number, y: number, z: number) => map[(x * roi[1] + y) * roi[2] + z];
  const g = (d: number, sigma: number) => Math.exp(-(d * d) / (2 * sigma * sigma));
  // Even ROIs: the peak lies between voxels 7 and 8 (x), 3 and 4 (y), 15 and 16 (z).
  assert.ok(Math.abs(at(8, 4, 16) - g(0.5, 2) * g(0.5, 1) * g(0.5, 4)) < 1e-6);
  assert.ok(Math.abs(at(7, 3, 15) - at(8, 4, 16)) < 1e-7);
  assert.ok(Math.abs(at(10, 4, 16) / at(8, 4, 16) - g(2.5, 2) / g(0.5, 2)) < 1e-5);
  assert.ok(Math.abs(at(5, 2, 10) - at(10, 5, 21)) < 1e-7, 'symmetric about (roi - 1) / 2');
  // The corners fall far below 1e-3 and are raised to it.
  assert.ok(g(7.5, 2) * g(3.5, 1) * g(15.5, 4) < 1e-3);
  assert.equal(at(0, 0, 0), Math.fround(1e-3));
  assert.equal(Math.min(...map), Math.fround(1e-3));
});

test('sliding window matches MONAI 1.2 sliding_window_inference: padding, starts, importance, blending', async () => {
  await switchBackend('cpu');
  const fixture = JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'sliding-window.json'), 'utf8'));
  const shape = fixture.shape as Shape3;
  const grid = { data: Float32Array.from(fixture.input), shape, channels: 1 };
  const startsSeen: string[] = [];
  const [out] = slidingWindow(
    grid,
    [{ channels: 4, scale: 1 }],
    (window, start) => {
      startsSeen.push(start.join(','));
      return [
        tf.tidy(() => {
          const roi = window.shape.slice(1, 4);
          const position = (axis: number) =>
            tf.broadcastTo(tf.reshape(tf.range(0, roi[axis], 1, 'float32'), roi.map((n, a) => (a === axis ? n : 1))), roi).expandDims(3);
          return tf.concat([window.squeeze([0]), position(0), position(1), position(2)], 3).expandDims(0) as tf.Tensor5D;
        }),
      ];
    },
    { roi: fixture.roi, overlap: 0.25 },
  );
  // 20 > 16: windows at 0 and 4; 9 < 12: one window starting 1 before the volume (pad 1 + 2);
  // 13 > 8 (odd): windows at 0 and 5, the last flush with the end.
  assert.deepEqual(startsSeen, ['0,-1,0', '0,-1,5', '4,-1,0', '4,-1,5']);
  assert.deepEqual(out.shape, shape);
  let worst = 0;
  for (let i = 0; i < out.data.length; i++) worst = Math.max(worst, Math.abs(out.data[i] - fixture.output[i]));
  assert.ok(worst < 2e-5, `largest difference from MONAI ${worst}`);
});

test('half-resolution outputs keep every window start even, the padding before a short axis included', async () => {
  await switchBackend('cpu');
  const grid = { data: new Float32Array(40 * 22 * 10).fill(1), shape: [40, 22, 10] as Shape3, channels: 1 };
  const starts: string[] = [];
  slidingWindow(grid, [{ channels: 1, scale: 2 }], (window, start) => {
    starts.push(start.join(','));
    return [tf.tidy(() => tf.avgPool3d(window, 2, 2, 'valid') as tf.Tensor5D)];
  }, { roi: [32, 32, 32], overlap: 0.25 });
  // x: 40 -> starts 0 and 8; y: 22 pads 10 -> 5 before, rounded to 4; z: 10 pads 22 -> 11, rounded to 10.
  assert.deepEqual(starts, ['0,-4,-10', '8,-4,-10']);
});

test('sliding window reproduces a pointwise function exactly, at full and half resolution, with padding', async () => {
  await switchBackend('cpu');
  const shape: Shape3 = [45, 30, 37]; // odd sizes, one axis below the ROI
  const volume = volumeFrom(shape, diagonalAffine([1, 1, 1]), (i, j, k) => i + 100 * j + 10000 * k);
  const grid = volumeToGrid(volume);
  const before = tf.memory().numTensors;
  let windows = 0;
  const [full, half] = slidingWindow(
    grid,
    [{ channels: 2, scale: 1 }, { channels: 1, scale: 2 }],
    (window) => tf.tidy(() => [tf.concat([window, tf.mul(window, -1)], 4) as tf.Tensor5D, tf.avgPool3d(window, 2, 2, 'valid') as tf.Tensor5D]),
    { roi: [32, 32, 32], overlap: 0.25, onWindow: () => windows++ },
  );
  assert.equal(tf.memory().numTensors, before, 'windows leave no tensors behind');
  assert.equal(windows, 2 * 1 * 2);
  assert.deepEqual(full.shape, shape);
  assert.deepEqual(half.shape, [23, 15, 19]);
  const values = gridChannelToVolumeData(full, 0);
  const negated = gridChannelToVolumeData(full, 1);
  for (let v = 0; v < values.length; v += 7) {
    assert.ok(Math.abs(values[v] - volume.data[v]) < 1e-5 * Math.max(1, Math.abs(volume.data[v])), `voxel ${v}: ${values[v]} vs ${volume.data[v]}`);
    assert.ok(Math.abs(negated[v] + volume.data[v]) < 1e-3 * Math.max(1, Math.abs(volume.data[v])));
  }
  // Half resolution: the mean of each 2x2x2 block of the (zero-padded) input.
  const expected = poolGrid(grid, 2); // floor sizes: compare where both exist
  for (let x = 0; x < 22; x += 3) for (let y = 0; y < 15; y += 2) for (let z = 0; z < 18; z += 3) {
    const a = half.data[(x * 15 + y) * 19 + z];
    const b = expected.data[(x * expected.shape[1] + y) * expected.shape[2] + z];
    assert.ok(Math.abs(a - b) < 1e-3 * Math.max(1, Math.abs(b)), `half (${x},${y},${z}): ${a} vs ${b}`);
  }
});

test('crops of a grid read zeros outside and match the volume inside', async () => {
  await switchBackend('cpu');
  const volume = volumeFrom([5, 4, 3], diagonalAffine([1, 1, 1]), (i, j, k) => 1 + i + 10 * j + 100 * k);
  const crop = cropGrid(volumeToGrid(volume), [-1, 2, 1], [3, 3, 3]);
  const data = crop.dataSync();
  crop.dispose();
  const at = (x: number, y: number, z: number) => data[(x * 3 + y) * 3 + z];
  assert.equal(at(0, 0, 0), 0); // i = -1
  assert.equal(at(1, 0, 0), 1 + 0 + 20 + 100);
  assert.equal(at(2, 1, 1), 1 + 1 + 30 + 200);
  assert.equal(at(2, 2, 1), 0); // j = 4
  assert.equal(at(1, 0, 2), 0); // k = 3
});

test('predict maps a mask found on the preprocessed (RAS, resampled, cropped) grid back onto the stored voxels', () => {
  // Stored as LPS with 0.8 x 0.8 x 2.5 mm voxels; the organ is a ball in world coordinates.
  const affine: Affine = [[-0.8, 0, 0, 60], [0, -0.8, 0, 50], [0, 0, 2.5, -40], [0, 0, 0, 1]];
  const shape: Shape3 = [110, 96, 30];
  const inBall = (i: number, j: number, k: number) => {
    const [x, y, z] = applyAffine(affine, [i, j, k]);
    return (x - 10) ** 2 + (y - 5) ** 2 + (z + 5) ** 2 < 18 ** 2;
  };
  const image = volumeFrom(shape, affine, (i, j, k) => {
    const [x, y] = applyAffine(affine, [i, j, k]);
    if (inBall(i, j, k)) return 150;
    return (x / 40) ** 2 + (y / 35) ** 2 < 1 ? 40 : -1000;
  });
  const label = image.withData(Uint8Array.from(image.data, (v) => (v === 150 ? 1 : 0)));
  const pre = preprocessCase({ image, label }, { spacing: 1.5 });
  assert.equal(pre.image.orientation, 'RAS');
  assert.notDeepEqual(pre.image.shape, shape);
  // A perfect prediction on the preprocessed grid must land on the stored label.
  const probabilities = pre.label!.withData(Float32Array.from(pre.label!.data));
  const { mask, probabilities: mapped } = toInputGeometry(probabilities, image);
  assert.deepEqual(mask.shape, shape);
  assert.deepEqual(mask.affine, image.affine);
  const score = dice(mask.data, label.data);
  assert.ok(score > 0.95, `Dice of the mapped-back mask ${score.toFixed(4)}`);
  // Nothing leaks outside the preprocessed crop (zero there, not the border value).
  assert.equal(mapped.data[0], 0);
});

test('CT intensity check: Hounsfield volumes pass, normalised or MR-like volumes are refused by file name', () => {
  const ct = volumeFrom([4, 4, 4], diagonalAffine([1, 1, 1]), (i) => (i === 0 ? -1000 : 50));
  checkHounsfield(ct, 'ct.nii.gz');
  const normalised = volumeFrom([4, 4, 4], diagonalAffine([1, 1, 1]), (i) => i / 3);
  assert.throws(() => checkHounsfield(normalised, 'query.nii.gz'), /query\.nii\.gz.*do not look like CT in Hounsfield units/);
});
