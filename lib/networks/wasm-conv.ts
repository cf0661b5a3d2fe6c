import * as tf from '@tensorflow/tfjs-core';
import { offsetOf, onWasm, registerWasmKernels, wasmOf, WasmBackendInternals } from './wasm-views';
import { relaxedSimdAvailable, simdModuleOn, withScratch } from './wasm-simd';
import { SimdConvolutionExports, SimdFilterGradientExports, SimdWinogradExports, WinogradTile, simdConvolutionModuleBytes } from './wasm-simd-conv';
import { PoolJob, RowPool, rowPoolOf } from './wasm-row-pool';

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
export const directConvolutionTuning = {
  slabFloats: 2 ** 24,
  enabled: process.env.FSEFT_DIRECT_CONV !== '0',
  threads: true,
  maxChannelProduct: 384 * 384,
  plain: false,
  /** Winograd along W where Cin is a multiple of 4 (FSEFT_WINOGRAD=0 for the direct loop). */
  winograd: process.env.FSEFT_WINOGRAD !== '0',
  /**
   * Outputs per Winograd tile: F(4, 3) (13.5 Cin multiply-adds per output value and channel) or
   * F(2, 3) (18 Cin); FSEFT_WINOGRAD_TILE=2 for the smaller tile.
   */
  winogradTile: (process.env.FSEFT_WINOGRAD_TILE === '2' ? 2 : 4) as 2 | 4,
};

/** Whether the kernel multiplies and adds in one relaxed-SIMD instruction (here and on the helper threads). */
function fusedMultiplyAdd(): boolean {
  return !directConvolutionTuning.plain && relaxedSimdAvailable();
}

/** Whether a convolution with `cin` input channels goes through the Winograd module. */
function usesWinograd(cin: number): boolean {
  return directConvolutionTuning.winograd && cin % 4 === 0;
}

/** Which loop the kernel runs for `cin` input channels (where it takes the convolution at all). */
export function directConvolutionMethod(cin: number): 'winograd' | 'direct' {
  return usesWinograd(cin) ? 'winograd' : 'direct';
}

/** The Winograd tile a convolution with `cin` input channels uses, 0 for the direct loop. */
function winogradTileFor(cin: number): WinogradTile {
  return usesWinograd(cin) ? directConvolutionTuning.winogradTile : 0;
}

function convolutionModule(wasm: WasmBackendInternals, cin: number): SimdConvolutionExports | undefined {
  const fused = fusedMultiplyAdd();
  const winograd = winogradTileFor(cin);
  const name = `conv3-${cin}-${fused ? 'fused' : 'plain'}-${winograd ? `winograd${winograd}` : 'direct'}`;
  return simdModuleOn<SimdConvolutionExports>(wasm, name, (shared) => simdConvolutionModuleBytes(cin, fused, shared, winograd));
}

/**
 * Copies slices first .. first + count + 1 of x [D, H, W, C] (zero outside) into the padded slab at
 * `slab`, whose rows hold `paddedWidth` >= W + 2 voxels (the first and those past W + 1 zero).
 */
