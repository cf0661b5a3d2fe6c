import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Affine } from '../lib/io/affine';
import { Shape3, Volume } from '../lib/io/volume';

/** Repository root (tests run from dist/test). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(REPO_ROOT, 'dist', 'lib', 'cli', 'main.js');

/** The shared example data, present on the team's machines and CI, absent on a user's clone. */
export const EXAMPLE_DIR = path.resolve(REPO_ROOT, '..', 'shared', 'data', 'totalseg-example');
export const EXAMPLE_SKIP = fs.existsSync(path.join(EXAMPLE_DIR, 'example_ct_sm.nii.gz'))
  ? false
  : `skipped: ${EXAMPLE_DIR} is absent (the real TotalSegmentator example ships only with the team's shared folder)`;

export function tempDir(prefix = 'fseft-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A float32 volume whose voxel (i, j, k) holds f(i, j, k). */
export function volumeFrom(shape: Shape3, affine: Affine, f: (i: number, j: number, k: number) => number): Volume<Float32Array> {
  const data = new Float32Array(shape[0] * shape[1] * shape[2]);
  let o = 0;
  for (let k = 0; k < shape[2]; k++) for (let j = 0; j < shape[1]; j++) for (let i = 0; i < shape[0]; i++) data[o++] = f(i, j, k);
  return new Volume(data, shape, affine);
}

export function diagonalAffine(spacing: number[], origin: number[] = [0, 0, 0]): Affine {
  return [
    [spacing[0], 0, 0, origin[0]],
    [0, spacing[1], 0, origin[1]],
    [0, 0, spacing[2], origin[2]],
    [0, 0, 0, 1],
  ];
}

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

export function assertAffineClose(actual: Affine, expected: Affine, tolerance = 1e-4): void {
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 4; c++) {
      if (Math.abs(actual[r][c] - expected[r][c]) > tolerance) {
        throw new Error(`affine differs at [${r}][${c}]: ${JSON.stringify(actual)} vs ${JSON.stringify(expected)}`);
      }
    }
  }
}

/** The MONAI SwinUNETR parity fixture (shared folder only). */
export const FIXTURE_DIR = path.resolve(REPO_ROOT, '..', 'shared', 'fixtures', 'swinunetr-monai');
export const FIXTURE_SKIP = fs.existsSync(path.join(FIXTURE_DIR, 'swinunetr_f12_r64.pt'))
  ? false
  : `skipped: ${FIXTURE_DIR} is absent (the MONAI parity fixture ships only with the team's shared folder)`;
