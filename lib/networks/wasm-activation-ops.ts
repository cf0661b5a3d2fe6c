import * as tf from '@tensorflow/tfjs-core';
import { SimdActivationExports, geluAndSlope, simdActivationModuleBytes } from './wasm-simd-activation';
import { simdModuleOn } from './wasm-simd';
import { overVectors } from './wasm-row-pool';
import { WasmBackendInternals, floatsOf, offsetOf, onWasm, registerWasmKernels, wasmOf } from './wasm-views';

/**
 * GELU and its gradient on wasm as one pass each over the heap (wasm-simd-activation.ts), shared
 * between the row pool's threads; the last size mod 4 values in JavaScript by the same formula.
 */

function simdActivationOf(wasm: WasmBackendInternals): SimdActivationExports | undefined {
  return simdModuleOn<SimdActivationExports>(wasm, 'activation', simdActivationModuleBytes);
}

/** out = f(inputs) over whole vectors by `simd` (a range of bytes of each), the tail by `scalar`. */
function elementwisePass(
  wasm: WasmBackendInternals,
  inputs: tf.TensorInfo[],
  fn: 'gelu' | 'geluGradient',
  scalar: (values: number[]) => number,
): tf.TensorInfo {
  const size = inputs[0].shape.reduce((a, b) => a * b, 1);
  const out = wasm.makeOutput(inputs[0].shape, 'float32');
  const module = simdActivationOf(wasm);
  const addresses = [...inputs, out].map((t) => offsetOf(wasm, t));
  const vectorised = module ? overVectors(wasm, size, addresses, { module: 'activation', fn }, module[fn] as (...args: number[]) => void) : 0;
  const views = inputs.map((t) => floatsOf(wasm, t, 0, size));
  const target = floatsOf(wasm, out, 0, size);
  for (let i = vectorised; i < size; i++) target[i] = scalar(views.map((view) => view[i]));
  return out;
}

const KERNELS: Array<{ name: string; kernelFunc: tf.KernelFunc }> = [
  {
    name: 'FseftGelu',
    kernelFunc: ({ inputs, backend }) => elementwisePass(wasmOf(backend), [(inputs as { x: tf.TensorInfo }).x], 'gelu', ([x]) => geluAndSlope(x).value),
  },
  {
    // dy GELU'(x)
    name: 'FseftGeluGradient',
    kernelFunc: ({ inputs, backend }) => {
      const { dy, x } = inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
      return elementwisePass(wasmOf(backend), [dy, x], 'geluGradient', ([upstream, value]) => upstream * geluAndSlope(value).slope);
    },
  },
];

/** Whether GELU runs as the kernels below for x. */
export function fusedGeluAvailable(x: tf.Tensor): boolean {
  return onWasm() && x.dtype === 'float32' && simdActivationOf(wasmOf(tf.backend())) !== undefined;
}

const geluOp = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  registerWasmKernels(KERNELS);
  save([x]);
  return {
    value: tf.engine().runKernel('FseftGelu', { x }) as tf.Tensor,
    gradFunc: (dy, saved) => tf.engine().runKernel('FseftGeluGradient', { dy: dy as tf.Tensor, x: saved[0] }) as tf.Tensor,
  };
}) as (x: tf.Tensor) => tf.Tensor;

/** GELU (exact form) of a float32 tensor on wasm, one pass forward and one backward. */
export function geluFused(x: tf.Tensor): tf.Tensor {
  return geluOp(x);
}