function fillPaddedSlab(heap: Uint8Array, source: number, slab: number, first: number, count: number, d: number, h: number, w: number, c: number, paddedWidth = w + 2): void {
  const rowBytes = w * c * 4;
  const paddedRow = paddedWidth * c * 4;
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

/**
 * The components of three kw taps g0, g1, g2 (G g): for F(2, 3) g0, (g0 + g1 + g2) / 2,
 * (g0 - g1 + g2) / 2, g2; for F(4, 3) g0 / 4, -(g0 + g1 + g2) / 6, -(g0 - g1 + g2) / 6,
 * g0 / 24 + g1 / 12 + g2 / 6, g0 / 24 - g1 / 12 + g2 / 6, g2.
 */
function winogradComponent(tile: 2 | 4, k: number, g0: number, g1: number, g2: number): number {
  if (tile === 2) return k === 0 ? g0 : k === 1 ? (g0 + g1 + g2) / 2 : k === 2 ? (g0 - g1 + g2) / 2 : g2;
  switch (k) {
    case 0: return g0 / 4;
    case 1: return -(g0 + g1 + g2) / 6;
    case 2: return -(g0 - g1 + g2) / 6;
    case 3: return g0 / 24 + g1 / 12 + g2 / 6;
    case 4: return g0 / 24 - g1 / 12 + g2 / 6;
    default: return g2;
  }
}

/**
 * The filter [3, 3, 3, Cin, Cout] (row-major floats) as the Winograd module reads it: for each of
 * the tile + 2 components, [9 Cin, Cout] (rows (kd, kh, c)) from the three kw taps
 * (winogradComponent), then packed in panels (packFilterPanels), one component after another.
 */
export function packWinogradFilter(filter: Float32Array, cin: number, cout: number, packed: Float32Array, tile: 2 | 4 = 2): void {
  const rows = 9 * cin;
  const component = new Float32Array(rows * cout);
  for (let k = 0; k < tile + 2; k++) {
    for (let tapRow = 0; tapRow < 9; tapRow++) {
      for (let c = 0; c < cin; c++) {
        const g = (tapRow * 3 * cin + c) * cout;
        const at = (tapRow * cin + c) * cout;
        for (let o = 0; o < cout; o++) component[at + o] = winogradComponent(tile, k, filter[g + o], filter[g + cin * cout + o], filter[g + 2 * cin * cout + o]);
      }
    }
    packFilterPanels(component, rows, cout, packed.subarray(k * rows * cout, (k + 1) * rows * cout));
  }
}

/** Runs job.fn(...args, row0, row1) over rows (or tiles) [0, rows) on the pool where there is one and enough of them, else on this thread. */
function runRows(pool: RowPool | null, job: PoolJob, args: number[], rows: number, own: (row0: number, row1: number) => void): void {
  if (pool && rows >= pool.threads) pool.run(job, rows, (row0, row1) => [...args, row0, row1], own);
  else own(0, rows);
}

interface ConvolutionCall {
  wasm: WasmBackendInternals;
  shape: [number, number, number, number];
  cout: number;
  source: number;
  /** The filter as [27 Cin, Cout] floats, asked for once the scratch is allocated (which may grow the heap and move views). */
  filter: () => Float32Array;
  target: number;
  pool: RowPool | null;
}

/**
 * The filter of the input gradient, G[t, b, a] = F[26 - t, a, b], from F [27, A, B]: every tap
 * reversed and the two channel axes swapped, as [27 B, A] floats.
 */
export function flippedTransposedFilter(filter: Float32Array, a: number, b: number): Float32Array {
  const out = new Float32Array(27 * a * b);
  for (let t = 0; t < 27; t++) {
    const from = (26 - t) * a * b;
    for (let j = 0; j < b; j++) {
      const at = (t * b + j) * a;
      for (let i = 0; i < a; i++) out[at + i] = filter[from + i * b + j];
    }
  }
  return out;
}

/** Depth slices per padded slab of (h + 2) (w + 2) cin floats a plane, one slice of halo on each side, within the slab budget. */
function slicesPerSlab(d: number, planeFloats: number): number {
  return Math.max(1, Math.min(d, Math.floor(directConvolutionTuning.slabFloats / planeFloats) - 2));
}

/** The direct loop: per slab of depth slices, the padded slab, then every output row. */
function convolveDirect({ wasm, shape: [d, h, w, cin], cout, source, filter, target, pool }: ConvolutionCall): void {
  const module = convolutionModule(wasm, cin)!;
  const planeFloats = (h + 2) * (w + 2) * cin;
  const perSlab = slicesPerSlab(d, planeFloats);
  const filterFloats = 27 * cin * cout;
  const job: PoolJob = { module: 'conv', cin, fused: fusedMultiplyAdd(), winograd: 0, fn: 'convolveRows' };
  withScratch(wasm, ((perSlab + 2) * planeFloats + filterFloats) * 4, (slab) => {
    const packed = slab + (perSlab + 2) * planeFloats * 4;
    const heap = wasm.wasm.HEAPU8.buffer;
    packFilterPanels(filter(), 27 * cin, cout, new Float32Array(heap, packed, filterFloats));
    for (let e0 = 0; e0 < d; e0 += perSlab) {
      const count = Math.min(perSlab, d - e0);
      fillPaddedSlab(wasm.wasm.HEAPU8, source, slab, e0, count, d, h, w, cin);
      const output = target + e0 * h * w * cout * 4;
      runRows(pool, job, [slab, packed, output, h, w, cout], count * h, (row0, row1) => module.convolveRows(slab, packed, output, h, w, cout, row0, row1));
    }
  });
}

/**
 * Winograd F(2, 3) or F(4, 3) along W: per slab, the padded slab (tile x tiles + 2 voxels a row),
 * its tile + 2 components (u), each component's product with its filter over the 9 tap rows (m),
 * and the output from the products: 18 Cin (F(2, 3)) or 13.5 Cin (F(4, 3)) multiply-adds per
 * output value and channel instead of 27.
 */
function convolveWinograd({ wasm, shape: [d, h, w, cin], cout, source, filter, target, pool }: ConvolutionCall): void {
  const module = convolutionModule(wasm, cin)! as SimdWinogradExports;
  const tile = directConvolutionTuning.winogradTile;
  const components = tile + 2;
  const tiles = Math.ceil(w / tile);
  const paddedWidth = tile * tiles + 2;
  const inPlane = (h + 2) * paddedWidth * cin;
  const uPlane = (h + 2) * tiles * cin;
  const mPlane = h * tiles * cout;
  const perSlice = inPlane + components * (uPlane + mPlane);
  const perSlab = Math.max(1, Math.min(d, Math.floor((directConvolutionTuning.slabFloats - 2 * (inPlane + components * uPlane)) / perSlice)));
  const componentFilter = 9 * cin * cout;
  const uComponent = (perSlab + 2) * uPlane * 4;
  const mComponent = perSlab * mPlane * 4;
  const fused = fusedMultiplyAdd();
  const job = (fn: PoolJob['fn']): PoolJob => ({ module: 'conv', cin, fused, winograd: tile, fn });
  withScratch(wasm, (perSlab + 2) * inPlane * 4 + components * (uComponent + mComponent + componentFilter * 4), (slab) => {
    const u = slab + (perSlab + 2) * inPlane * 4;
    const m = u + components * uComponent;
    const packed = m + components * mComponent;
    const heap = wasm.wasm.HEAPU8.buffer;
    packWinogradFilter(filter(), cin, cout, new Float32Array(heap, packed, components * componentFilter), tile);
    for (let e0 = 0; e0 < d; e0 += perSlab) {
      const count = Math.min(perSlab, d - e0);
      fillPaddedSlab(wasm.wasm.HEAPU8, source, slab, e0, count, d, h, w, cin, paddedWidth);
      runRows(pool, job('winogradInput'), [slab, u, tiles, uComponent], (count + 2) * (h + 2), (r0, r1) => module.winogradInput(slab, u, tiles, uComponent, r0, r1));
      for (let k = 0; k < components; k++) {
        const args = [u + k * uComponent, packed + k * componentFilter * 4, m + k * mComponent, h, tiles, cout];
        runRows(pool, job('convolveRows'), args, count * h, (r0, r1) => module.convolveRows(args[0], args[1], args[2], h, tiles, cout, r0, r1));
      }
      const output = target + e0 * h * w * cout * 4;
      runRows(pool, job('winogradOutput'), [m, output, w, tiles, cout, mComponent], count * h, (r0, r1) => module.winogradOutput(m, output, w, tiles, cout, mComponent, r0, r1));
    }
  });
}

/** Floats of dy in one group of output rows of the filter gradient (64 KB): each tile rereads the group's dy from cache. */
const FILTER_GRADIENT_GROUP_FLOATS = 2 ** 14;

/**
 * dW [27 Cin, Cout] of a 3 x 3 x 3 "same" convolution from x [D, H, W, Cin] and dy [D, H, W, Cout]:
 * per slab of depth slices, the padded slab, then every tile of dW over the slab's voxels, the
 * tiles split between the threads (wasm-simd-conv.ts filterGradientFunction). dW starts at zero.
 */
function filterGradientDirect(wasm: WasmBackendInternals, [d, h, w, cin]: number[], cout: number, source: number, gradient: number, target: number, pool: RowPool | null): void {
  const module = convolutionModule(wasm, cin)! as unknown as SimdFilterGradientExports;
  const planeFloats = (h + 2) * (w + 2) * cin;
  const perSlab = slicesPerSlab(d, planeFloats);
  const tiles = 9 * (cin / 2) * Math.ceil(cout / 8);
  const groupRows = Math.max(1, Math.floor(FILTER_GRADIENT_GROUP_FLOATS / (w * cout)));
  const job: PoolJob = { module: 'conv', cin, fused: fusedMultiplyAdd(), winograd: winogradTileFor(cin), fn: 'filterGradientRows' };
  new Float32Array(wasm.wasm.HEAPU8.buffer, target, 27 * cin * cout).fill(0);
  withScratch(wasm, (perSlab + 2) * planeFloats * 4, (slab) => {
    for (let e0 = 0; e0 < d; e0 += perSlab) {
      const count = Math.min(perSlab, d - e0);
      fillPaddedSlab(wasm.wasm.HEAPU8, source, slab, e0, count, d, h, w, cin);
      const dy = gradient + e0 * h * w * cout * 4;
      runRows(pool, job, [slab, dy, target, h, w, cout, groupRows, count * h], tiles, (t0, t1) => module.filterGradientRows(slab, dy, target, h, w, cout, groupRows, count * h, t0, t1));
    }
  });
}

const KERNELS: Array<{ name: string; kernelFunc: tf.KernelFunc }> = [
  {
    // x [D, H, W, Cin], filter [3, 3, 3, Cin, Cout] -> [D, H, W, Cout], zero padding 1; with
    // flippedTransposed the filter is [3, 3, 3, Cout, Cin], used with its taps reversed and its
    // channel axes swapped (the input gradient of a convolution by it).
    name: 'FseftConv3x3x3',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const wasm = wasmOf(backend);
      const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
      const { flippedTransposed } = attrs as unknown as { flippedTransposed: boolean };
      const [d, h, w, cin] = x.shape;
      const cout = filter.shape[flippedTransposed ? 3 : 4];
      const out = wasm.makeOutput([d, h, w, cout], 'float32');
      const pool = directConvolutionTuning.threads ? rowPoolOf(wasm) : null;
      const stored = () => new Float32Array(wasm.wasm.HEAPU8.buffer, offsetOf(wasm, filter), 27 * cin * cout);
      const weights = flippedTransposed ? () => flippedTransposedFilter(stored(), cout, cin) : stored;
      const call: ConvolutionCall = { wasm, shape: [d, h, w, cin], cout, source: offsetOf(wasm, x), filter: weights, target: offsetOf(wasm, out), pool };
      if (usesWinograd(cin)) convolveWinograd(call);
      else convolveDirect(call);
      return out;
    },
  },
  {
    // x [D, H, W, Cin], dy [D, H, W, Cout] -> dW [3, 3, 3, Cin, Cout] of conv3d(x, W, 1, 'same').
    name: 'FseftConv3x3x3FilterGradient',
    kernelFunc: ({ inputs, backend }) => {
      const wasm = wasmOf(backend);
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const cout = dy.shape[3];
      const out = wasm.makeOutput([3, 3, 3, x.shape[3], cout], 'float32');
      const pool = directConvolutionTuning.threads ? rowPoolOf(wasm) : null;
      filterGradientDirect(wasm, x.shape, cout, offsetOf(wasm, x), offsetOf(wasm, dy), offsetOf(wasm, out), pool);
      return out;
    },
  },
];

