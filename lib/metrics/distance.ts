import { Vec3 } from '../io/affine';
import { Shape3 } from '../io/volume';
import { MaskArray } from './overlap';

/**
 * Surface voxels of a binary mask: foreground voxels with a background (or out-of-volume)
 * 6-neighbour, i.e. mask XOR erosion(mask) as MONAI's get_mask_edges.
 */
export function surfaceVoxels(mask: MaskArray, shape: Shape3): Uint8Array {
  const [nx, ny, nz] = shape;
  const out = new Uint8Array(nx * ny * nz);
  const inside = (x: number, y: number, z: number) => x >= 0 && y >= 0 && z >= 0 && x < nx && y < ny && z < nz && mask[x + nx * (y + ny * z)] !== 0;
  for (let z = 0, o = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      for (let x = 0; x < nx; x++, o++) {
        if (mask[o] === 0) continue;
        if (!inside(x - 1, y, z) || !inside(x + 1, y, z) || !inside(x, y - 1, z) || !inside(x, y + 1, z) || !inside(x, y, z - 1) || !inside(x, y, z + 1)) out[o] = 1;
      }
    }
  }
  return out;
}

/**
 * Exact squared Euclidean distance (mm^2) from every voxel to the nearest voxel where `sites` is
 * non-zero, with anisotropic spacing (Felzenszwalb & Huttenlocher, one pass per axis).
 */
export function squaredDistanceTransform(sites: MaskArray, shape: Shape3, spacing: Vec3): Float64Array {
  const total = shape[0] * shape[1] * shape[2];
  const distance = new Float64Array(total);
  for (let i = 0; i < total; i++) distance[i] = sites[i] !== 0 ? 0 : Infinity;
  const strides = [1, shape[0], shape[0] * shape[1]];
  const longest = Math.max(...shape);
  const f = new Float64Array(longest);
  const d = new Float64Array(longest);
  const v = new Int32Array(longest);
  const z = new Float64Array(longest + 1);
  for (let axis = 0; axis < 3; axis++) {
    const n = shape[axis];
    const stride = strides[axis];
    const s2 = spacing[axis] * spacing[axis];
    const others = [0, 1, 2].filter((a) => a !== axis);
    for (let b = 0; b < shape[others[1]]; b++) {
      for (let a = 0; a < shape[others[0]]; a++) {
        const base = a * strides[others[0]] + b * strides[others[1]];
        for (let i = 0; i < n; i++) f[i] = distance[base + i * stride];
        lowerEnvelope(f, d, v, z, n, s2);
        for (let i = 0; i < n; i++) distance[base + i * stride] = d[i];
      }
    }
  }
  return distance;
}

/** d[p] = min_q s2 * (p - q)^2 + f[q] along one line. */
function lowerEnvelope(f: Float64Array, d: Float64Array, v: Int32Array, z: Float64Array, n: number, s2: number): void {
  let k = -1;
  for (let q = 0; q < n; q++) {
    if (f[q] === Infinity) continue;
    while (k >= 0) {
      const p = v[k];
      const intersection = (f[q] + s2 * q * q - (f[p] + s2 * p * p)) / (2 * s2 * (q - p));
      if (intersection <= z[k]) k--;
      else {
        k++;
        v[k] = q;
        z[k] = intersection;
        z[k + 1] = Infinity;
        break;
      }
    }
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -Infinity;
      z[1] = Infinity;
    }
  }
  if (k < 0) {
    for (let i = 0; i < n; i++) d[i] = Infinity;
    return;
  }
  let j = 0;
  for (let q = 0; q < n; q++) {
    while (z[j + 1] < q) j++;
    const diff = q - v[j];
    d[q] = s2 * diff * diff + f[v[j]];
  }
}

/** Distances (mm) from each surface voxel of `from` to the nearest surface voxel of `to`. */
function surfaceDistances(from: Uint8Array, toSurface: Uint8Array, shape: Shape3, spacing: Vec3): number[] {
  const squared = squaredDistanceTransform(toSurface, shape, spacing);
  const out: number[] = [];
  for (let i = 0; i < from.length; i++) if (from[i]) out.push(Math.sqrt(squared[i]));
  return out;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.min(sorted.length - 1, low + 1);
  return sorted[low] + (rank - low) * (sorted[high] - sorted[low]);
}

/**
 * 95th-percentile Hausdorff distance in mm between the surfaces of two masks (symmetric: the
 * larger of the two directed percentiles, as MONAI's compute_hausdorff_distance). NaN when a
 * mask is empty.
 */
export function hausdorff95(prediction: MaskArray, label: MaskArray, shape: Shape3, spacing: Vec3): number {
  const sp = surfaceVoxels(prediction, shape);
  const sl = surfaceVoxels(label, shape);
  if (!sp.some((v) => v) || !sl.some((v) => v)) return NaN;
  return Math.max(percentile(surfaceDistances(sp, sl, shape, spacing), 95), percentile(surfaceDistances(sl, sp, shape, spacing), 95));
}

/**
 * Surface Dice at a tolerance (mm): the fraction of both surfaces lying within `tolerance` of the
 * other surface. 1 when both masks are empty, 0 when only one is.
 */
export function surfaceDice(prediction: MaskArray, label: MaskArray, shape: Shape3, spacing: Vec3, tolerance = 2): number {
  const sp = surfaceVoxels(prediction, shape);
  const sl = surfaceVoxels(label, shape);
  const np = sp.reduce((a, b) => a + b, 0);
  const nl = sl.reduce((a, b) => a + b, 0);
  if (np + nl === 0) return 1;
  if (np === 0 || nl === 0) return 0;
  const close = (values: number[]) => values.filter((d) => d <= tolerance + 1e-9).length;
  return (close(surfaceDistances(sp, sl, shape, spacing)) + close(surfaceDistances(sl, sp, shape, spacing))) / (np + nl);
}
