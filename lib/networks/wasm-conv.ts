import * as tf from '@tensorflow/tfjs-core';
import { offsetOf, onWasm, registerWasmKernels, wasmOf, WasmBackendInternals } from './wasm-views';
import { relaxedSimdAvailable, simdModuleOn, withScratch } from './wasm-simd';
import { SimdConvolutionExports, simdConvolutionModuleBytes } from './wasm-simd-conv';
import { rowPoolFor } from './wasm-row-pool';

/**
 * The kit's own 3 x 3 x 3 "same" convolution on wasm (wasm-simd-conv.ts), in place of three
 * XNNPACK conv2d per depth tap and the sum of their outputs. The input goes through in slabs of
 * depth slices, each copied once into a zero-padded scratch buffer (one slice of halo on each
 * side), and the output is written where it lies.
 */

/**
 * Floats of a padded slab (tests shrink it to exercise the slabs' seams); whether the kernel is
 * used (FSEFT_DIRECT_CONV=0 keeps XNNPACK's conv2d; on a quiet 2-core machine the kernel ran at
 * 1.2-1.6x the speed of XNNPACK's two-thread conv2d, docs/benchmarks.md); whether it spreads over
 * helper threads; the largest Cin x Cout it takes (beyond, its filter panel outgrows the cache and
 * XNNPACK is faster: 9.7 against 17.9 GFLOP/s at 768 x 768 on 6^3, measured under load); `plain`
 * keeps multiply and add where relaxed SIMD is there (for tests).
 */
export const directConvolutionTuning = { slabFloats: 2 ** 24, enabled: process.env.FSEFT_DIRECT_CONV !== '0', threads: true, maxChannelProduct: 384 * 384, plain: false };

/** Whether the kernel multiplies and adds in one relaxed-SIMD instruction (here and on the helper threads). */
function fusedMultiplyAdd(): boolean {
  return !directConvolutionTuning.plain && relaxedSimdAvailable();
}

function convolutionModule(wasm: WasmBackendInternals, cin: number): SimdConvolutionExports | undefined {
  const fused = fusedMultiplyAdd();
  return simdModuleOn<SimdConvolutionExports>(wasm, `conv3-${cin}-${fused ? 'fused' : 'plain'}`, (shared) => simdConvolutionModuleBytes(cin, fused, shared));
}

/** Copies slices first .. first + count + 1 of x [D, H, W, C] (zero outside) into the padded slab at `slab`. */
function fillPaddedSlab(heap: Uint8Array, source: number, slab: number, first: number, count: number, d: number, h: number, w: number, c: number): void {
  const rowBytes = w * c * 4;
  const paddedRow = (w + 2) * c * 4;
  const paddedPlane = (h + 2) * paddedRow;
  heap.fill(0, slab, slab + (count + 2) * paddedPlane);
  for (let p = 0; p < count + 2; p++) {
    const slice = first - 1 + p;
    if (slice < 0 || slice >= d) continue;
    for (let y = 0; y < h; y++) {
      const from = source + (slice * h + y) * rowBytes;
      heap.copyWithin(slab + p * paddedPlane + (y + 1) * paddedRow + c * 4, from, from + rowBytes);
    }
  }
}

/**
 * The filter [27 Cin, Cout] (row-major floats from `source`) as the kernel reads it: panels of 8
 * output channels, each [27 Cin, 8], then one [27 Cin, 4] for the last 4 where Cout is 4 mod 8.
 */
export function packFilterPanels(filter: Float32Array, rows: number, cout: number, packed: Float32Array): void {
  let at = 0;
  for (let j = 0; j < cout; j += 8) {
    const width = Math.min(8, cout - j);
    for (let k = 0; k < rows; k++) {
      const from = k * cout + j;
      for (let c = 0; c < width; c++) packed[at++] = filter[from + c];
    }
  }
}

const KERNELS: Array<{ name: string; kernelFunc: tf.KernelFunc }> = [
  {
    // x [D, H, W, Cin], filter [3, 3, 3, Cin, Cout] -> [D, H, W, Cout], zero padding 1.
    name: 'FseftConv3x3x3',
    kernelFunc: ({ inputs, backend }) => {
      const wasm = wasmOf(backend);
      const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
      const [d, h, w, cin] = x.shape;
      const cout = filter.shape[4];
      const module = convolutionModule(wasm, cin)!;
      const out = wasm.makeOutput([d, h, w, cout], 'float32');
      const planeFloats = (h + 2) * (w + 2) * cin;
      const perSlab = Math.max(1, Math.min(d, Math.floor(directConvolutionTuning.slabFloats / planeFloats) - 2));
      const source = offsetOf(wasm, x);
      const weights = offsetOf(wasm, filter);
      const target = offsetOf(wasm, out);
      const filterFloats = 27 * cin * cout;
      const pool = directConvolutionTuning.threads ? rowPoolFor(wasm.wasm.wasmMemory, wasm.wasm.tfjs.getThreadsCount?.() ?? 1) : null;
      withScratch(wasm, ((perSlab + 2) * planeFloats + filterFloats) * 4, (slab) => {
        const packed = slab + (perSlab + 2) * planeFloats * 4;
        const heap = wasm.wasm.HEAPU8.buffer;
        packFilterPanels(new Float32Array(heap, weights, filterFloats), 27 * cin, cout, new Float32Array(heap, packed, filterFloats));
        for (let e0 = 0; e0 < d; e0 += perSlab) {
          const count = Math.min(perSlab, d - e0);
          fillPaddedSlab(wasm.wasm.HEAPU8, source, slab, e0, count, d, h, w, cin);
          const output = target + e0 * h * w * cout * 4;
          const own = (row0: number, row1: number) => module.convolveRows(slab, packed, output, h, w, cout, row0, row1);
          if (pool && count * h >= pool.threads) pool.run(cin, fusedMultiplyAdd(), [slab, packed, output, h, w, cout], count * h, own);
          else own(0, count * h);
        }
      });
      return out;
    },
  },
];

/** Whether the direct kernel takes a convolution of x [D, H, W, cin] to `cout` channels: wasm, float32, whole blocks of 4 output channels. */
export function directConvolutionApplies(x: tf.Tensor, cout: number): boolean {
  if (!directConvolutionTuning.enabled || !onWasm() || x.dtype !== 'float32' || x.rank !== 4 || cout % 4 !== 0) return false;
  if (x.shape[3]! * cout > directConvolutionTuning.maxChannelProduct) return false;
  return convolutionModule(wasmOf(tf.backend()), x.shape[3]!) !== undefined;
}

/** conv3d(x, filter, 1, 'same') for x [D, H, W, Cin] on wasm through the kit's SIMD kernel (no gradient of its own). */
export function conv3x3x3Direct(x: tf.Tensor4D, filter: tf.Tensor5D): tf.Tensor4D {
  registerWasmKernels(KERNELS);
  return tf.engine().runKernel('FseftConv3x3x3', { x, filter }) as tf.Tensor4D;
}
