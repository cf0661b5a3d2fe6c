import * as tf from '@tensorflow/tfjs-core';
import { WasmBackendInternals, floatsOf, forEachView, offsetOf, onWasm, registerWasmKernels, wasmOf } from './wasm-views';

/**
 * Data movement and reductions that tfjs-wasm does slowly, as kernels of the kit's own (wasm
 * only; other backends use tfjs's ops). Measured on 2 cores at a 96^3 x 48 volume: a contiguous
 * slice copies through a cloned shared buffer (185 ms; a heap copy takes 25 ms), a gather walks
 * element by element (440 ms for a window partition), and a sum over the leading axis transposes
 * the whole tensor first (250 ms). None of these kernels has a gradient of its own: they serve
 * ops that define theirs.
 */

/**
 * The backend, once `tensor`'s buffer is known to be its own: the in-place writers below may
 * change it only then (clones and reshapes share buffers on wasm).
 */
function unsharedBackend(tensor: tf.Tensor, writer: string, role: string): WasmBackendInternals {
  const wasm = tf.backend() as unknown as WasmBackendInternals & { refCount(dataId: object): number };
  if (wasm.refCount(tensor.dataId) !== 1) throw new Error(`${writer}: the ${role} buffer is shared`);
  return wasm;
}

let wasmAdd: ((...args: unknown[]) => void) | undefined;

/** tfjs-wasm's C Add: (a id, a shape, a rank, b id, b shape, b rank, dtype (float32 = 0), out id). Elementwise, so the output may be an input. */
function addInto(wasm: WasmBackendInternals, out: number, a: number, b: number, size: number): void {
  wasmAdd ??= wasm.wasm.cwrap('Add', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number']);
  const shape = new Uint8Array(new Int32Array([size]).buffer);
  wasmAdd(a, shape, 1, b, shape, 1, 0, out);
}

const KERNELS: Array<{ name: string; kernelFunc: tf.KernelFunc }> = [
  {
    // Rows `index` of x [R, C] (an index of R or more gives a zero row) -> [M, C].
    name: 'FseftGatherRows',
    kernelFunc: ({ inputs, backend }) => {
      const wasm = wasmOf(backend);
      const { x, index } = inputs as { x: tf.TensorInfo; index: tf.TensorInfo };
      const [rows, columns] = x.shape;
      const count = index.shape[0];
      const out = wasm.makeOutput([count, columns], 'float32');
      const heap = wasm.wasm.HEAPU8;
      const indices = new Int32Array(heap.buffer, offsetOf(wasm, index), count);
      const rowBytes = columns * 4;
      const source = offsetOf(wasm, x);
      const target = offsetOf(wasm, out);
      // Runs of consecutive source rows are copied at once (a window row is 7 tokens long).
      for (let i = 0; i < count; ) {
        const first = indices[i];
        let length = 1;
        if (first >= rows || first < 0) {
          while (i + length < count && (indices[i + length] >= rows || indices[i + length] < 0)) length++;
          heap.fill(0, target + i * rowBytes, target + (i + length) * rowBytes);
        } else {
          while (i + length < count && indices[i + length] === first + length && first + length < rows) length++;
          heap.copyWithin(target + i * rowBytes, source + first * rowBytes, source + (first + length) * rowBytes);
        }
        i += length;
      }
      return out;
    },
  },
  {
    // x[start : start + count] along the leading axis (a contiguous block).
    name: 'FseftSliceLeading',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const wasm = wasmOf(backend);
      const { x } = inputs as { x: tf.TensorInfo };
      const { start, count } = attrs as unknown as { start: number; count: number };
      const inner = x.shape.slice(1).reduce((a, b) => a * b, 1);
      const out = wasm.makeOutput([count, ...x.shape.slice(1)], 'float32');
      const source = offsetOf(wasm, x) + start * inner * 4;
      wasm.wasm.HEAPU8.copyWithin(offsetOf(wasm, out), source, source + count * inner * 4);
      return out;
    },
  },
  {
    // The slices start - 1 .. start + count of x [D, H, W, C], channels first and depth last, once
    // per depth tap: out[kd C + c, h + 1, w + 1, j] = x[start + j + kd - 1, h, w, c], zero outside
    // the volume and on the one-voxel border -> [3 C, H + 2, W + 2, count].
    name: 'FseftShiftedChannelsFirst',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const wasm = wasmOf(backend);
      const { x } = inputs as { x: tf.TensorInfo };
      const { start, count } = attrs as unknown as { start: number; count: number };
      const [depth, h, w, c] = x.shape;
      const rowStride = (w + 2) * count;
      const planeStride = (h + 2) * rowStride;
      const out = wasm.makeOutput([3 * c, h + 2, w + 2, count], 'float32');
      const source = floatsOf(wasm, x, 0, depth * h * w * c);
      const target = floatsOf(wasm, out, 0, 3 * c * planeStride);
      target.fill(0);
      // Voxel by voxel, so that the writes of one voxel stay within 3 C runs of `count` floats.
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          const voxel = (y + 1) * rowStride + (xx + 1) * count;
          for (let slab = 0; slab < count + 2; slab++) {
            const d = start - 1 + slab;
            if (d < 0 || d >= depth) continue;
            const from = ((d * h + y) * w + xx) * c;
            for (let kd = 0; kd < 3; kd++) {
              const j = slab - kd;
              if (j < 0 || j >= count) continue;
              let to = kd * c * planeStride + voxel + j;
              for (let ch = 0; ch < c; ch++, to += planeStride) target[to] = source[from + ch];
            }
          }
        }
      }
      return out;
    },
  },
  {
    // x[start : start + count] of x [D, H, W, C] with depth moved inside: -> [H, W, count, C].
    name: 'FseftDepthInward',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const wasm = wasmOf(backend);
      const { x } = inputs as { x: tf.TensorInfo };
      const { start, count } = attrs as unknown as { start: number; count: number };
      const [, h, w, c] = x.shape;
      const out = wasm.makeOutput([h, w, count, c], 'float32');
      const source = floatsOf(wasm, x, start * h * w * c, count * h * w * c);
      const target = floatsOf(wasm, out, 0, count * h * w * c);
      for (let p = 0; p < h * w; p++) {
        for (let j = 0; j < count; j++) {
          const from = (j * h * w + p) * c;
          const to = (p * count + j) * c;
          for (let ch = 0; ch < c; ch++) target[to + ch] = source[from + ch];
        }
      }
      return out;
    },
  },
  {
    // Sum of the rows of x [R, C] -> [C] as a running elementwise sum over views of the rows.
    name: 'FseftSumRowsViews',
    kernelFunc: ({ inputs, backend }) => {
      const wasm = wasmOf(backend);
      const { x } = inputs as { x: tf.TensorInfo };
      const [rows, columns] = x.shape;
      const out = wasm.makeOutput([columns], 'float32');
      const outId = wasm.dataIdMap.get(out.dataId).id;
      const base = offsetOf(wasm, x);
      wasm.wasm.HEAPU8.copyWithin(offsetOf(wasm, out), base, base + columns * 4);
      forEachView(wasm, rows - 1, [base + columns * 4], [columns], ([row]) => addInto(wasm, outId, outId, row, columns));
      return out;
    },
  },
];

