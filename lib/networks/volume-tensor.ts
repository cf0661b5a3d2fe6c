import * as tf from '@tensorflow/tfjs-core';
import { Shape3, Volume } from '../io/volume';

/**
 * The network layout of a volume: voxel (i, j, k) of a `Volume` (axis 0 fastest in memory) goes to
 * tensor element [0, i, j, k, c] (channel fastest). D is NIfTI axis 0, as MONAI feeds nibabel
 * arrays [C, X, Y, Z] to PyTorch, so imported weights see the axes they were trained on.
 */
export interface FeatureGrid {
  /** Row-major [X, Y, Z, C]. */
  data: Float32Array;
  shape: Shape3;
  channels: number;
}

/** Reorders a volume's voxels into network layout (one channel). */
export function volumeToGrid(volume: Volume): FeatureGrid {
  const [nx, ny, nz] = volume.shape;
  const out = new Float32Array(nx * ny * nz);
  const source = volume.data;
  let o = 0;
  for (let i = 0; i < nx; i++) for (let j = 0; j < ny; j++) for (let k = 0; k < nz; k++) out[o++] = source[i + nx * (j + ny * k)];
  return { data: out, shape: [nx, ny, nz], channels: 1 };
}

/** One channel of a grid back in volume order (axis 0 fastest). */
export function gridChannelToVolumeData(grid: FeatureGrid, channel = 0): Float32Array {
  const [nx, ny, nz] = grid.shape;
  const c = grid.channels;
  const out = new Float32Array(nx * ny * nz);
  let o = 0;
  for (let i = 0; i < nx; i++) for (let j = 0; j < ny; j++) for (let k = 0; k < nz; k++) out[i + nx * (j + ny * k)] = grid.data[o++ * c + channel];
  return out;
}

/** The [1, X, Y, Z, 1] tensor of a volume. */
export function volumeToTensor(volume: Volume): tf.Tensor5D {
  const grid = volumeToGrid(volume);
  return tf.tensor5d(grid.data, [1, ...grid.shape, 1]);
}

/**
 * Multi-hot targets [1, X, Y, Z, classes] of a label volume: channel c - 1 is 1 where the label is
 * c (template classes are 1-based).
 */
export function labelToMultiHot(label: Volume, classes: number): tf.Tensor5D {
  const [nx, ny, nz] = label.shape;
  const out = new Float32Array(nx * ny * nz * classes);
  let o = 0;
  for (let i = 0; i < nx; i++)
    for (let j = 0; j < ny; j++)
      for (let k = 0; k < nz; k++, o++) {
        const value = label.data[i + nx * (j + ny * k)];
        if (value > 0 && value <= classes) out[o * classes + value - 1] = 1;
      }
  return tf.tensor5d(out, [1, nx, ny, nz, classes]);
}

/** The sub-grid [start, start + size) as a [1, sx, sy, sz, C] tensor; outside the grid reads 0. */
export function cropGrid(grid: FeatureGrid, start: Shape3, size: Shape3): tf.Tensor5D {
  const [nx, ny, nz] = grid.shape;
  const c = grid.channels;
  const out = new Float32Array(size[0] * size[1] * size[2] * c);
  for (let x = 0; x < size[0]; x++) {
    const i = start[0] + x;
    if (i < 0 || i >= nx) continue;
    for (let y = 0; y < size[1]; y++) {
      const j = start[1] + y;
      if (j < 0 || j >= ny) continue;
      const k0 = Math.max(0, start[2]);
      const k1 = Math.min(nz, start[2] + size[2]);
      if (k1 <= k0) continue;
      const from = ((i * ny + j) * nz + k0) * c;
      out.set(grid.data.subarray(from, from + (k1 - k0) * c), ((x * size[1] + y) * size[2] + (k0 - start[2])) * c);
    }
  }
  return tf.tensor5d(out, [1, size[0], size[1], size[2], c]);
}

/** Average pooling by `factor` per axis (sizes rounded down), e.g. to bound the memory of cached query features. */
export function poolGrid(grid: FeatureGrid, factor: number): FeatureGrid {
  if (factor === 1) return grid;
  const shape = grid.shape.map((n) => Math.max(1, Math.floor(n / factor))) as Shape3;
  const c = grid.channels;
  const out = new Float32Array(shape[0] * shape[1] * shape[2] * c);
  const [, ny, nz] = grid.shape;
  const norm = 1 / factor ** 3;
  for (let x = 0; x < shape[0]; x++)
    for (let y = 0; y < shape[1]; y++)
      for (let z = 0; z < shape[2]; z++) {
        const o = ((x * shape[1] + y) * shape[2] + z) * c;
        for (let a = 0; a < factor; a++)
          for (let b = 0; b < factor; b++)
            for (let d = 0; d < factor; d++) {
              const from = (((x * factor + a) * ny + y * factor + b) * nz + z * factor + d) * c;
              for (let ch = 0; ch < c; ch++) out[o + ch] += grid.data[from + ch] * norm;
            }
      }
  return { data: out, shape, channels: c };
}
