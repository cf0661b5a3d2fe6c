import { Affine, Vec3, applyAffine, invertAffine, withSpacing } from '../io/affine';
import { Shape3, Volume, VoxelArray } from '../io/volume';
import { orientationTransform, axisTransformGeometry } from './axes';

export type InterpolationMode = 'linear' | 'nearest';

/**
 * The output grid of MONAI `Spacing(pixdim)` (diagonal=False, scale_extent=False): the affine's
 * directions are kept and its columns rescaled to `spacing`; the shape covers the input's
 * corner voxel centres (round(extent / spacing) + 1); the origin is the input corner that is
 * first along every output axis.
 */
export function spacingGrid(shape: Shape3, affine: Affine, spacing: Vec3): { shape: Shape3; affine: Affine } {
  const target = withSpacing(affine, spacing);
  const toTarget = invertAffine(target);
  const corners: Vec3[] = [];
  for (const k of [0, shape[2] - 1]) for (const j of [0, shape[1] - 1]) for (const i of [0, shape[0] - 1]) corners.push(applyAffine(affine, [i, j, k]));
  const projected = corners.map((world) => applyAffine(toTarget, world));
  const low = [0, 1, 2].map((axis) => Math.min(...projected.map((p) => p[axis])));
  const high = [0, 1, 2].map((axis) => Math.max(...projected.map((p) => p[axis])));
  const outShape = [0, 1, 2].map((axis) => Math.max(1, Math.round(high[axis] - low[axis] + 1))) as Shape3;
  const firstCorner = projected.findIndex((p) => p.every((v, axis) => Math.abs(v - low[axis]) <= 1e-3 * Math.max(1, Math.abs(low[axis]))));
  const origin = corners[firstCorner >= 0 ? firstCorner : 0];
  for (let r = 0; r < 3; r++) target[r][3] = origin[r];
  return { shape: outShape, affine: target };
}

/**
 * MONAI `Orientation(codes)` followed by `Spacing(spacing)`, computed in one resampling pass from
 * the original voxels (the orientation step only decides the output grid; sampling is done in
 * world coordinates, so the result equals the two steps applied one after the other).
 */
export function orientedSpacingGrid(shape: Shape3, affine: Affine, spacing: Vec3, codes = 'RAS'): { shape: Shape3; affine: Affine } {
  const oriented = axisTransformGeometry(shape, affine, orientationTransform(affine, codes));
  return spacingGrid(oriented.shape, oriented.affine, spacing);
}

/** MONAI `Spacing`: resamples to the given voxel size (trilinear or nearest, border padding). */
export function resampleToSpacing(volume: Volume, spacing: Vec3, mode: InterpolationMode): Volume {
  const grid = spacingGrid(volume.shape, volume.affine, spacing);
  return resampleOnGrid(volume, grid.shape, grid.affine, mode);
}

/**
 * Samples `volume` at the voxel centres of another grid, matching world positions: output voxel
 * o reads input index inverse(volume.affine) * outAffine * o. Coordinates outside the input are
 * clamped to its border (MONAI/PyTorch padding_mode "border"). Linear mode returns float32;
 * nearest mode keeps the input's type and rounds half to even, as PyTorch's grid_sample;
 * `mirrorTies[axis]` breaks those ties as if input `axis` were stored reversed, which is what
 * sampling after an orientation flip (MONAI's Orientation then Spacing) does.
 */
export function resampleOnGrid(
  volume: Volume,
  outShape: Shape3,
  outAffine: Affine,
  mode: InterpolationMode,
  { mirrorTies = [false, false, false] }: { mirrorTies?: readonly boolean[] } = {},
): Volume {
  const indexMap = multiply3x4(invertAffine(volume.affine), outAffine);
  const count = outShape[0] * outShape[1] * outShape[2];
  const out: VoxelArray = mode === 'linear' ? new Float32Array(count) : new (volume.data.constructor as new (n: number) => VoxelArray)(count);
  const round = [0, 1, 2].map((axis) => (mirrorTies[axis] ? mirroredRound(volume.shape[axis]) : roundHalfEven));
  const axisOf = separableAxes(indexMap);
  if (axisOf) sampleSeparable(volume, out, outShape, indexMap, axisOf, mode, round);
  else sampleGeneral(volume, out, outShape, indexMap, mode, round);
  return new Volume(out, outShape, outAffine);
}

function multiply3x4(a: Affine, b: Affine): Affine {
  const out: Affine = [[], [], [], [0, 0, 0, 1]];
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) out[r][c] = a[r][0] * b[0][c] + a[r][1] * b[1][c] + a[r][2] * b[2][c] + (c === 3 ? a[r][3] : 0);
  return out;
}

/** When each input axis depends on exactly one output axis, returns inputAxisOf[outputAxis]. */
function separableAxes(m: Affine): number[] | undefined {
  const tolerance = 1e-9;
  const inputAxisOf: number[] = [];
  for (let t = 0; t < 3; t++) {
    const rows = [0, 1, 2].filter((r) => Math.abs(m[r][t]) > tolerance);
    if (rows.length !== 1) return undefined;
    inputAxisOf[t] = rows[0];
  }
  return new Set(inputAxisOf).size === 3 ? inputAxisOf : undefined;
}

type Rounding = (coordinate: number) => number;

