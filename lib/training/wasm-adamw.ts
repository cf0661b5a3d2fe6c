import * as tf from '@tensorflow/tfjs-core';
import { AssembledFunction, ValueType, assembleModule, forEachAddress, localFrame, op } from '../networks/wasm-assembler';
import { simdModuleOn } from '../networks/wasm-simd';
import { floatsOf, offsetOf, onWasm, registerWasmKernels, wasmOf } from '../networks/wasm-views';

/**
 * One AdamW update of a variable as a single pass on wasm: m, v and the parameter are read once
 * and written once, where tfjs's elementwise ops made about a dozen passes and temporaries per
 * variable (1,288 Multiply kernels in a training step at F = 12). 128-bit SIMD over the heap, the
 * last count % 4 values in JavaScript with the same float32 arithmetic.
 *
 *   m' = b1 m + (1 - b1) g,  v' = b2 v + (1 - b2) g^2,
 *   p' = decay p - stepSize m' / (sqrt(v' / c2) + eps),  decay = 1 - lr wd, stepSize = lr / c1.
 */

interface AdamWExports {
  adamw(p: number, g: number, m: number, v: number, pOut: number, mOut: number, vOut: number, bytes: number, b1: number, b1c: number, b2: number, b2c: number, decay: number, stepSize: number, c2inv: number, eps: number): void;
}

type Local = 'p' | 'g' | 'm' | 'v' | 'pOut' | 'mOut' | 'vOut' | 'bytes' | 'b1' | 'b1c' | 'b2' | 'b2c' | 'decay' | 'stepSize' | 'c2inv' | 'eps'
  | 'offset' | 'gv' | 'mv' | 'vv' | 'B1' | 'B1c' | 'B2' | 'B2c' | 'Decay' | 'Step' | 'C2' | 'Eps';

function adamwFunction(): AssembledFunction {
  const params: Array<[Local, ValueType]> = [
    ...(['p', 'g', 'm', 'v', 'pOut', 'mOut', 'vOut', 'bytes'] as Local[]).map((n): [Local, ValueType] => [n, 'i32']),
    ...(['b1', 'b1c', 'b2', 'b2c', 'decay', 'stepSize', 'c2inv', 'eps'] as Local[]).map((n): [Local, ValueType] => [n, 'f32']),
  ];
  const locals: Array<[Local, ValueType]> = [['offset', 'i32'], ...(['gv', 'mv', 'vv', 'B1', 'B1c', 'B2', 'B2c', 'Decay', 'Step', 'C2', 'Eps'] as Local[]).map((n): [Local, ValueType] => [n, 'v128'])];
  const { index: L, params: paramTypes, locals: localTypes } = localFrame(params, locals);
  const at = (base: Local): number[][] => [op.get(L[base]), op.get(L.offset), op.i32Add];
  const splat = (scalar: Local, vector: Local): number[][] => [op.get(L[scalar]), op.f32x4Splat, op.set(L[vector])];
  const body = [
    ...splat('b1', 'B1'), ...splat('b1c', 'B1c'), ...splat('b2', 'B2'), ...splat('b2c', 'B2c'),
    ...splat('decay', 'Decay'), ...splat('stepSize', 'Step'), ...splat('c2inv', 'C2'), ...splat('eps', 'Eps'),
    op.i32(0), op.set(L.offset),
    op.block(
      op.get(L.bytes), op.i32(16), op.i32LtU, op.brIf(0),
      forEachAddress(L.offset, L.bytes, op.i32(16), [
        ...at('g'), op.v128Load(), op.set(L.gv),
        // m' = b1 m + (1 - b1) g
        ...at('mOut'),
        ...at('m'), op.v128Load(), op.get(L.B1), op.f32x4Mul, op.get(L.gv), op.get(L.B1c), op.f32x4Mul, op.f32x4Add, op.tee(L.mv),
        op.v128Store(),
        // v' = b2 v + (1 - b2) g^2
        ...at('vOut'),
        ...at('v'), op.v128Load(), op.get(L.B2), op.f32x4Mul, op.get(L.gv), op.get(L.gv), op.f32x4Mul, op.get(L.B2c), op.f32x4Mul, op.f32x4Add, op.tee(L.vv),
        op.v128Store(),
        // p' = decay p - stepSize m' / (sqrt(v' c2inv) + eps)
        ...at('pOut'),
        ...at('p'), op.v128Load(), op.get(L.Decay), op.f32x4Mul,
        op.get(L.Step), op.get(L.mv), op.f32x4Mul,
        op.get(L.vv), op.get(L.C2), op.f32x4Mul, op.f32x4Sqrt, op.get(L.Eps), op.f32x4Add,
        op.f32x4Div, op.f32x4Sub,
        op.v128Store(),
      ]),
    ),
  ].flat();
  return { name: 'adamw', params: paramTypes, locals: localTypes, body };
}

