import { test } from 'node:test';
import { labelValues } from '../lib/cli/commands/preprocess';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Affine, applyAffine } from '../lib/io/affine';
import { readNifti } from '../lib/io/nifti';
import { Volume } from '../lib/io/volume';
import { AxisTransform, applyAxisTransform, orient } from '../lib/transforms/axes';
import { cropBox, foregroundBox } from '../lib/transforms/crop';
import { scaleIntensityRange } from '../lib/transforms/intensity';
import { preprocessCase } from '../lib/transforms/preprocess';
import { resampleToSpacing } from '../lib/transforms/resample';
import { EXAMPLE_DIR, EXAMPLE_SKIP, assertAffineClose, maxAbsDifference, volumeFrom } from './helpers';

const LPS_ANISOTROPIC: Affine = [[-0.8, 0, 0, 60], [0, -0.8, 0, 50], [0, 0, 2.5, -40], [0, 0, 0, 1]];

/** A CT-like analytic phantom: air outside a body ellipse, a bright sphere labelled 6 and a dark one labelled 1. */
function analyticCase(): { image: Volume; label: Volume<Uint8Array> } {
  const shape: [number, number, number] = [120, 100, 24];
  const world = (i: number, j: number, k: number) => applyAffine(LPS_ANISOTROPIC, [i, j, k]);
  const image = volumeFrom(shape, LPS_ANISOTROPIC, (i, j, k) => {
    const [x, y, z] = world(i, j, k);
    const body = (x / 40) ** 2 + (y / 30) ** 2 < 1;
    if (!body) return -1000;
    return 40 + 60 * Math.sin(x / 9) * Math.cos(y / 7) + z;
  });
  const labels = new Uint8Array(image.voxelCount);
  for (let k = 0, o = 0; k < shape[2]; k++) {
    for (let j = 0; j < shape[1]; j++) {
      for (let i = 0; i < shape[0]; i++, o++) {
        const [x, y, z] = world(i, j, k);
        if ((x - 10) ** 2 + y ** 2 + (z + 10) ** 2 < 15 ** 2) labels[o] = 6;
        else if ((x + 15) ** 2 + (y - 5) ** 2 + (z + 15) ** 2 < 8 ** 2) labels[o] = 1;
      }
    }
  }
  return { image, label: image.withData(labels) };
}

const REARRANGEMENTS: AxisTransform[] = [
  { perm: [0, 1, 2], flips: [true, false, false] }, // RPS
  { perm: [0, 1, 2], flips: [true, true, false] }, // RAS
  { perm: [2, 0, 1], flips: [false, true, false] }, // SRP... permuted axes
  { perm: [1, 2, 0], flips: [true, true, true] },
];

test('preprocessing is invariant to how the volume is stored (orientation, axis order)', () => {
  const { image, label } = analyticCase();
  const reference = preprocessCase({ image, label });
  for (const transform of REARRANGEMENTS) {
    const storedImage = applyAxisTransform(image, transform);
    const storedLabel = applyAxisTransform(label, transform);
    const result = preprocessCase({ image: storedImage, label: storedLabel });
    const name = `${storedImage.orientation}`;
    assert.deepEqual(result.image.shape, reference.image.shape, name);
    assertAffineClose(result.image.affine, reference.image.affine, 1e-4);
    assert.ok(maxAbsDifference(result.image.data, reference.image.data) < 1e-5, name);
    assert.deepEqual(Array.from(result.label!.data), Array.from(reference.label!.data), name);
  }
});

test('preprocessing equals the MONAI chain applied step by step', () => {
  const { image, label } = analyticCase();
  const fused = preprocessCase({ image, label });
  const spaced = resampleToSpacing(orient(image), [1.5, 1.5, 1.5], 'linear');
  const spacedLabel = resampleToSpacing(orient(label), [1.5, 1.5, 1.5], 'nearest');
  const scaled = scaleIntensityRange(spaced, [-175, 250], [0, 1]);
  const box = foregroundBox(scaled)!;
  const stepImage = cropBox(scaled, box);
  const stepLabel = cropBox(spacedLabel, box);
  assert.equal(fused.image.orientation, 'RAS');
  assert.deepEqual(fused.image.shape, stepImage.shape);
  assertAffineClose(fused.image.affine, stepImage.affine, 1e-6);
  assert.ok(maxAbsDifference(fused.image.data, stepImage.data) < 1e-5);
  assert.deepEqual(Array.from(fused.label!.data), Array.from(stepLabel.data));
  let min = Infinity, max = -Infinity;
  for (const v of fused.image.data) (min = Math.min(min, v)), (max = Math.max(max, v));
  assert.ok(min >= 0 && max <= 1, `intensities in [0, 1], got ${min}..${max}`);
  // The crop hugs the body: the first and last planes along each axis contain foreground.
  assert.deepEqual(foregroundBox(fused.image)!.start, [0, 0, 0]);
  assert.deepEqual(foregroundBox(fused.image)!.end, fused.image.shape);
});

