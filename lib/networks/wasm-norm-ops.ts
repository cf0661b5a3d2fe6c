import * as tf from '@tensorflow/tfjs-core';
import { SimdNormExports, columnSums, simdNormModuleBytes } from './wasm-simd-norm';
import { heapF32, heapF64, simdModuleOn, withScratch } from './wasm-simd';
import { WasmBackendInternals, floatsOf, offsetOf, onWasm, registerWasmKernels, wasmOf } from './wasm-views';
import { PoolJob, overRows, overVectors, sharesFor } from './wasm-row-pool';

/**
 * Instance norm (optionally followed by a leaky ReLU) and their gradients on wasm as passes over
 * the heap, each making only its output. With tfjs-wasm's elementwise ops a norm of a 96^3 x 48
 * volume made five volume-sized temporaries in the forward (Sub, Square, Multiply, the activation)
 * and six in the backward (Greater, Cast, Multiply, Div, Select...), 162 MiB each: the peak heap of
 * a full-resolution training step, and a pass over memory apiece. Statistics accumulate in
 * float64. A leaky ReLU of slope 1 is the identity, which is how the plain norm runs here.
 * Where the channels come in fours, the passes are the SIMD functions of `wasm-simd-norm`, run on
 * tfjs-wasm's memory and shared between the row pool's threads; otherwise JavaScript loops over
 * heap views.
 */

/** Per-column sums of `shares` accumulator blocks of `columns` columns each, added in share order. */
function sharedColumnSums(wasm: WasmBackendInternals, scratch: number, shares: number, columns: number): { first: Float64Array; second: Float64Array } {
  const total = columnSums(heapF64(wasm, scratch, 2 * columns), columns);
  for (let share = 1; share < shares; share++) {
    const part = columnSums(heapF64(wasm, scratch + share * columns * 16, 2 * columns), columns);
    for (let c = 0; c < columns; c++) {
      total.first[c] += part.first[c];
      total.second[c] += part.second[c];
    }
  }
  return total;
}

const NORM_JOB = (fn: PoolJob['fn'], floats: number): PoolJob => ({ module: 'norm', fn, floats });

function simdNormOf(wasm: WasmBackendInternals): SimdNormExports | undefined {
  return simdModuleOn<SimdNormExports>(wasm, 'norm', simdNormModuleBytes);
}

/**
 * An elementwise pass over two float32 tensors of one shape into a new one: the SIMD function
 * `simd` over whole vectors where the module instantiates, `value` in JavaScript for the rest.
 */
function pairwisePass(wasm: WasmBackendInternals, first: tf.TensorInfo, second: tf.TensorInfo, slope: number, simd: 'leakyGradient' | 'addLeaky', value: (first: number, second: number) => number): tf.TensorInfo {
  const size = first.shape.reduce((x, y) => x * y, 1);
  const out = wasm.makeOutput(first.shape, 'float32');
  const module = simdNormOf(wasm);
  // Argument 4, the slope, is a float.
  const vectorised = module ? overVectors(wasm, size, [first, second, out].map((t) => offsetOf(wasm, t)), NORM_JOB(simd, 1 << 4), module[simd], [slope]) : 0;
  const a = floatsOf(wasm, first, 0, size);
  const b = floatsOf(wasm, second, 0, size);
  const target = floatsOf(wasm, out, 0, size);
  for (let i = vectorised; i < size; i++) target[i] = value(a[i], b[i]);
  return out;
}

