import { Affine, multiplyAffines, axisOrientation, parseOrientationCodes } from '../io/affine';
import { Shape3, Volume, VoxelArray } from '../io/volume';

/**
 * A rearrangement of array axes: output axis t reads input axis `perm[t]`, reversed when
 * `flips[t]`. Orientation changes, 90-degree rotations and flips are all of this kind, so they
 * share one exact (copying, never interpolating) implementation.
 */
export interface AxisTransform {
  perm: [number, number, number];
  flips: [boolean, boolean, boolean];
}

export function isIdentityAxisTransform({ perm, flips }: AxisTransform): boolean {
  return perm[0] === 0 && perm[1] === 1 && perm[2] === 2 && !flips[0] && !flips[1] && !flips[2];
}

/** Shape and affine after an axis transform; world positions of voxels are preserved. */
export function axisTransformGeometry(shape: Shape3, affine: Affine, { perm, flips }: AxisTransform): { shape: Shape3; affine: Affine } {
  const newShape: Shape3 = [shape[perm[0]], shape[perm[1]], shape[perm[2]]];
  // indexMap maps an output index to the input index it reads.
  const indexMap: Affine = [
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 1],
  ];
  for (let t = 0; t < 3; t++) {
    indexMap[perm[t]][t] = flips[t] ? -1 : 1;
    indexMap[perm[t]][3] = flips[t] ? newShape[t] - 1 : 0;
  }
  return { shape: newShape, affine: multiplyAffines(affine, indexMap) };
}

/** Applies an axis transform to a volume (a copy; the same volume back when it is the identity). */
export function applyAxisTransform<T extends VoxelArray>(volume: Volume<T>, transform: AxisTransform): Volume<T> {
  if (isIdentityAxisTransform(transform)) return volume;
  const { shape, affine } = axisTransformGeometry(volume.shape, volume.affine, transform);
  const inStrides = [1, volume.shape[0], volume.shape[0] * volume.shape[1]];
  let base = 0;
  const steps = [0, 0, 0];
  for (let t = 0; t < 3; t++) {
    const stride = inStrides[transform.perm[t]];
    steps[t] = transform.flips[t] ? -stride : stride;
    if (transform.flips[t]) base += (shape[t] - 1) * stride;
  }
  const source = volume.data;
  const out = new (source.constructor as new (n: number) => T)(source.length);
  const [nx, ny, nz] = shape;
  const [sx, sy, sz] = steps;
  let o = 0;
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      let i = base + z * sz + y * sy;
      for (let x = 0; x < nx; x++, i += sx) out[o++] = source[i];
    }
  }
  return new Volume(out, shape, affine);
}

/** The axis transform that brings an affine to the given orientation codes (default RAS). */
export function orientationTransform(affine: Affine, codes = 'RAS'): AxisTransform {
  const current = axisOrientation(affine);
  const target = parseOrientationCodes(codes);
  const perm = [0, 0, 0] as [number, number, number];
  const flips = [false, false, false] as [boolean, boolean, boolean];
  for (let t = 0; t < 3; t++) {
    const source = current.findIndex((c) => c.worldAxis === target[t].worldAxis);
    perm[t] = source;
    flips[t] = current[source].direction !== target[t].direction;
  }
  return { perm, flips };
}

/** MONAI `Orientation(axcodes)`: reorders and flips array axes so they run along `codes` (default RAS). */
export function orient<T extends VoxelArray>(volume: Volume<T>, codes = 'RAS'): Volume<T> {
  return applyAxisTransform(volume, orientationTransform(volume.affine, codes));
}

/**
 * Rotation by k * 90 degrees in the plane of `axes` (numpy `rot90` semantics: from the first axis
 * towards the second), as MONAI `Rotate90`. The affine follows, so world positions are kept.
 */
export function rotate90<T extends VoxelArray>(volume: Volume<T>, k: number, axes: [number, number] = [0, 1]): Volume<T> {
  const turns = ((k % 4) + 4) % 4;
  const [a, b] = axes;
  let transform: AxisTransform = { perm: [0, 1, 2], flips: [false, false, false] };
  for (let i = 0; i < turns; i++) transform = composeAxisTransforms(transform, quarterTurn(a, b));
  return applyAxisTransform(volume, transform);
}

/** Reverses the listed array axes, as MONAI `Flip(spatial_axis)`. */
export function flipAxes<T extends VoxelArray>(volume: Volume<T>, axes: number[]): Volume<T> {
  const flips = [0, 1, 2].map((axis) => axes.includes(axis)) as [boolean, boolean, boolean];
  return applyAxisTransform(volume, { perm: [0, 1, 2], flips });
}

function quarterTurn(a: number, b: number): AxisTransform {
  // numpy rot90(m, 1, (a, b)) == swapaxes(flip(m, b), a, b): out[a] reads in[b] reversed, out[b] reads in[a].
  const perm = [0, 1, 2] as [number, number, number];
  const flips = [false, false, false] as [boolean, boolean, boolean];
  perm[a] = b;
  flips[a] = true;
  perm[b] = a;
  return { perm, flips };
}

/** `second` applied after `first`, as one transform. */
export function composeAxisTransforms(first: AxisTransform, second: AxisTransform): AxisTransform {
  const perm = [0, 1, 2].map((t) => first.perm[second.perm[t]]) as [number, number, number];
  const flips = [0, 1, 2].map((t) => second.flips[t] !== first.flips[second.perm[t]]) as [boolean, boolean, boolean];
  return { perm, flips };
}
