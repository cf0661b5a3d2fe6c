import * as tf from '@tensorflow/tfjs-core';
import { gatherRowsValue } from './wasm-memory-ops';

/**
 * Index plans for shifted-window attention on a token grid, as MONAI's SwinTransformerBlock:
 * pad to a multiple of the window, roll by -shift, partition into windows (and back). Each plan
 * is two gathers (see `gatherRows`) plus the attention mask of the shifted windows.
 */
export interface WindowPlan {
  window: [number, number, number];
  shift: [number, number, number];
  /** Tokens per window. */
  tokens: number;
  windows: number;
  /** For each window row: the source token, or T (a zero row) for padding. */
  partition: tf.Tensor1D;
  /** For each token: its row among the windows. */
  reverse: tf.Tensor1D;
  /** The additive attention mask (0 / -100) of shifted windows, else undefined. */
  mask?: WindowMask;
}

/**
 * A shifted-window mask stored compactly: windows away from the grid's far edges need no mask,
 * and the others share one of at most eight patterns. A [windows, N, N] tensor would take 161 MB
 * at stage 1 of a 96^3 input.
 */
export interface WindowMask {
  /** [patterns, N * N] distinct masks. */
  patterns: tf.Tensor2D;
  /** For each window: its row of `patterns`. */
  patternOf: Int32Array;
  tokens: number;
}

/** The [count, 1, N, N] mask of windows [start, start + count). */
export function maskOfWindows(mask: WindowMask, start: number, count: number): tf.Tensor4D {
  return tf.tidy(() => {
    const rows = tf.tensor1d(mask.patternOf.subarray(start, start + count), 'int32');
    return tf.reshape(gatherRowsValue(mask.patterns, rows), [count, 1, mask.tokens, mask.tokens]) as tf.Tensor4D;
  });
}

/** MONAI `get_window_size`: axes not longer than the window use the whole axis and no shift. */
export function effectiveWindow(dims: number[], window: number[], shift: number[]): { window: [number, number, number]; shift: [number, number, number] } {
  const w = dims.map((d, a) => (d <= window[a] ? d : window[a])) as [number, number, number];
  const s = dims.map((d, a) => (d <= window[a] ? 0 : shift[a])) as [number, number, number];
  return { window: w, shift: s };
}

const cache = new Map<string, WindowPlan>();

/** The plan for token grid `dims` (d, h, w) with MONAI's window and shift (cached, kept alive). */
export function windowPlan(dims: [number, number, number], window: number[], shift: number[]): WindowPlan {
  const effective = effectiveWindow(dims, window, shift);
  const key = `${dims}|${effective.window}|${effective.shift}`;
  const found = cache.get(key);
  if (found) return found;
  const plan = buildPlan(dims, effective.window, effective.shift);
  for (const t of [plan.partition, plan.reverse, plan.mask?.patterns]) if (t) tf.keep(t);
  cache.set(key, plan);
  return plan;
}

function buildPlan(dims: [number, number, number], window: [number, number, number], shift: [number, number, number]): WindowPlan {
  const [d, h, w] = dims;
  const padded = dims.map((n, a) => Math.ceil(n / window[a]) * window[a]);
  const counts = padded.map((n, a) => n / window[a]);
  const tokens = window[0] * window[1] * window[2];
  const windows = counts[0] * counts[1] * counts[2];
  const total = d * h * w;
  const partition = new Int32Array(windows * tokens);
  const reverse = new Int32Array(total);
  const region = new Int32Array(windows * tokens);
  const regionOf = (p: number, axis: number) => {
    if (shift[axis] === 0) return 0;
    return p < padded[axis] - window[axis] ? 0 : p < padded[axis] - shift[axis] ? 1 : 2;
  };
  let row = 0;
  for (let wd = 0; wd < counts[0]; wd++) {
    for (let wh = 0; wh < counts[1]; wh++) {
      for (let ww = 0; ww < counts[2]; ww++) {
        for (let i = 0; i < window[0]; i++) {
          for (let j = 0; j < window[1]; j++) {
            for (let k = 0; k < window[2]; k++, row++) {
              // Position in the rolled, padded grid and the padded position it reads.
              const p = [wd * window[0] + i, wh * window[1] + j, ww * window[2] + k];
              const q = p.map((v, a) => (v + shift[a]) % padded[a]);
              const inside = q[0] < d && q[1] < h && q[2] < w;
              const token = (q[0] * h + q[1]) * w + q[2];
              partition[row] = inside ? token : total;
              if (inside) reverse[token] = row;
              region[row] = regionOf(p[0], 0) * 9 + regionOf(p[1], 1) * 3 + regionOf(p[2], 2);
            }
          }
        }
      }
    }
  }
  let mask: WindowMask | undefined;
  if (shift.some((s) => s > 0)) {
    const patterns: Float32Array[] = [];
    const known = new Map<string, number>();
    const patternOf = new Int32Array(windows);
    for (let win = 0; win < windows; win++) {
      const regions = region.subarray(win * tokens, (win + 1) * tokens);
      const key = regions.join();
      let index = known.get(key);
      if (index === undefined) {
        const values = new Float32Array(tokens * tokens);
        for (let a = 0; a < tokens; a++) for (let b = 0; b < tokens; b++) values[a * tokens + b] = regions[b] === regions[a] ? 0 : -100;
        index = patterns.length;
        patterns.push(values);
        known.set(key, index);
      }
      patternOf[win] = index;
    }
    const table = new Float32Array(patterns.length * tokens * tokens);
    patterns.forEach((values, i) => table.set(values, i * tokens * tokens));
    mask = { patterns: tf.tensor2d(table, [patterns.length, tokens * tokens]), patternOf, tokens };
  }
  return {
    window,
    shift,
    tokens,
    windows,
    partition: tf.tensor1d(partition, 'int32'),
    reverse: tf.tensor1d(reverse, 'int32'),
    mask,
  };
}

/**
 * MONAI's `relative_position_index` for a window (a [N, N] table index), as a flat Int32Array.
 */
export function relativePositionIndex(window: number[]): Int32Array {
  const [a, b, c] = window;
  const n = a * b * c;
  const coords: number[][] = [];
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) for (let k = 0; k < c; k++) coords.push([i, j, k]);
  const out = new Int32Array(n * n);
  for (let p = 0; p < n; p++) {
    for (let q = 0; q < n; q++) {
      const dd = coords[p][0] - coords[q][0] + a - 1;
      const dh = coords[p][1] - coords[q][1] + b - 1;
      const dw = coords[p][2] - coords[q][2] + c - 1;
      out[p * n + q] = dd * (2 * b - 1) * (2 * c - 1) + dh * (2 * c - 1) + dw;
    }
  }
  return out;
}

const biasIndexCache = new Map<string, tf.Tensor1D>();

/**
 * Indices into the bias table for a window of `tokens` tokens. MONAI slices the full window's
 * index matrix as `index[:n, :n]` even when a smaller window is used (small stages); the kit
 * does exactly the same so that weights and outputs match.
 */
export function biasIndex(fullWindow: number[], tokens: number): tf.Tensor1D {
  const key = `${fullWindow}|${tokens}`;
  let found = biasIndexCache.get(key);
  if (!found) {
    const full = relativePositionIndex(fullWindow);
    const n = fullWindow[0] * fullWindow[1] * fullWindow[2];
    const out = new Int32Array(tokens * tokens);
    for (let p = 0; p < tokens; p++) for (let q = 0; q < tokens; q++) out[p * tokens + q] = full[p * n + q];
    found = tf.keep(tf.tensor1d(out, 'int32'));
    biasIndexCache.set(key, found);
  }
  return found;
}
