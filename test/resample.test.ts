import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { applyAffine, invertAffine } from '../lib/io/affine';
import { Volume } from '../lib/io/volume';
import { orient } from '../lib/transforms/axes';
import { resampleOnGrid, resampleToSpacing, roundHalfEven, spacingGrid } from '../lib/transforms/resample';
import { assertAffineClose, diagonalAffine, maxAbsDifference, volumeFrom } from './helpers';

test('spacing grid matches MONAI Spacing: shape round(extent / spacing) + 1, origin kept', () => {
  // example_ct_sm: 122 x 101 x 30 at 3 mm -> 243 x 201 x 59 at 1.5 mm (MONAI gives the same).
  const grid = spacingGrid([122, 101, 30], diagonalAffine([3, 3, 3], [-177.96, 11.32, 94.3]), [1.5, 1.5, 1.5]);
  assert.deepEqual(grid.shape, [243, 201, 59]);
  assertAffineClose(grid.affine, diagonalAffine([1.5, 1.5, 1.5], [-177.96, 11.32, 94.3]));
  // 512 x 512 x 300 at 0.78 x 0.78 x 1.25 mm -> 267 x 267 x 250 (MONAI's shape in baselines.md).
  assert.deepEqual(spacingGrid([512, 512, 300], diagonalAffine([0.78, 0.78, 1.25]), [1.5, 1.5, 1.5]).shape, [267, 267, 250]);
});

test('trilinear resampling reproduces a linear function exactly (inside the field of view)', () => {
  const f = (x: number, y: number, z: number) => 2 * x - 0.5 * y + 0.25 * z + 3;
  const affine = diagonalAffine([3, 2, 4], [-10, 5, 7]);
  const volume = volumeFrom([12, 10, 8], affine, (i, j, k) => f(...applyAffine(affine, [i, j, k])));
  const out = resampleToSpacing(volume, [1.5, 1.5, 1.5], 'linear');
  assert.deepEqual(out.shape, [23, 13, 20]); // round((n - 1) * old / new) + 1
  let worst = 0;
  for (let k = 0; k < out.shape[2]; k++) {
    for (let j = 0; j < out.shape[1]; j++) {
      for (let i = 0; i < out.shape[0]; i++) {
        const w = applyAffine(out.affine, [i, j, k]);
        const source = applyAffine(invertAffine(affine), w);
        if (source.some((c, a) => c > volume.shape[a] - 1)) continue; // border padding beyond the last voxel
        worst = Math.max(worst, Math.abs(out.data[out.index(i, j, k)] - f(w[0], w[1], w[2])));
      }
    }
  }
  assert.ok(worst < 1e-3, `max error ${worst}`);
});

test('nearest resampling keeps label values and rounds half to even like PyTorch', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 2.4, 2.6, 3.0000001].map(roundHalfEven), [0, 2, 2, 2, 3, 3]);
  const label = new Volume(Uint8Array.from([0, 7, 7, 3]), [4, 1, 1], diagonalAffine([2, 1, 1]));
  const out = resampleToSpacing(label, [1, 1, 1], 'nearest');
  assert.ok(out.data instanceof Uint8Array);
  // Output x = 0..6 reads input 0, 0.5, 1, 1.5, 2, 2.5, 3 -> 0, 0, 1, 2, 2, 2, 3
  assert.deepEqual(Array.from(out.data), [0, 0, 7, 7, 7, 7, 3]);
});

test('the general (oblique) sampler agrees with the separable one', () => {
  const affine = diagonalAffine([2, 2, 2]);
  const volume = volumeFrom([9, 8, 7], affine, (i, j, k) => Math.sin(i) + Math.cos(j * 0.7) + k * 0.3);
  const target = diagonalAffine([1.3, 1.1, 1.7], [0.4, 0.2, 0.1]);
  const separable = resampleOnGrid(volume, [10, 12, 8], target, 'linear');
  // A rotation by a hair forces the general path; the result must barely change.
  const e = 1e-7;
  const tilted = [[1.3, e, 0, 0.4], [-e, 1.1, 0, 0.2], [0, 0, 1.7, 0.1], [0, 0, 0, 1]];
  const general = resampleOnGrid(volume, [10, 12, 8], tilted, 'linear');
  assert.ok(maxAbsDifference(separable.data, general.data) < 1e-4);
  const nearestA = resampleOnGrid(volume, [10, 12, 8], target, 'nearest');
  const nearestB = resampleOnGrid(volume, [10, 12, 8], tilted, 'nearest');
  assert.deepEqual(Array.from(nearestA.data), Array.from(nearestB.data));
});

test('resampling an oriented copy gives the same world-space result', () => {
  const lps = [[-0.9, 0, 0, 40], [0, -0.9, 0, 30], [0, 0, 2.5, -20], [0, 0, 0, 1]];
  const volume = volumeFrom([20, 18, 6], lps, (i, j, k) => i * i + 3 * j + 10 * k);
  const direct = resampleToSpacing(orient(volume), [1.5, 1.5, 1.5], 'linear');
  const grid = spacingGrid(orient(volume).shape, orient(volume).affine, [1.5, 1.5, 1.5]);
  const fromOriginal = resampleOnGrid(volume, grid.shape, grid.affine, 'linear');
  assert.ok(maxAbsDifference(direct.data, fromOriginal.data) < 1e-3);
});