const KERNELS: Array<{ name: string; kernelFunc: tf.KernelFunc }> = [
  {
    // z = lrelu((x - mean) rstd) per column of x [R, C], rstd = 1 / sqrt(var + eps) -> [z, rstd].
    name: 'FseftStandardizeRows',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const wasm = wasmOf(backend);
      const { x } = inputs as { x: tf.TensorInfo };
      const { slope, epsilon } = attrs as unknown as { slope: number; epsilon: number };
      const [rows, columns] = x.shape;
      const size = rows * columns;
      // Outputs first: making one may grow the heap, which replaces the buffer under any view.
      const out = wasm.makeOutput([rows, columns], 'float32');
      const rstdOut = wasm.makeOutput([columns], 'float32');
      const simd = columns % 4 === 0 ? simdNormOf(wasm) : undefined;
      if (simd) {
        const shares = sharesFor(wasm, rows, columns);
        // Accumulators of each share (16 bytes a column), then mean and scale as float32.
        withScratch(wasm, columns * (16 * shares + 8), (scratch) => {
          heapF64(wasm, scratch, 2 * columns * shares).fill(0);
          const [source, target] = [offsetOf(wasm, x), offsetOf(wasm, out)];
          const accumulators = (share: number) => scratch + share * columns * 16;
          overRows(wasm, rows, columns, NORM_JOB('normStats', 1 << 5), (r0, r1, share) => [source, r0, r1, columns, accumulators(share), 0, 0], simd.normStats);
          const { first: sum, second: squares } = sharedColumnSums(wasm, scratch, shares, columns);
          const paramsAt = scratch + columns * 16 * shares;
          const params = heapF32(wasm, paramsAt, 2 * columns);
          const rstd = floatsOf(wasm, rstdOut, 0, columns);
          for (let c = 0; c < columns; c++) {
            const mean = sum[c] / rows;
            params[c] = mean;
            params[columns + c] = rstd[c] = 1 / Math.sqrt(Math.max(0, squares[c] / rows - mean * mean) + epsilon);
          }
          overRows(wasm, rows, columns, NORM_JOB('normalize', 1 << 6), (r0, r1) => [source, target, r0, r1, columns, paramsAt, slope], simd.normalize);
        });
        return [out, rstdOut];
      }
      const source = floatsOf(wasm, x, 0, size);
      const target = floatsOf(wasm, out, 0, size);
      const sum = new Float64Array(columns);
      const squares = new Float64Array(columns);
      for (let i = 0; i < size; ) {
        for (let c = 0; c < columns; c++, i++) {
          const v = source[i];
          sum[c] += v;
          squares[c] += v * v;
        }
      }
      // E[x^2] - E[x]^2 in float64 loses about log10(mean^2 / var) of its 16 digits: harmless for
      // float32 activations.
      const mean = new Float64Array(columns);
      const rstd = floatsOf(wasm, rstdOut, 0, columns);
      const scale = new Float64Array(columns);
      for (let c = 0; c < columns; c++) {
        mean[c] = sum[c] / rows;
        const variance = Math.max(0, squares[c] / rows - mean[c] * mean[c]);
        scale[c] = rstd[c] = 1 / Math.sqrt(variance + epsilon);
      }
      const negativeExtra = slope - 1;
      for (let i = 0; i < size; ) {
        for (let c = 0; c < columns; c++, i++) {
          const y = (source[i] - mean[c]) * scale[c];
          target[i] = y * (1 + negativeExtra * +(y <= 0));
        }
      }
      return [out, rstdOut];
    },
  },
  {
    // The gradient of the above from its output z: with g = dz lrelu'(y) and y = lrelu^-1(z),
    // dx = rstd (g - mean(g) - y mean(g y)) per column. g y = dz z on either side of zero.
    name: 'FseftStandardizeRowsGradient',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const wasm = wasmOf(backend);
      const { dz, z, rstd } = inputs as { dz: tf.TensorInfo; z: tf.TensorInfo; rstd: tf.TensorInfo };
      const { slope } = attrs as unknown as { slope: number };
      const [rows, columns] = z.shape;
      const size = rows * columns;
      const out = wasm.makeOutput([rows, columns], 'float32');
      const simd = columns % 4 === 0 ? simdNormOf(wasm) : undefined;
      if (simd) {
        const shares = sharesFor(wasm, rows, columns);
        withScratch(wasm, columns * (16 * shares + 12), (scratch) => {
          heapF64(wasm, scratch, 2 * columns * shares).fill(0);
          const [upstream, output, target] = [offsetOf(wasm, dz), offsetOf(wasm, z), offsetOf(wasm, out)];
          const accumulators = (share: number) => scratch + share * columns * 16;
          overRows(wasm, rows, columns, NORM_JOB('gradientStats', 1 << 5), (r0, r1, share) => [upstream, r0, r1, columns, accumulators(share), slope, output], simd.gradientStats);
          const { first: sumG, second: sumGy } = sharedColumnSums(wasm, scratch, shares, columns);
          const paramsAt = scratch + columns * 16 * shares;
          const params = heapF32(wasm, paramsAt, 3 * columns);
          params.set(floatsOf(wasm, rstd, 0, columns));
          for (let c = 0; c < columns; c++) {
            params[columns + c] = sumG[c] / rows;
            params[2 * columns + c] = sumGy[c] / rows;
          }
          overRows(wasm, rows, columns, NORM_JOB('normGradient', (1 << 7) | (1 << 8)), (r0, r1) => [upstream, output, target, r0, r1, columns, paramsAt, slope, 1 / slope], simd.normGradient);
        });
        return out;
      }
      const upstream = floatsOf(wasm, dz, 0, size);
      const output = floatsOf(wasm, z, 0, size);
      const target = floatsOf(wasm, out, 0, size);
      const scales = floatsOf(wasm, rstd, 0, columns);
      const sumG = new Float64Array(columns);
      const sumGy = new Float64Array(columns);
      // Branch-free selects (a factor times a comparison as 0 or 1): with the signs of a volume's
      // activations mixed, the branches mispredict and the passes take three times as long.
      const gExtra = slope - 1;
      const yExtra = 1 / slope - 1;
      for (let i = 0; i < size; ) {
        for (let c = 0; c < columns; c++, i++) {
          const d = upstream[i];
          const v = output[i];
          sumG[c] += d * (1 + gExtra * +(v <= 0));
          sumGy[c] += d * v;
        }
      }
      const meanG = Float64Array.from(sumG, (s) => s / rows);
      const meanGy = Float64Array.from(sumGy, (s) => s / rows);
      const rstdOf = Float64Array.from(scales);
      for (let i = 0; i < size; ) {
        for (let c = 0; c < columns; c++, i++) {
          const d = upstream[i];
          const v = output[i];
          const negative = +(v <= 0);
          target[i] = rstdOf[c] * (d * (1 + gExtra * negative) - meanG[c] - v * (1 + yExtra * negative) * meanGy[c]);
        }
      }
      return out;
    },
  },
  {
    // where(z > 0, dy, slope dy): leaky ReLU's gradient from its output.
    name: 'FseftLeakyReluGradient',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { dy, z } = inputs as { dy: tf.TensorInfo; z: tf.TensorInfo };
      const { slope } = attrs as unknown as { slope: number };
      const extra = slope - 1;
      return pairwisePass(wasmOf(backend), dy, z, slope, 'leakyGradient', (upstream, output) => upstream * (1 + extra * +(output <= 0)));
    },
  },
  {
    // lrelu(a + b) for a and b of one shape, in one pass (the residual sum of a UNETR block).
    name: 'FseftAddLeakyRelu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { slope } = attrs as unknown as { slope: number };
      return pairwisePass(wasmOf(backend), a, b, slope, 'addLeaky', (first, second) => {
        const sum = first + second;
        return sum > 0 ? sum : slope * sum;
      });
    },
  },
];

