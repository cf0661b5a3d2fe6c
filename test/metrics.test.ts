import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Shape3 } from '../lib/io/volume';
import { connectedComponents, largestConnectedComponent } from '../lib/metrics/components';
import { hausdorff95, squaredDistanceTransform, surfaceDice, surfaceVoxels } from '../lib/metrics/distance';
import { dice, maskOf } from '../lib/metrics/overlap';
import { stratifiedBootstrapMean } from '../lib/metrics/bootstrap';
import { Rng } from '../lib/util/random';

function box(shape: Shape3, from: number[], to: number[]): Uint8Array {
  const out = new Uint8Array(shape[0] * shape[1] * shape[2]);
  for (let z = from[2]; z < to[2]; z++) for (let y = from[1]; y < to[1]; y++) for (let x = from[0]; x < to[0]; x++) out[x + shape[0] * (y + shape[1] * z)] = 1;
  return out;
}

test('Dice on analytic boxes; empty masks', () => {
  const shape: Shape3 = [20, 20, 20];
  const a = box(shape, [0, 0, 0], [10, 10, 10]); // 1000 voxels
  const b = box(shape, [5, 0, 0], [15, 10, 10]); // 1000 voxels, 500 shared
  assert.equal(dice(a, a), 1);
  assert.equal(dice(a, b), 0.5);
  assert.equal(dice(new Uint8Array(8), new Uint8Array(8)), 1);
  assert.equal(dice(new Uint8Array(8), Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0])), 0);
  assert.deepEqual(Array.from(maskOf([0, 5, 3, 5], 5)), [0, 1, 0, 1]);
});

test('connected components: 26- versus 6-connectivity; the largest component is kept', () => {
  const shape: Shape3 = [6, 6, 6];
  const mask = box(shape, [0, 0, 0], [2, 2, 2]); // 8 voxels
  mask[2 + 6 * (2 + 6 * 2)] = 1; // touches the box only at a corner
  mask[5 + 6 * (5 + 6 * 5)] = 1; // isolated
  assert.equal(connectedComponents(mask, shape, 26).sizes.length - 1, 2);
  assert.equal(connectedComponents(mask, shape, 6).sizes.length - 1, 3);
  const largest = largestConnectedComponent(mask, shape);
  assert.equal(largest.reduce((a, b) => a + b, 0), 9);
  assert.equal(largest[5 + 6 * (5 + 6 * 5)], 0);
  assert.equal(largestConnectedComponent(new Uint8Array(216), shape).some((v) => v), false);
});

test('distance transform equals brute force with anisotropic spacing', () => {
  const shape: Shape3 = [9, 7, 5];
  const spacing: [number, number, number] = [0.8, 1.5, 3];
  const rng = new Rng(2);
  const sites = Uint8Array.from({ length: 315 }, () => (rng.next() < 0.04 ? 1 : 0));
  sites[0] = 1;
  const squared = squaredDistanceTransform(sites, shape, spacing);
  for (let i = 0; i < 315; i++) {
    const [x, y, z] = [i % 9, Math.floor(i / 9) % 7, Math.floor(i / 63)];
    let best = Infinity;
    for (let j = 0; j < 315; j++) {
      if (!sites[j]) continue;
      const [a, b, c] = [j % 9, Math.floor(j / 9) % 7, Math.floor(j / 63)];
      best = Math.min(best, ((x - a) * spacing[0]) ** 2 + ((y - b) * spacing[1]) ** 2 + ((z - c) * spacing[2]) ** 2);
    }
    assert.ok(Math.abs(squared[i] - best) < 1e-9, `voxel ${i}: ${squared[i]} vs ${best}`);
  }
});

