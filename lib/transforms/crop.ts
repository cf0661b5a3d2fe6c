import { translateToVoxel } from '../io/affine';
import { Shape3, Volume, VoxelArray } from '../io/volume';

/** A box of voxels: `start` inclusive, `end` exclusive, per array axis. */
export interface Box {
  start: [number, number, number];
  end: [number, number, number];
}

/**
 * Bounding box of the voxels where `select(value)` holds (MONAI `generate_spatial_bounding_box`,
 * margin 0). Undefined when no voxel is selected.
 */
export function foregroundBox(volume: Volume, select: (value: number) => boolean = (v) => v > 0): Box | undefined {
  const [nx, ny, nz] = volume.shape;
  const data = volume.data;
  const start: [number, number, number] = [nx, ny, nz];
  const end: [number, number, number] = [0, 0, 0];
  let o = 0;
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      let first = -1;
      let last = -1;
      for (let x = 0; x < nx; x++, o++) {
        if (select(data[o])) {
          if (first < 0) first = x;
          last = x;
        }
      }
      if (first < 0) continue;
      if (first < start[0]) start[0] = first;
      if (last + 1 > end[0]) end[0] = last + 1;
      if (y < start[1]) start[1] = y;
      if (y + 1 > end[1]) end[1] = y + 1;
      if (z < start[2]) start[2] = z;
      if (z + 1 > end[2]) end[2] = z + 1;
    }
  }
  return end[0] > 0 ? { start, end } : undefined;
}

/** The voxels of `box` as a new volume whose affine keeps every voxel's world position. */
export function cropBox<T extends VoxelArray>(volume: Volume<T>, box: Box): Volume<T> {
  const [nx, ny] = volume.shape;
  const shape: Shape3 = [0, 1, 2].map((a) => box.end[a] - box.start[a]) as Shape3;
  if (shape.some((n, a) => n <= 0 || box.start[a] < 0 || box.end[a] > volume.shape[a])) {
    throw new Error(`crop box ${box.start}..${box.end} is empty or outside the volume ${volume.shape.join('x')}`);
  }
  const source = volume.data;
  const out = new (source.constructor as new (n: number) => T)(shape[0] * shape[1] * shape[2]);
  let o = 0;
  for (let z = box.start[2]; z < box.end[2]; z++) {
    for (let y = box.start[1]; y < box.end[1]; y++) {
      const rowStart = box.start[0] + nx * (y + ny * z);
      out.set(source.subarray(rowStart, rowStart + shape[0]), o);
      o += shape[0];
    }
  }
  return new Volume(out, shape, translateToVoxel(volume.affine, box.start));
}

/**
 * MONAI `SpatialPad(spatial_size, method="symmetric")`: pads each axis shorter than `minShape`
 * with `value`, half before and half after (the extra voxel after). Larger axes are kept.
 */
export function spatialPad<T extends VoxelArray>(volume: Volume<T>, minShape: Shape3, value = 0): Volume<T> {
  const before = [0, 1, 2].map((a) => Math.floor(Math.max(0, minShape[a] - volume.shape[a]) / 2));
  const shape = [0, 1, 2].map((a) => Math.max(volume.shape[a], minShape[a])) as Shape3;
  if (shape.every((n, a) => n === volume.shape[a])) return volume;
  const source = volume.data;
  const out = new (source.constructor as new (n: number) => T)(shape[0] * shape[1] * shape[2]);
  if (value !== 0) out.fill(value);
  const [nx, ny, nz] = volume.shape;
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      const from = nx * (y + ny * z);
      const to = before[0] + shape[0] * (y + before[1] + shape[1] * (z + before[2]));
      out.set(source.subarray(from, from + nx), to);
    }
  }
  return new Volume(out, shape, translateToVoxel(volume.affine, before.map((b) => -b)));
}