function run<T extends tf.Tensor>(name: string, inputs: tf.NamedTensorMap, attrs: Record<string, number> = {}): T {
  registerWasmKernels(KERNELS);
  return tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as T;
}

/** Rows `index` of x [R, C]; an index equal to R gives a zero row. No gradient. */
export function gatherRowsValue(x: tf.Tensor2D, index: tf.Tensor1D): tf.Tensor2D {
  if (!onWasm() || x.dtype !== 'float32' || index.dtype !== 'int32') return tf.tidy(() => tf.gather(tf.concat([x, tf.zeros([1, x.shape[1]])], 0), index) as tf.Tensor2D);
  return run('FseftGatherRows', { x, index });
}

/** x[start : start + count] along the leading axis. No gradient. */
export function sliceLeading<T extends tf.Tensor>(x: T, start: number, count: number): T {
  if (!onWasm() || x.dtype !== 'float32') return tf.slice(x, [start, ...x.shape.slice(1).map(() => 0)], [count, ...x.shape.slice(1)]) as T;
  return run('FseftSliceLeading', { x }, { start, count });
}

/**
 * The input of a convolution's filter gradient with channels as batch: the slices start - 1 ..
 * start + count of x [D, H, W, C], once per depth tap kd (kd C + c is the batch index), padded by
 * one voxel in H and W -> [3 C, H + 2, W + 2, count], zero outside the volume. On wasm one pass
 * in the heap (tfjs-wasm's pad and channels-to-front transpose took 1.4 s per 96^3 x 48 chunk of
 * 37 slices). No gradient.
 */
export function shiftedChannelsFirst(x: tf.Tensor4D, start: number, count: number): tf.Tensor4D {
  if (onWasm() && x.dtype === 'float32') return run('FseftShiftedChannelsFirst', { x }, { start, count });
  return tf.tidy(() => {
    const depth = x.shape[0];
    const taps = [0, 1, 2].map((kd) => {
      const first = start + kd - 1;
      const from = Math.max(0, first);
      const to = Math.min(depth, first + count);
      const padded = tf.pad(tf.slice(x, [from, 0, 0, 0], [Math.max(0, to - from), -1, -1, -1]), [[from - first, first + count - Math.max(to, from)], [1, 1], [1, 1], [0, 0]]);
      return tf.transpose(padded, [3, 1, 2, 0]);
    });
    return tf.concat(taps, 0) as tf.Tensor4D;
  });
}

