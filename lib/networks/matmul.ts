import * as tf from '@tensorflow/tfjs-core';
import { isFrozen } from './frozen';
import { inputGradientWanted, unwantedGradient } from '../backend/backprop-memory';
import { sliceLeading } from './wasm-memory-ops';
import { simdModuleOn } from './wasm-simd';
import { SimdProductExports, simdProductModuleBytes } from './wasm-simd-products';
import { rowPoolOf } from './wasm-row-pool';
import { WasmBackendInternals, forEachView, offsetOf, onWasm } from './wasm-views';

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

/**
 * Products of a batch with at most this many rows, or this long an inner dimension, run as the
 * kit's SIMD function (wasm-simd-products.ts) instead of XNNPACK, which packs the right-hand matrix
 * for every product (window attention's products with head dimension 4 or 16 ran at 2-9 GFLOP/s);
 * `threads`: batch items shared with the row pool's helper threads (wasm-row-pool.ts).
 */
export const productTuning = { smallSideMax: 16, threads: true };

/** Whether a batch item [m, k] x [k, n] goes to the SIMD function (on wasm, where it instantiates). */
export function smallSided(m: number, k: number): boolean {
  return k > 0 && (m <= productTuning.smallSideMax || k <= productTuning.smallSideMax);
}

let wasmSinglePair: ((...args: unknown[]) => void) | undefined;

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
      const simd = smallSided(m, k) ? simdModuleOn<SimdProductExports>(wasm, 'products', simdProductModuleBytes) : undefined;
      if (simd) {
        // batch items [item0, item1) at their offsets into a, b and out
        const [pa, pb, pc] = [a, b, out].map((t) => offsetOf(wasm, t));
        const items = (item0: number, item1: number) => [pa + item0 * m * k * 4, pb + item0 * k * n * 4, pc + item0 * m * n * 4, item1 - item0, m, k, n];
        const pool = productTuning.threads ? rowPoolOf(wasm) : null;
        const own = (item0: number, item1: number) => {
          const [x, y, z, count] = items(item0, item1);
          simd.smallRowsProduct(x, y, z, count, m, k, n);
        };
        if (pool && batch >= pool.threads) pool.run({ module: 'products', fn: 'smallRowsProduct' }, batch, items, own);
        else own(0, batch);
        return out;
      }
      const shapes = [[1, m, k], [1, k, n]].map((shape) => new Uint8Array(new Int32Array(shape).buffer));
      // Each batch item is a tensor of its own that points into the batch's memory.
      forEachView(wasm, batch, [a, b, out].map((t) => offsetOf(wasm, t)), [m * k, k * n, m * n], (ids) => wasmSinglePair!(ids[0], shapes[0], 3, ids[1], shapes[1], 3, 0, 0, ids[2]));
      return out;
    },
  });
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
      return [
        inputGradientWanted(0) ? batchedOnWasm(dy as tf.Tensor3D, swapLastTwo(bs)) : unwantedGradient(),
        inputGradientWanted(1) ? batchedOnWasm(swapLastTwo(as), dy as tf.Tensor3D) : unwantedGradient(),
      ];
    },
  };
});

/** Rows of a tall operand transposed at a time in a^T dy: bounds the transposed copy. */
const TRANSPOSED_CHUNK_FLOATS = 2 ** 22;

/**
 * a^T dy for a tall a [M, K] and dy [M, N], summed over chunks of rows: a whole transposed copy of
 * a full-resolution volume (M = 96^3) would be hundreds of MB.
 */
function transposedProduct(a: tf.Tensor2D, dy: tf.Tensor2D): tf.Tensor2D {
  const [m, k] = a.shape;
  const rows = Math.max(1, Math.floor(TRANSPOSED_CHUNK_FLOATS / Math.max(k, dy.shape[1])));
  if (rows >= m) return tf.tidy(() => tf.matMul(swapLastTwo(a), dy));
  let total: tf.Tensor2D | undefined;
  for (let r0 = 0; r0 < m; r0 += rows) {
    const count = Math.min(rows, m - r0);
    const part = tf.tidy(() => tf.matMul(swapLastTwo(sliceLeading(a, r0, count)), sliceLeading(dy, r0, count))) as tf.Tensor2D;
    if (total) {
      const sum = tf.add(total, part) as tf.Tensor2D;
      tf.dispose([total, part]);
      total = sum;
    } else total = part;
  }
  return total!;
}

const plainWithGradient = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy, saved) => {
      const [as, bs] = saved as tf.Tensor2D[];
      return [
        inputGradientWanted(0) ? tf.tidy(() => tf.matMul(dy as tf.Tensor2D, swapLastTwo(bs))) : unwantedGradient(),
        inputGradientWanted(1) ? transposedProduct(as, dy as tf.Tensor2D) : unwantedGradient(),
      ];
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
  if (!onWasm()) return tf.matMul(a, b);
  // A frozen weight (lib/networks/frozen.ts) is a constant: no a^T dy product for it.
  return (isFrozen(b) ? plainWithConstantRight(b)(a) : plainWithGradient(a, b)) as tf.Tensor2D;
}

function plainWithConstantRight(b: tf.Tensor2D): (a: tf.Tensor) => tf.Tensor {
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [a] = args as [tf.Tensor2D];
    return { value: tf.matMul(a, b), gradFunc: (dy) => [tf.tidy(() => tf.matMul(dy as tf.Tensor2D, swapLastTwo(b)))] };
  }) as (a: tf.Tensor) => tf.Tensor;
}