/** The norm's gradient recovers the activation's input from its output, which a slope of 0 loses. */
function positiveSlope(slope: number): void {
  if (!(slope > 0)) throw new Error(`fused instance norm: leaky ReLU slope ${slope} must be positive`);
}

/** Whether the fused kernels below serve tensors of this dtype on the current backend. */
export function fusedNormAvailable(x: tf.Tensor): boolean {
  return onWasm() && x.dtype === 'float32';
}

/** Whether a norm over `columns` channels runs as SIMD passes on the current backend. */
export function simdNormActive(columns: number): boolean {
  return onWasm() && columns % 4 === 0 && simdNormOf(wasmOf(tf.backend())) !== undefined;
}

/** lrelu(standardize(x)) per column of x [R, C] (slope 1: the plain norm) and 1 / std. Wasm only, no gradient. */
export function standardizeRowsFused(x: tf.Tensor2D, slope: number, epsilon: number): { z: tf.Tensor2D; rstd: tf.Tensor1D } {
  registerWasmKernels(KERNELS);
  positiveSlope(slope);
  const [z, rstd] = tf.engine().runKernel('FseftStandardizeRows', { x }, { slope, epsilon }) as [tf.Tensor2D, tf.Tensor1D];
  return { z, rstd };
}

/** The gradient of standardizeRowsFused with respect to x, from dz, its output z and rstd. Wasm only. */
export function standardizeRowsGradientFused(dz: tf.Tensor2D, z: tf.Tensor2D, rstd: tf.Tensor1D, slope: number): tf.Tensor2D {
  registerWasmKernels(KERNELS);
  positiveSlope(slope);
  return tf.engine().runKernel('FseftStandardizeRowsGradient', { dz, z, rstd }, { slope }) as tf.Tensor2D;
}

/** where(z > 0, dy, slope dy), z the leaky ReLU's output. Wasm only. */
export function leakyReluGradientFused(dy: tf.Tensor, z: tf.Tensor, slope: number): tf.Tensor {
  registerWasmKernels(KERNELS);
  return tf.engine().runKernel('FseftLeakyReluGradient', { dy, z }, { slope }) as tf.Tensor;
}

/** lrelu(a + b), a and b float32 of one shape, in one pass. Wasm only, no gradient of its own. */
export function addLeakyReluFused(a: tf.Tensor, b: tf.Tensor, slope: number): tf.Tensor {
  registerWasmKernels(KERNELS);
  return tf.engine().runKernel('FseftAddLeakyRelu', { a, b }, { slope }) as tf.Tensor;
}

/** a + b, float32 of one shape, in one pass shared between the threads (addLeaky of slope 1, the identity). Wasm only, no gradient. */
export function addPairFused(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return addLeakyReluFused(a, b, 1);
}