/** Round half to even, with exact-looking ties (within 1e-6) treated as ties. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (Math.abs(fraction - 0.5) < 1e-6) return floor % 2 === 0 ? floor : floor + 1;
  return fraction < 0.5 ? floor : floor + 1;
}

/** Round half to even along an axis of `size` voxels counted from its far end. */
function mirroredRound(size: number): Rounding {
  return (c) => size - 1 - roundHalfEven(size - 1 - c);
}

interface AxisTaps {
  low: Int32Array;
  high: Int32Array;
  weight: Float32Array;
}

function axisTaps(length: number, size: number, scale: number, offset: number, stride: number, mode: InterpolationMode, round: Rounding): AxisTaps {
  const low = new Int32Array(length);
  const high = new Int32Array(length);
  const weight = new Float32Array(length);
  for (let o = 0; o < length; o++) {
    const c = Math.min(size - 1, Math.max(0, scale * o + offset));
    if (mode === 'nearest') {
      low[o] = high[o] = Math.min(size - 1, round(c)) * stride;
      continue;
    }
    const i0 = size > 1 ? Math.min(size - 2, Math.floor(c)) : 0;
    low[o] = i0 * stride;
    high[o] = Math.min(size - 1, i0 + 1) * stride;
    weight[o] = size > 1 ? c - i0 : 0;
  }
  return { low, high, weight };
}

function sampleSeparable(volume: Volume, out: VoxelArray, outShape: Shape3, m: Affine, inputAxisOf: number[], mode: InterpolationMode, round: Rounding[]): void {
  const strides = [1, volume.shape[0], volume.shape[0] * volume.shape[1]];
  const [tx, ty, tz] = [0, 1, 2].map((t) => {
    const r = inputAxisOf[t];
    return axisTaps(outShape[t], volume.shape[r], m[r][t], m[r][3], strides[r], mode, round[r]);
  });
  const src = volume.data;
  const [nx, ny, nz] = outShape;
  let o = 0;
  if (mode === 'nearest') {
    for (let z = 0; z < nz; z++) {
      for (let y = 0; y < ny; y++) {
        const base = tz.low[z] + ty.low[y];
        for (let x = 0; x < nx; x++) out[o++] = src[base + tx.low[x]];
      }
    }
    return;
  }
  const xl = tx.low, xh = tx.high, wx = tx.weight;
  for (let z = 0; z < nz; z++) {
    const wz = tz.weight[z];
    for (let y = 0; y < ny; y++) {
      const wy = ty.weight[y];
      const b00 = tz.low[z] + ty.low[y];
      const b01 = tz.low[z] + ty.high[y];
      const b10 = tz.high[z] + ty.low[y];
      const b11 = tz.high[z] + ty.high[y];
      const w00 = (1 - wz) * (1 - wy);
      const w01 = (1 - wz) * wy;
      const w10 = wz * (1 - wy);
      const w11 = wz * wy;
      for (let x = 0; x < nx; x++) {
        const l = xl[x];
        const h = xh[x];
        const w = wx[x];
        const lowSum = w00 * src[b00 + l] + w01 * src[b01 + l] + w10 * src[b10 + l] + w11 * src[b11 + l];
        const highSum = w00 * src[b00 + h] + w01 * src[b01 + h] + w10 * src[b10 + h] + w11 * src[b11 + h];
        out[o++] = lowSum + w * (highSum - lowSum);
      }
    }
  }
}

function sampleGeneral(volume: Volume, out: VoxelArray, outShape: Shape3, m: Affine, mode: InterpolationMode, round: Rounding[]): void {
  const [sx, sy, sz] = volume.shape;
  const src = volume.data;
  const sxy = sx * sy;
  const clamp = (v: number, n: number) => (v < 0 ? 0 : v > n - 1 ? n - 1 : v);
  let o = 0;
  for (let z = 0; z < outShape[2]; z++) {
    for (let y = 0; y < outShape[1]; y++) {
      for (let x = 0; x < outShape[0]; x++) {
        const ci = clamp(m[0][0] * x + m[0][1] * y + m[0][2] * z + m[0][3], sx);
        const cj = clamp(m[1][0] * x + m[1][1] * y + m[1][2] * z + m[1][3], sy);
        const ck = clamp(m[2][0] * x + m[2][1] * y + m[2][2] * z + m[2][3], sz);
        if (mode === 'nearest') {
          out[o++] = src[round[0](ci) + sx * round[1](cj) + sxy * round[2](ck)];
          continue;
        }
        const i0 = sx > 1 ? Math.min(sx - 2, Math.floor(ci)) : 0;
        const j0 = sy > 1 ? Math.min(sy - 2, Math.floor(cj)) : 0;
        const k0 = sz > 1 ? Math.min(sz - 2, Math.floor(ck)) : 0;
        const di = sx > 1 ? 1 : 0;
        const dj = sy > 1 ? sx : 0;
        const dk = sz > 1 ? sxy : 0;
        const fi = ci - i0, fj = cj - j0, fk = ck - k0;
        const b = i0 + sx * j0 + sxy * k0;
        const c00 = src[b] + fi * (src[b + di] - src[b]);
        const c01 = src[b + dj] + fi * (src[b + dj + di] - src[b + dj]);
        const c10 = src[b + dk] + fi * (src[b + dk + di] - src[b + dk]);
        const c11 = src[b + dk + dj] + fi * (src[b + dk + dj + di] - src[b + dk + dj]);
        const c0 = c00 + fj * (c01 - c00);
        const c1 = c10 + fj * (c11 - c10);
        out[o++] = c0 + fk * (c1 - c0);
      }
    }
  }
}