/** x[start : start + count] of x [D, H, W, C] with depth moved inside -> [H, W, count, C]. No gradient. */
export function depthInward(x: tf.Tensor4D, start: number, count: number): tf.Tensor4D {
  if (onWasm() && x.dtype === 'float32') return run('FseftDepthInward', { x }, { start, count });
  return tf.tidy(() => tf.transpose(sliceLeading(x, start, count), [1, 2, 0, 3]) as tf.Tensor4D);
}

/**
 * tf.zeros(shape), float32, as tfjs's Fill kernel: tf.zeros builds its zeros in JavaScript and
 * copies them in (on wasm 660 ms for a 96^3 x 48 volume on 2 cores; a fill in the heap, 12 ms).
 */
export function zeros(shape: number[]): tf.Tensor {
  return tf.fill(shape, 0, 'float32');
}

/**
 * center[d] += before[d - 1] + after[d + 1] along the leading (depth) axis, zero outside, in place:
 * the three depth taps of a convolution summed into the middle tap's output without a fourth
 * volume (a copy of 170 MB at 96^3 x 48). Only for a center this code has just made and shares
 * with nothing, as writeLeadingInPlace. Wasm only.
 */
export function addDepthNeighboursInPlace(center: tf.Tensor, before: tf.Tensor, after: tf.Tensor): void {
  const wasm = unsharedBackend(center, 'addDepthNeighboursInPlace', 'center');
  if (!before.shape.every((n, i) => n === center.shape[i]) || !after.shape.every((n, i) => n === center.shape[i])) throw new Error(`addDepthNeighboursInPlace: shapes [${before.shape}], [${center.shape}], [${after.shape}] differ`);
  const depth = center.shape[0];
  if (depth < 2) return;
  const slab = center.size / depth;
  const size = (depth - 1) * slab;
  const target = offsetOf(wasm, center);
  // center[1:] += before[:-1], then center[:-1] += after[1:], each as one view pair.
  forEachView(wasm, 1, [target + slab * 4, offsetOf(wasm, before)], [size, size], ([tail, head]) => addInto(wasm, tail, tail, head, size));
  forEachView(wasm, 1, [target, offsetOf(wasm, after) + slab * 4], [size, size], ([head, tail]) => addInto(wasm, head, head, tail, size));
}

/**
 * Sum over the rows of x [R, C] -> [C]. On wasm tf.sum over axis 0 transposes the whole tensor
 * first; here the rows are summed in groups as elementwise sums over views (64 rows at a time,
 * each level reading the tensor once), down to a short remainder. No gradient on wasm.
 */
export function sumRows(x: tf.Tensor2D): tf.Tensor1D {
  const [rows, columns] = x.shape;
  // tfjs-webgpu also transposes first; its rank-2 transpose dispatches one workgroup row per 16
  // input rows, which past a million rows exceeds WebGPU's limit of 65535. Its rank-3 transpose
  // has a flat dispatch without that limit.
  if (tf.getBackend() === 'webgpu') return tf.tidy(() => tf.reshape(tf.sum(tf.reshape(x, [1, rows, columns]), 1), [columns]) as tf.Tensor1D);
  if (!onWasm() || rows < 2) return tf.sum(x, 0);
  if (rows <= 64) return run('FseftSumRowsViews', { x });
  let group = 64;
  while (group > 1 && rows % group !== 0) group--;
  if (group === 1) return tf.sum(x, 0);
  return tf.tidy(() => {
    const partial = run<tf.Tensor1D>('FseftSumRowsViews', { x: tf.reshape(x, [group, (rows / group) * columns]) });
    return sumRows(tf.reshape(partial, [rows / group, columns]) as tf.Tensor2D);
  });
}

/**
 * Copies `source` into the rows of `target` from row `start` on (leading axis), in place. Only for
 * a target this code has just made and shares with nothing: a tensor's buffer is otherwise never
 * written after its kernel returns (clones and reshapes share buffers on wasm).
 */
export function writeLeadingInPlace(target: tf.Tensor, source: tf.Tensor, start: number): void {
  const wasm = unsharedBackend(target, 'writeLeadingInPlace', 'target');
  const slab = target.shape.slice(1).reduce((a, b) => a * b, 1);
  if (source.shape.slice(1).reduce((a, b) => a * b, 1) !== slab || start + source.shape[0] > target.shape[0]) throw new Error(`writeLeadingInPlace: [${source.shape}] does not fit at row ${start} of [${target.shape}]`);
  const from = offsetOf(wasm, source);
  wasm.wasm.HEAPU8.copyWithin(offsetOf(wasm, target) + start * slab * 4, from, from + source.size * 4);
}