test('HD95 and surface Dice of shifted boxes: analytic values', () => {
  const shape: Shape3 = [30, 20, 20];
  const spacing: [number, number, number] = [2, 1, 1];
  const a = box(shape, [5, 5, 5], [15, 15, 15]);
  const b = box(shape, [8, 5, 5], [18, 15, 15]); // shifted 3 voxels = 6 mm along x
  assert.equal(hausdorff95(a, a, shape, spacing), 0);
  assert.equal(surfaceDice(a, a, shape, spacing), 1);
  // The faces perpendicular to x are 6 mm apart; most other surface points are closer.
  const hd = hausdorff95(a, b, shape, spacing);
  // Brute force over surface voxel pairs, numpy-style linear percentile.
  const points = (m: Uint8Array) => [...surfaceVoxels(m, shape).entries()].filter(([, v]) => v).map(([i]) => [i % 30, Math.floor(i / 30) % 20, Math.floor(i / 600)]);
  const directed = (from: number[][], to: number[][]) =>
    from.map((p) => Math.min(...to.map((q) => Math.hypot((p[0] - q[0]) * 2, p[1] - q[1], p[2] - q[2])))).sort((x, y) => x - y);
  const p95 = (v: number[]) => {
    const r = 0.95 * (v.length - 1);
    return v[Math.floor(r)] + (r - Math.floor(r)) * (v[Math.min(v.length - 1, Math.floor(r) + 1)] - v[Math.floor(r)]);
  };
  const expected = Math.max(p95(directed(points(a), points(b))), p95(directed(points(b), points(a))));
  assert.ok(Math.abs(hd - expected) < 1e-9, `HD95 ${hd} vs brute force ${expected}`);
  assert.ok(hd > 0 && hd <= 6);
  assert.ok(surfaceDice(a, b, shape, spacing, 2) < surfaceDice(a, b, shape, spacing, 6));
  assert.equal(surfaceDice(a, b, shape, spacing, 6), 1);
  assert.ok(Number.isNaN(hausdorff95(a, new Uint8Array(a.length), shape, spacing)));
  // A one-voxel box is all surface; an interior voxel of a 3x3x3 box is not.
  const cube = box(shape, [1, 1, 1], [4, 4, 4]);
  const surface = surfaceVoxels(cube, shape);
  assert.equal(surface.reduce((s, v) => s + v, 0), 26);
});

test('bootstrap intervals: constant data gives a point, the interval holds the mean and lies within the data, strata are redrawn within themselves, seeded', () => {
  const point = stratifiedBootstrapMean([[0.75, 0.75, 0.75]]);
  assert.deepEqual([point.mean, point.low, point.high, point.n], [0.75, 0.75, 0.75, 3]);
  const values = [0.2, 0.4, 0.6, 0.8, 1.0];
  const interval = stratifiedBootstrapMean([values], { seed: 1 });
  assert.ok(Math.abs(interval.mean - 0.6) < 1e-12);
  assert.ok(interval.low >= 0.2 && interval.low < 0.6 && interval.high > 0.6 && interval.high <= 1.0, JSON.stringify(interval));
  // The mean's standard error is sd / sqrt(n) = 0.2828 / sqrt(5) = 0.126 (population sd): a 95 % interval about +-0.25 wide.
  assert.ok(interval.high - interval.low > 0.3 && interval.high - interval.low < 0.6, JSON.stringify(interval));
  assert.deepEqual(stratifiedBootstrapMean([values], { seed: 1 }), interval, 'same seed, same interval');
  // Strata: organ A always 0.25, organ B always 0.75 -> the mean over organs is exactly 0.5 in every
  // resample (a pooled bootstrap would mix the organs' units and spread it).
  const stratified = stratifiedBootstrapMean([[0.25, 0.25, 0.25, 0.25], [0.75, 0.75]]);
  assert.deepEqual([stratified.mean, stratified.low, stratified.high, stratified.n], [0.5, 0.5, 0.5, 6]);
  // More units, narrower interval.
  const many = stratifiedBootstrapMean([Array.from({ length: 80 }, (_, i) => values[i % 5])], { seed: 1 });
  assert.ok(many.high - many.low < (interval.high - interval.low) / 2);
  assert.ok(Number.isNaN(stratifiedBootstrapMean([[]]).mean));
});