/** Whether the kit's kernel computes the filter gradient of a convolution of x [D, H, W, cin] to `cout` channels: as the kernel itself, with Cin even. */
export function directFilterGradientApplies(x: tf.Tensor, cout: number): boolean {
  return x.rank === 4 && x.shape[3]! % 2 === 0 && directConvolutionApplies(x, cout);
}

/** The filter gradient [3, 3, 3, Cin, Cout] of conv3d(x, W, 1, 'same') for x [D, H, W, Cin] and its output's gradient dy [D, H, W, Cout]. */
export function conv3x3x3FilterGradientDirect(x: tf.Tensor4D, dy: tf.Tensor4D): tf.Tensor5D {
  registerWasmKernels(KERNELS);
  return tf.engine().runKernel('FseftConv3x3x3FilterGradient', { x, dy }) as tf.Tensor5D;
}

/** Whether the direct kernel takes a convolution of x [D, H, W, cin] to `cout` channels: wasm, float32, whole blocks of 4 output channels. */
export function directConvolutionApplies(x: tf.Tensor, cout: number): boolean {
  if (!directConvolutionTuning.enabled || !onWasm() || x.dtype !== 'float32' || x.rank !== 4 || cout % 4 !== 0) return false;
  if (x.shape[3]! * cout > directConvolutionTuning.maxChannelProduct) return false;
  return convolutionModule(wasmOf(tf.backend()), x.shape[3]!) !== undefined;
}

/**
 * conv3d(x, filter, 1, 'same') for x [D, H, W, Cin] on wasm through the kit's SIMD kernel (no
 * gradient of its own). With `flippedTransposed`, filter is [3, 3, 3, Cout, Cin] and the result is
 * the input gradient of conv3d by it for an output gradient x (its transposed convolution).
 */
export function conv3x3x3Direct(x: tf.Tensor4D, filter: tf.Tensor5D, flippedTransposed = false): tf.Tensor4D {
  registerWasmKernels(KERNELS);
  return tf.engine().runKernel('FseftConv3x3x3', { x, filter }, { flippedTransposed } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}
