import { Shape3, Volume, VoxelArray } from '../io/volume';
import { Rng } from '../util/random';

export type ZoomMode = 'area' | 'nearest';

/**
 * Zooms a volume in by `factor` (> 1) about its centre and keeps its size (MONAI `Zoom` with
 * keep_size: interpolate to floor(n * factor) voxels per axis, then take the central n). `area`
 * averages the source voxels each output voxel covers (torch's adaptive average pooling, for
 * images); `nearest` copies the source voxel floor(i n / m) (for labels: values are kept).
 */
export function zoomKeepSize<T extends VoxelArray>(volume: Volume<T>, factor: number, mode: ZoomMode): Volume<T> {
  if (!(factor >= 1)) throw new Error(`zoom factor must be at least 1, got ${factor}`);
  let data: ArrayLike<number> = volume.data;
  const shape: Shape3 = [...volume.shape];
  for (let axis = 0; axis < 3; axis++) {
    const n = volume.shape[axis];
    const zoomed = Math.max(n, Math.floor(n * factor));
    data = resampleAxis(data, shape, axis, zoomed, Math.floor((zoomed - n) / 2), mode);
  }
  const out = new (volume.data.constructor as new (n: number) => T)(data.length);
  if (mode === 'nearest' || !(out instanceof Float32Array || out instanceof Float64Array)) {
    for (let i = 0; i < out.length; i++) out[i] = mode === 'nearest' ? data[i] : Math.round(data[i]);
  } else {
    out.set(data);
  }
  return volume.withData(out);
}

/**
 * One axis of the zoom: the output along `axis` is voxels [start, start + n) of a grid of `zoomed`
 * voxels spanning the same extent as the `n` source voxels. `shape` stays the same (n in, n out).
 */
function resampleAxis(data: ArrayLike<number>, shape: Shape3, axis: number, zoomed: number, start: number, mode: ZoomMode): Float64Array {
  const n = shape[axis];
  const stride = axis === 0 ? 1 : axis === 1 ? shape[0] : shape[0] * shape[1];
  const outer = data.length / (n * stride);
  const out = new Float64Array(data.length);
  const ratio = n / zoomed;
  const from = new Int32Array(n);
  const to = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = i + start;
    if (mode === 'nearest') {
      from[i] = Math.min(n - 1, Math.floor(j * ratio));
      to[i] = from[i] + 1;
    } else {
      from[i] = Math.floor(j * ratio);
      to[i] = Math.min(n, Math.ceil((j + 1) * ratio));
    }
  }
  for (let o = 0; o < outer; o++) {
    const base = o * n * stride;
    for (let inner = 0; inner < stride; inner++) {
      const line = base + inner;
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (let s = from[i]; s < to[i]; s++) sum += data[line + s * stride];
        out[line + i * stride] = sum / (to[i] - from[i]);
      }
    }
  }
  return out;
}

export interface RandZoomOptions {
  prob: number;
  minZoom: number;
  maxZoom: number;
}

/**
 * MONAI `RandZoomd(keys=[image, label], prob, min_zoom, max_zoom, mode=[area, nearest])` with
 * keep_size: with probability `prob`, one isotropic factor drawn uniformly from [minZoom, maxZoom]
 * zooms the image (area) and the label (nearest) alike.
 */
export function randZoom<I extends VoxelArray, L extends VoxelArray>(image: Volume<I>, label: Volume<L>, rng: Rng, options: RandZoomOptions): [Volume<I>, Volume<L>] {
  if (rng.next() >= options.prob) return [image, label];
  const factor = rng.uniform(options.minZoom, options.maxZoom);
  return [zoomKeepSize(image, factor, 'area'), zoomKeepSize(label, factor, 'nearest')];
}
