import * as tf from '@tensorflow/tfjs-core';

/**
 * Matrix products that reach XNNPACK on the wasm backend.
 *
 * tfjs-wasm sends a product to XNNPACK (14-28 GFLOP/s) only when it is a single matrix pair with
 * neither operand transposed; a batch of pairs, or a transposed operand, falls to a naive triple
 * loop (0.2-0.9 GFLOP/s). Window attention is a batch of small products, and the gradients of
 * every product use transposed operands, so on wasm these helpers (1) run a batch as one kernel
 * that calls tfjs-wasm's own single-pair product once per batch item on views into the batch
 * tensors (no copies), and (2) transpose operands explicitly before a plain product. Every other
 * backend gets tf.matMul unchanged.
 */

const BATCHED_KERNEL = 'FseftBatchMatMulViews';

/** The parts of tfjs-wasm's backend object the batched kernel uses (tfjs 4.22). */
interface WasmBackendInternals {
  wasm: {
    cwrap(name: string, returnType: null, argumentTypes: string[]): (...args: unknown[]) => void;
    HEAPU8: Uint8Array;
    tfjs: { registerTensor(id: number, size: number, memoryOffset: number): void; disposeData(id: number): void };
  };
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

let wasmSinglePair: ((...args: unknown[]) => void) | undefined;

/**
 * Registers, for each of `count` items, a tensor id pointing into each buffer (item i of buffer t
 * starts at `bases[t] + i * sizes[t]` floats), runs `body` with them, and disposes the ids. Disposing
 * also frees any XNNPACK operator that tfjs-wasm cached on an id.
 */
function forEachView(wasm: WasmBackendInternals, count: number, bases: number[], sizes: number[], body: (ids: number[], item: number) => void): void {
  for (let i = 0; i < count; i++) {
    const ids = sizes.map((size, t) => {
      const id = wasm.dataIdNextNumber++;
      wasm.wasm.tfjs.registerTensor(id, size, bases[t] + i * size * 4);
      return id;
    });
    body(ids, i);
    for (const id of ids) wasm.wasm.tfjs.disposeData(id);
  }
}

function offsetOf(wasm: WasmBackendInternals, tensor: tf.TensorInfo): number {
  return wasm.dataIdMap.get(tensor.dataId).memoryOffset;
}

function registerBatchedKernel(): void {
  if (tf.getKernel(BATCHED_KERNEL, 'wasm')) return;
  tf.registerKernel({
    kernelName: BATCHED_KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const wasm = backend as unknown as WasmBackendInternals;
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const [batch, m, k] = a.shape;
      const n = b.shape[2];
      // The C entry point behind tfjs-wasm's BatchMatMul kernel: (a id, a shape, a rank, b id,
      // b shape, b rank, transpose a, transpose b, out id).
      wasmSinglePair ??= wasm.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
      const out = wasm.makeOutput([batch, m, n], 'float32');
      const shapes = [[1, m, k], [1, k, n]].map((shape) => new Uint8Array(new Int32Array(shape).buffer));
      // Each batch item is a tensor of its own that points into the batch's memory.
      forEachView(wasm, batch, [a, b, out].map((t) => offsetOf(wasm, t)), [m * k, k * n, m * n], (ids) => wasmSinglePair!(ids[0], shapes[0], 3, ids[1], shapes[1], 3, 0, 0, ids[2]));
      return out;
    },
  });
}

const ROW_SUM_KERNEL = 'FseftSumRowsViews';
let wasmAdd: ((...args: unknown[]) => void) | undefined;

function registerRowSumKernel(): void {
  if (tf.getKernel(ROW_SUM_KERNEL, 'wasm')) return;
  tf.registerKernel({
    kernelName: ROW_SUM_KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const wasm = backend as unknown as WasmBackendInternals;
      const { x } = inputs as { x: tf.TensorInfo };
      const [rows, columns] = x.shape;
      // The C entry point behind tfjs-wasm's Add kernel: (a id, a shape, a rank, b id, b shape,
      // b rank, dtype (float32 = 0), out id). Elementwise, so the output may be an input.
      wasmAdd ??= wasm.wasm.cwrap('Add', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number']);
      const out = wasm.makeOutput([columns], 'float32');
      const outId = wasm.dataIdMap.get(out.dataId).id;
      const shape = new Uint8Array(new Int32Array([columns]).buffer);
      const base = offsetOf(wasm, x);
      wasm.wasm.HEAPU8.copyWithin(offsetOf(wasm, out), base, base + columns * 4);
      forEachView(wasm, rows - 1, [base + columns * 4], [columns], ([row]) => wasmAdd!(outId, shape, 1, row, shape, 1, 0, outId));
      return out;
    },
  });
}

/**
 * Sum over the rows of x [R, C] -> [C]. On wasm, for few wide rows (the bias gradient of window
 * attention, [windows, heads * N * N]), a running elementwise sum over views of the rows: tf.sum
 * over axis 0 transposes the whole tensor first there (8x slower at that shape).
 */
export function sumRows(x: tf.Tensor2D): tf.Tensor1D {
  if (!onWasm() || x.shape[0] > 64 || x.shape[0] < 2) return tf.sum(x, 0);
  registerRowSumKernel();
  return tf.engine().runKernel(ROW_SUM_KERNEL, { x }, {}) as tf.Tensor1D;
}

function onWasm(): boolean {
  return tf.getBackend() === 'wasm';
}

function batchedOnWasm(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  registerBatchedKernel();
  return tf.engine().runKernel(BATCHED_KERNEL, { a, b }, {}) as tf.Tensor3D;
}

function swapLastTwo<T extends tf.Tensor>(x: T): T {
  return tf.transpose(x, x.rank === 2 ? [1, 0] : [0, 2, 1]) as T;
}

const batchedWithGradient = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [a, b, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: batchedOnWasm(a, b),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [as, bs] = saved as tf.Tensor3D[];
      return [batchedOnWasm(dy as tf.Tensor3D, swapLastTwo(bs)), batchedOnWasm(swapLastTwo(as), dy as tf.Tensor3D)];
    },
  };
});

const plainWithGradient = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [as, bs] = saved as tf.Tensor2D[];
      return [tf.matMul(dy as tf.Tensor2D, swapLastTwo(bs)), tf.matMul(swapLastTwo(as), dy as tf.Tensor2D)];
    },
  };
});

/**
 * a [B, M, K] x b [B, K, N] -> [B, M, N]. On wasm 4-8x faster than tf.matMul at attention sizes
 * (B in the hundreds, M = N = 343); its gradient uses the same path.
 */
export function batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  if (!onWasm()) return tf.matMul(a, b);
  if (a.shape[0] !== b.shape[0] || a.shape[2] !== b.shape[1]) {
    throw new Error(`batchMatMul: shapes [${a.shape}] and [${b.shape}] do not multiply`);
  }
  return batchedWithGradient(a, b) as tf.Tensor3D;
}

/**
 * a [B, M, K] x b [B, K, N] without a gradient of its own: for the insides of ops that have a
 * custom gradient (fused attention), on wasm through the same per-item XNNPACK products.
 */
export function batchMatMulValue(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  return onWasm() ? batchedOnWasm(a, b) : tf.matMul(a, b);
}

/**
 * a [M, K] x b [K, N]. On wasm the gradient's transposed products (dy b^T, a^T dy) transpose
 * explicitly first, so that they run in XNNPACK rather than in the naive loop.
 */
export function matMul2d(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return onWasm() ? (plainWithGradient(a, b) as tf.Tensor2D) : tf.matMul(a, b);
}
