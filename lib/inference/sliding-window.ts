import * as tf from '@tensorflow/tfjs-core';
import { Shape3 } from '../io/volume';
import { FeatureGrid, cropGrid } from '../networks/volume-tensor';

/**
 * Window start positions along one axis, as MONAI's dense_patch_slices: a stride of
 * roi * (1 - overlap), the last window flush with the end.
 */
export function windowStarts(size: number, roi: number, overlap: number): number[] {
  if (size <= roi) return [0];
  const interval = Math.max(1, Math.floor(roi * (1 - overlap)));
  const count = Math.ceil((size - roi) / interval) + 1;
  const starts = new Set<number>();
  for (let i = 0; i < count; i++) starts.add(Math.min(i * interval, size - roi));
  return [...starts];
}

/**
 * MONAI's Gaussian importance map for blending windows (compute_importance_map, MONAI 1.2): a
 * product of 1-D Gaussians centred on each axis's middle, (roi - 1) / 2 (between two voxels for an
 * even ROI), sigma = sigmaScale * roi, raised to at least 1e-3 (MONAI's floor for the weights at a
 * window's corners), in [X][Y][Z] order.
 */
export function gaussianImportance(roi: Shape3, sigmaScale = 0.125): Float32Array {
  const axes = roi.map((n) => {
    const sigma = sigmaScale * n;
    const centre = (n - 1) / 2;
    return Float32Array.from({ length: n }, (_, i) => Math.exp(-((i - centre) ** 2) / (2 * sigma * sigma)));
  });
  const out = new Float32Array(roi[0] * roi[1] * roi[2]);
  let o = 0;
  // MONAI clamps to max(smallest weight, 1e-3): the same as clamping every weight to 1e-3.
  for (let x = 0; x < roi[0]; x++) for (let y = 0; y < roi[1]; y++) for (let z = 0; z < roi[2]; z++) out[o++] = Math.max(axes[0][x] * axes[1][y] * axes[2][z], 1e-3);
  return out;
}

export interface WindowOutput {
  channels: number;
  /** Downsampling factor of this output relative to the input (1 or 2). */
  scale: 1 | 2;
}

export interface SlidingWindowOptions {
  roi: Shape3;
  overlap?: number;
  sigmaScale?: number;
  /** Keep every window's start even, for a `run` that crops a half-resolution grid at start / 2. */
  evenStarts?: boolean;
  /** Called after each window (progress). */
  onWindow?: (done: number, total: number) => void;
}

/**
 * Sliding-window inference over a grid: `run` maps each [1, roi, C] window to one tensor per
 * declared output; overlapping windows are blended with Gaussian weights (MONAI
 * sliding_window_inference, mode "gaussian"). `run` gets the window's start on the input grid
 * (negative where the window begins in the padding). An axis shorter than the ROI is padded with
 * zeros on both sides, half before and the rest after, as MONAI pads it and as training's crops
 * (`spatialPad`) place a short volume: the network sees a short volume where it saw it in
 * training. With only full-resolution outputs the windows are MONAI's exactly. Half-resolution
 * outputs (or `evenStarts`) need every start even so that they align: odd sizes get one more zero
 * at the end, starts and the padding before are rounded down to even. Outputs are cropped back.
 * Only one window's tensors live on the device at a time.
 */
export function slidingWindow(input: FeatureGrid, outputs: WindowOutput[], run: (window: tf.Tensor5D, start: Shape3) => tf.Tensor5D[], options: SlidingWindowOptions): FeatureGrid[] {
  const { roi, overlap = 0.25, sigmaScale = 0.125 } = options;
  for (const output of outputs) if (output.scale === 2 && roi.some((n) => n % 2 !== 0)) throw new Error('half-resolution outputs need an even ROI');
  const even = options.evenStarts || outputs.some((output) => output.scale === 2);
  const toEven = (n: number) => (even ? n - (n % 2) : n);
  const padded = input.shape.map((n, a) => Math.max(roi[a], even ? n + (n % 2) : n)) as Shape3;
  const before = input.shape.map((n, a) => toEven(Math.floor(Math.max(0, roi[a] - n) / 2))) as Shape3;
  const starts = [0, 1, 2].map((a) => windowStarts(padded[a], roi[a], overlap).map(toEven));
  const accumulators = outputs.map((output) => {
    const shape = padded.map((n) => n / output.scale) as Shape3;
    const window = roi.map((n) => n / output.scale) as Shape3;
    return {
      output,
      shape,
      window,
      values: new Float32Array(shape[0] * shape[1] * shape[2] * output.channels),
      weights: new Float32Array(shape[0] * shape[1] * shape[2]),
      importance: gaussianImportance(window, sigmaScale),
    };
  });
  const total = starts[0].length * starts[1].length * starts[2].length;
  let done = 0;
  for (const sx of starts[0])
    for (const sy of starts[1])
      for (const sz of starts[2]) {
        const start: Shape3 = [sx - before[0], sy - before[1], sz - before[2]];
        const windowInput = cropGrid(input, start, roi);
        let results: tf.Tensor5D[];
        try {
          results = run(windowInput, start);
        } finally {
          windowInput.dispose();
        }
        try {
          accumulators.forEach((acc, index) => {
            const data = results[index].dataSync() as Float32Array;
            addWindow(acc, data, [sx, sy, sz].map((s) => s / acc.output.scale) as Shape3);
          });
        } finally {
          tf.dispose(results);
        }
        options.onWindow?.(++done, total);
      }
  return accumulators.map((acc) => {
    const scale = acc.output.scale;
    const shape = input.shape.map((n) => Math.ceil(n / scale)) as Shape3;
    const c = acc.output.channels;
    const [bx, by, bz] = before.map((b) => b / scale);
    const out = new Float32Array(shape[0] * shape[1] * shape[2] * c);
    for (let x = 0; x < shape[0]; x++)
      for (let y = 0; y < shape[1]; y++)
        for (let z = 0; z < shape[2]; z++) {
          const from = ((x + bx) * acc.shape[1] + y + by) * acc.shape[2] + z + bz;
          const to = (x * shape[1] + y) * shape[2] + z;
          const w = acc.weights[from];
          for (let ch = 0; ch < c; ch++) out[to * c + ch] = acc.values[from * c + ch] / w;
        }
    return { data: out, shape, channels: c };
  });
}

function addWindow(
  acc: { shape: Shape3; window: Shape3; values: Float32Array; weights: Float32Array; importance: Float32Array; output: WindowOutput },
  data: Float32Array,
  start: Shape3,
): void {
  const c = acc.output.channels;
  const [wx, wy, wz] = acc.window;
  let w = 0;
  for (let x = 0; x < wx; x++)
    for (let y = 0; y < wy; y++)
      for (let z = 0; z < wz; z++, w++) {
        const target = ((start[0] + x) * acc.shape[1] + start[1] + y) * acc.shape[2] + start[2] + z;
        const weight = acc.importance[w];
        acc.weights[target] += weight;
        for (let ch = 0; ch < c; ch++) acc.values[target * c + ch] += weight * data[w * c + ch];
      }
}