function adamwModuleBytes(shared: boolean): Uint8Array {
  return assembleModule({ module: 'env', name: 'memory', shared, maximumPages: 65536 }, [adamwFunction()]);
}

export interface AdamWConstants {
  beta1: number;
  beta2: number;
  decay: number;
  stepSize: number;
  correction2: number;
  epsilon: number;
}

const KERNELS: Array<{ name: string; kernelFunc: tf.KernelFunc }> = [
  {
    name: 'FseftAdamW',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const wasm = wasmOf(backend);
      const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', tf.TensorInfo>;
      const c = attrs as unknown as AdamWConstants;
      const size = p.shape.reduce((a, b) => a * b, 1);
      const outputs = [p, m, v].map((t) => wasm.makeOutput(t.shape, 'float32'));
      const simd = simdModuleOn<AdamWExports>(wasm, 'adamw', adamwModuleBytes)!;
      const vectorised = size - (size % 4);
      const f = Math.fround;
      const constants = [c.beta1, 1 - c.beta1, c.beta2, 1 - c.beta2, c.decay, c.stepSize, 1 / c.correction2, c.epsilon].map(f);
      const [b1, b1c, b2, b2c, decay, stepSize, c2inv, eps] = constants;
      simd.adamw(...([p, g, m, v, ...outputs].map((t) => offsetOf(wasm, t)) as [number, number, number, number, number, number, number]), vectorised * 4, b1, b1c, b2, b2c, decay, stepSize, c2inv, eps);
      if (vectorised < size) {
        const [pv, gv, mv, vv, pOut, mOut, vOut] = [p, g, m, v, ...outputs].map((t) => floatsOf(wasm, t, 0, size));
        for (let i = vectorised; i < size; i++) {
          const mNew = f(f(b1 * mv[i]) + f(gv[i] * b1c));
          const vNew = f(f(b2 * vv[i]) + f(f(gv[i] * gv[i]) * b2c));
          mOut[i] = mNew;
          vOut[i] = vNew;
          pOut[i] = f(f(pv[i] * decay) - f(f(stepSize * mNew) / f(f(Math.sqrt(f(vNew * c2inv))) + eps)));
        }
      }
      return outputs;
    },
  },
];

/** Whether the fused update serves this variable: on wasm, float32, where the SIMD module instantiates. */
export function fusedAdamWAvailable(variable: tf.Tensor): boolean {
  return onWasm() && variable.dtype === 'float32' && simdModuleOn(wasmOf(tf.backend()), 'adamw', adamwModuleBytes) !== undefined;
}

/** The updated parameter, m and v as new tensors (the inputs are left as they are). */
export function adamwFused(p: tf.Tensor, g: tf.Tensor, m: tf.Tensor, v: tf.Tensor, constants: AdamWConstants): [tf.Tensor, tf.Tensor, tf.Tensor] {
  registerWasmKernels(KERNELS);
  return tf.engine().runKernel('FseftAdamW', { p, g, m, v }, constants as unknown as tf.NamedAttrMap) as unknown as [tf.Tensor, tf.Tensor, tf.Tensor];
}
