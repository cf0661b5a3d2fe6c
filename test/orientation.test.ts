import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Affine, applyAffine, axisOrientation, invertAffine, multiplyAffines, orientationCodes, parseOrientationCodes } from '../lib/io/affine';
import { Volume } from '../lib/io/volume';
import { applyAxisTransform, composeAxisTransforms, flipAxes, orient, rotate90 } from '../lib/transforms/axes';
import { assertAffineClose, diagonalAffine, volumeFrom } from './helpers';

test('orientation codes follow nibabel: RAS, LAS, LPS, permuted axes, oblique', () => {
  assert.equal(orientationCodes(diagonalAffine([1, 1, 1])), 'RAS');
  assert.equal(orientationCodes(diagonalAffine([-0.8, 0.8, 2])), 'LAS');
  assert.equal(orientationCodes(diagonalAffine([-0.8, -0.8, 2])), 'LPS');
  assert.equal(orientationCodes([[0, 0, 2, 0], [-1, 0, 0, 0], [0, -3, 0, 0], [0, 0, 0, 1]]), 'PIR');
  const c = Math.cos(0.3), s = Math.sin(0.3);
  assert.equal(orientationCodes([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), 'RAS');
  assert.deepEqual(parseOrientationCodes('lps').map((a) => a.direction), [-1, -1, 1]);
  assert.throws(() => parseOrientationCodes('RRS'), /invalid orientation code/);
  assert.deepEqual(axisOrientation(diagonalAffine([-1, 1, 1]))[0], { worldAxis: 0, direction: -1 });
});

test('affine inverse and product', () => {
  const a: Affine = [[0, 0, 2, 5], [-1, 0, 0, 6], [0, -3, 0, 7], [0, 0, 0, 1]];
  assertAffineClose(multiplyAffines(a, invertAffine(a)), diagonalAffine([1, 1, 1]), 1e-12);
});

/** A test volume with distinct values everywhere and an LPS, 0.8 x 0.8 x 2.5 mm geometry. */
function lpsVolume(): Volume<Float32Array> {
  return volumeFrom([6, 5, 4], [[-0.8, 0, 0, 30], [0, -0.8, 0, 20], [0, 0, 2.5, -10], [0, 0, 0, 1]], (i, j, k) => i + 10 * j + 100 * k);
}

test('orient to RAS: every voxel keeps its world position', () => {
  const volume = lpsVolume();
  const ras = orient(volume, 'RAS');
  assert.equal(ras.orientation, 'RAS');
  assert.deepEqual(ras.shape, [6, 5, 4]);
  for (let k = 0; k < 4; k++) {
    for (let j = 0; j < 5; j++) {
      for (let i = 0; i < 6; i++) {
        const world = applyAffine(volume.affine, [i, j, k]);
        const back = applyAffine(invertAffine(ras.affine), world).map(Math.round);
        assert.equal(ras.data[ras.index(back[0], back[1], back[2])], volume.data[volume.index(i, j, k)]);
      }
    }
  }
});

test('orient: a permuted, flipped copy orients to exactly the same RAS volume', () => {
  const volume = lpsVolume();
  const permuted = applyAxisTransform(volume, { perm: [2, 0, 1], flips: [true, false, true] });
  assert.notEqual(permuted.orientation, volume.orientation);
  const a = orient(volume);
  const b = orient(permuted);
  assert.deepEqual(b.shape, a.shape);
  assertAffineClose(b.affine, a.affine, 1e-9);
  assert.deepEqual(Array.from(b.data), Array.from(a.data));
});

test('orient: RAS input comes back unchanged (no copy)', () => {
  const volume = volumeFrom([2, 2, 2], diagonalAffine([1, 1, 1]), (i) => i);
  assert.equal(orient(volume), volume);
});

test('rotate90 follows numpy.rot90 and keeps world positions', () => {
  const volume = volumeFrom([3, 2, 1], diagonalAffine([1, 1, 1]), (i, j) => i + 10 * j);
  // numpy: rot90([[0, 10], [1, 11], [2, 12]], 1, axes=(0, 1)) == [[10, 11, 12], [0, 1, 2]]
  const rotated = rotate90(volume, 1, [0, 1]);
  assert.deepEqual(rotated.shape, [2, 3, 1]);
  const asRows = [0, 1].map((i) => [0, 1, 2].map((j) => rotated.data[rotated.index(i, j, 0)]));
  assert.deepEqual(asRows, [[10, 11, 12], [0, 1, 2]]);
  assert.deepEqual(Array.from(rotate90(volume, 4).data), Array.from(volume.data));
  assert.deepEqual(Array.from(rotate90(rotate90(volume, 1), 3).data), Array.from(volume.data));
  const world = applyAffine(volume.affine, [2, 1, 0]);
  const index = applyAffine(invertAffine(rotated.affine), world).map(Math.round);
  assert.equal(rotated.data[rotated.index(index[0], index[1], index[2])], volume.data[volume.index(2, 1, 0)]);
});

test('flip reverses an axis; composing transforms equals applying them in turn', () => {
  const volume = lpsVolume();
  const flipped = flipAxes(volume, [1]);
  assert.equal(flipped.data[flipped.index(2, 0, 3)], volume.data[volume.index(2, 4, 3)]);
  const first = { perm: [1, 2, 0] as [number, number, number], flips: [true, false, false] as [boolean, boolean, boolean] };
  const second = { perm: [2, 0, 1] as [number, number, number], flips: [false, true, true] as [boolean, boolean, boolean] };
  const stepwise = applyAxisTransform(applyAxisTransform(volume, first), second);
  const composed = applyAxisTransform(volume, composeAxisTransforms(first, second));
  assert.deepEqual(Array.from(composed.data), Array.from(stepwise.data));
  assertAffineClose(composed.affine, stepwise.affine, 1e-9);
});