test('label values are preserved and stay on the structures they label', () => {
  const { image, label } = analyticCase();
  const result = preprocessCase({ image, label });
  assert.deepEqual([...new Set(result.label!.data)].sort(), [0, 1, 6]);
  // Voxel centres well inside the big sphere are labelled 6, well outside are not.
  const out = result.label!;
  const inverse = (w: number[]) => applyAffine(require('../lib/io/affine').invertAffine(out.affine), w).map(Math.round);
  const centre = inverse([10, 0, -10]);
  assert.equal(out.data[out.index(centre[0], centre[1], centre[2])], 6);
  const away = inverse([-25, 20, 5]);
  assert.equal(out.data[out.index(away[0], away[1], away[2])], 0);
});

test('bad input: label geometry mismatch and empty label name the file', () => {
  const { image, label } = analyticCase();
  const shifted = label.withData(label.data, label.shape, LPS_ANISOTROPIC.map((row, r) => (r === 0 ? [row[0], row[1], row[2], row[3] + 5] : row)));
  assert.throws(() => preprocessCase({ image, label: shifted, labelFile: 'seg.nii.gz' }), /seg\.nii\.gz: label geometry does not match/);
  const empty = label.withData(new Uint8Array(label.voxelCount));
  assert.throws(() => preprocessCase({ image, label: empty, labelFile: 'seg.nii.gz' }), /seg\.nii\.gz: label is empty/);
  const air = image.withData(new Float32Array(image.voxelCount).fill(-1000));
  assert.throws(() => preprocessCase({ image: air, imageFile: 'ct.nii.gz' }), /ct\.nii\.gz: no foreground/);
});

test('real example: shape and affine as MONAI, stored-orientation invariance, labels kept', { skip: EXAMPLE_SKIP }, async () => {
  const image = await readNifti(path.join(EXAMPLE_DIR, 'example_ct_sm.nii.gz'));
  const label = await readNifti(path.join(EXAMPLE_DIR, 'example_seg.nii.gz'));
  const result = preprocessCase({ image, label });
  // MONAI 1.2 gives 241 x 191 x 59 for this file (shared/baselines.md).
  assert.deepEqual(result.image.shape, [241, 191, 59]);
  assertAffineClose(result.image.affine, [[1.5, 0, 0, image.affine[0][3]], [0, 1.5, 0, image.affine[1][3]], [0, 0, 1.5, image.affine[2][3]], [0, 0, 0, 1]], 1e-4);
  const values = (v: Volume) => [...new Set(v.data)].sort((a, b) => a - b);
  assert.deepEqual(values(result.label!), values(label));

  // Every output voxel on an even index sits exactly on an input voxel centre: identical values there.
  let agree = 0, total = 0, worst = 0;
  for (let k = 0; k < 59; k += 2) {
    for (let j = 0; j < 191; j += 2) {
      for (let i = 0; i < 241; i += 2) {
        const source = image.index(i / 2, j / 2, k / 2);
        const hu = Math.min(250, Math.max(-175, image.data[source]));
        worst = Math.max(worst, Math.abs(result.image.data[result.image.index(i, j, k)] - (hu + 175) / 425));
        total++;
        if (result.label!.data[result.label!.index(i, j, k)] === label.data[source]) agree++;
      }
    }
  }
  assert.ok(worst < 1e-5, `intensity error ${worst}`);
  assert.equal(agree, total);

  const lps = applyAxisTransform(image, { perm: [0, 1, 2], flips: [true, true, false] });
  const lpsLabel = applyAxisTransform(label, { perm: [0, 1, 2], flips: [true, true, false] });
  assert.equal(lps.orientation, 'LPS');
  const fromLps = preprocessCase({ image: lps, label: lpsLabel });
  assert.deepEqual(fromLps.image.shape, result.image.shape);
  assertAffineClose(fromLps.image.affine, result.image.affine, 1e-3);
  assert.ok(maxAbsDifference(fromLps.image.data, result.image.data) < 1e-5);
  let same = 0;
  for (let i = 0; i < result.label!.data.length; i++) if (fromLps.label!.data[i] === result.label!.data[i]) same++;
  assert.ok(same / result.label!.data.length > 0.99, `label agreement ${same / result.label!.data.length}`);
});

test('the preprocess summary lists label values ascending: flags for 8- and 16-bit labels, a set otherwise', () => {
  assert.deepEqual(labelValues(Uint8Array.from([3, 0, 255, 3, 1])), [0, 1, 3, 255]);
  assert.deepEqual(labelValues(Uint16Array.from([300, 0, 65535, 2])), [0, 2, 300, 65535]);
  assert.deepEqual(labelValues(Float32Array.from([2.5, -1, 2.5, 0])), [-1, 0, 2.5]);
});
