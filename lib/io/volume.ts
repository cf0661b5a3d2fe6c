import { Affine, Vec3, affineSpacing, cloneAffine, orientationCodes } from './affine';

export type VoxelArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array;

export type Shape3 = [number, number, number];

/**
 * A 3-D scalar volume.
 *
 * Axis convention (the one place it is defined): `shape = [nx, ny, nz]` are the sizes of array
 * axes 0, 1, 2 as stored in the NIfTI file, and voxel (i, j, k) lives at
 * `data[i + nx * (j + ny * k)]`, i.e. axis 0 varies fastest (NIfTI/Fortran order). Seen as a
 * row-major array the same memory is `[nz, ny, nx]`. `affine` maps (i, j, k, 1) to RAS+ world
 * millimetres; the voxel spacing is derived from it.
 */
export class Volume<T extends VoxelArray = VoxelArray> {
  constructor(
    readonly data: T,
    readonly shape: Shape3,
    readonly affine: Affine,
  ) {
    const expected = shape[0] * shape[1] * shape[2];
    if (data.length !== expected) {
      throw new Error(`volume data has ${data.length} voxels but shape ${shape.join('x')} needs ${expected}`);
    }
  }

  /** Voxel size in mm along array axes 0, 1, 2. */
  get spacing(): Vec3 {
    return affineSpacing(this.affine);
  }

  /** Orientation codes such as 'RAS' or 'LPS' (the world direction each array axis increases towards). */
  get orientation(): string {
    return orientationCodes(this.affine);
  }

  get voxelCount(): number {
    return this.data.length;
  }

  /** Flat index of voxel (i, j, k). */
  index(i: number, j: number, k: number): number {
    return i + this.shape[0] * (j + this.shape[1] * k);
  }

  /** A volume with new data on the same grid, or on the grid given. */
  withData<U extends VoxelArray>(data: U, shape: Shape3 = this.shape, affine: Affine = this.affine): Volume<U> {
    return new Volume(data, [shape[0], shape[1], shape[2]], cloneAffine(affine));
  }
}

/** Smallest and largest value of a volume (NaN ignored). */
export function valueRange(data: VoxelArray): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

export function sameGrid(a: Volume, b: Volume, tolerance = 1e-3): boolean {
  if (a.shape.some((n, axis) => n !== b.shape[axis])) return false;
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) if (Math.abs(a.affine[r][c] - b.affine[r][c]) > tolerance) return false;
  return true;
}
