import * as tf from '@tensorflow/tfjs-core';
import { AssembledFunction, ValueType, assembleModule, forEachAddress, localFrame, op } from './wasm-assembler';
import { simdModuleOn } from './wasm-simd';
import { offsetOf, onWasm, registerWasmKernels, wasmOf } from './wasm-views';

/**
 * Softmax's backward pass, dS = P (dP - rowsum(dP P)) over the last axis, as one SIMD pass per row
 * on wasm: tfjs's ops made three temporaries the size of window attention's score tensor (Multiply,
 * Sum, Sub, Multiply) and read it five times.
 */

type Local = 'p' | 'dp' | 'out' | 'rows' | 'n' | 'row' | 'end' | 'rowBytes' | 'vectorBytes' | 'dpDelta' | 'outDelta' | 'o' | 'dot' | 'acc' | 'dotV';

function softmaxBackwardFunction(): AssembledFunction {
  const params: Array<[Local, ValueType]> = [['p', 'i32'], ['dp', 'i32'], ['out', 'i32'], ['rows', 'i32'], ['n', 'i32']];
  const locals: Array<[Local, ValueType]> = [
    ['row', 'i32'], ['end', 'i32'], ['rowBytes', 'i32'], ['vectorBytes', 'i32'], ['dpDelta', 'i32'], ['outDelta', 'i32'], ['o', 'i32'],
    ['dot', 'f32'], ['acc', 'v128'], ['dotV', 'v128'],
  ];
  const { index: L, params: paramTypes, locals: localTypes } = localFrame(params, locals);
  const here = [op.get(L.row), op.get(L.o), op.i32Add];
  /** A loop over byte offsets o from `from` while o < `to`, by `step`, skipped when empty. */
  const offsets = (from: number[][], to: Local, step: number, body: number[][]) => [
    ...from, op.set(L.o),
    op.block(op.get(L.o), op.get(L[to]), op.i32GeU, op.brIf(0), forEachAddress(L.o, L[to], op.i32(step), body)),
  ];
  const body = [
    op.get(L.n), op.i32(4), op.i32Mul, op.set(L.rowBytes),
    op.get(L.n), op.i32(-4), op.i32And, op.i32(4), op.i32Mul, op.set(L.vectorBytes),
    op.get(L.dp), op.get(L.p), op.i32Sub, op.set(L.dpDelta),
    op.get(L.out), op.get(L.p), op.i32Sub, op.set(L.outDelta),
    op.get(L.p), op.set(L.row),
    op.get(L.p), op.get(L.rows), op.get(L.rowBytes), op.i32Mul, op.i32Add, op.set(L.end),
    op.block(
      op.get(L.row), op.get(L.end), op.i32GeU, op.brIf(0),
      forEachAddress(L.row, L.end, op.get(L.rowBytes), [
        op.v128Zero, op.set(L.acc),
        ...offsets([op.i32(0)], 'vectorBytes', 16, [
          op.get(L.acc), ...here, op.v128Load(), ...here, op.get(L.dpDelta), op.i32Add, op.v128Load(), op.f32x4Mul, op.f32x4Add, op.set(L.acc),
        ]),
        op.get(L.acc), op.f32x4ExtractLane(0), op.get(L.acc), op.f32x4ExtractLane(1), op.f32Add,
        op.get(L.acc), op.f32x4ExtractLane(2), op.get(L.acc), op.f32x4ExtractLane(3), op.f32Add, op.f32Add, op.set(L.dot),
        ...offsets([op.get(L.vectorBytes)], 'rowBytes', 4, [
          op.get(L.dot), ...here, op.f32Load(), ...here, op.get(L.dpDelta), op.i32Add, op.f32Load(), op.f32Mul, op.f32Add, op.set(L.dot),
        ]),
        op.get(L.dot), op.f32x4Splat, op.set(L.dotV),
        ...offsets([op.i32(0)], 'vectorBytes', 16, [
          ...here, op.get(L.outDelta), op.i32Add,
          ...here, op.v128Load(), ...here, op.get(L.dpDelta), op.i32Add, op.v128Load(), op.get(L.dotV), op.f32x4Sub, op.f32x4Mul,
          op.v128Store(),
        ]),
        ...offsets([op.get(L.vectorBytes)], 'rowBytes', 4, [
          ...here, op.get(L.outDelta), op.i32Add,
          ...here, op.f32Load(), ...here, op.get(L.dpDelta), op.i32Add, op.f32Load(), op.get(L.dot), op.f32Sub, op.f32Mul,
          op.f32Store(),
        ]),
      ]),
    ),
  ].flat();
  return { name: 'softmaxBackward', params: paramTypes, locals: localTypes, body };
}

function softmaxModuleBytes(shared: boolean): Uint8Array {
  return assembleModule({ module: 'env', name: 'memory', shared, maximumPages: 65536 }, [softmaxBackwardFunction()]);
}

interface SoftmaxExports {
  softmaxBackward(p: number, dp: number, out: number, rows: number, n: number): void;
}

const KERNELS: Array<{ name: string; kernelFunc: tf.KernelFunc }> = [
  {
    name: 'FseftSoftmaxBackward',
    kernelFunc: ({ inputs, backend }) => {
      const wasm = wasmOf(backend);
      const { p, dp } = inputs as { p: tf.TensorInfo; dp: tf.TensorInfo };
      const n = p.shape[p.shape.length - 1];
      const rows = p.shape.reduce((a, b) => a * b, 1) / n;
      const out = wasm.makeOutput(p.shape, 'float32');
      simdModuleOn<SoftmaxExports>(wasm, 'softmax', softmaxModuleBytes)!.softmaxBackward(offsetOf(wasm, p), offsetOf(wasm, dp), offsetOf(wasm, out), rows, n);
      return out;
    },
  },
];

/** P (dP - rowsum(dP P)) over the last axis: softmax's input gradient from its output P and output gradient dP. No gradient of its own. */
export function softmaxBackward<T extends tf.Tensor>(p: T, dp: T): T {
  if (!p.shape.every((n, i) => n === dp.shape[i])) throw new Error(`softmaxBackward: shapes [${p.shape}] and [${dp.shape}] differ`);
  if (onWasm() && p.dtype === 'float32' && dp.dtype === 'float32' && p.size > 0 && simdModuleOn(wasmOf(tf.backend()), 'softmax', softmaxModuleBytes)) {
    registerWasmKernels(KERNELS);
    return tf.engine().runKernel('FseftSoftmaxBackward', { p, dp }, {}) as T;
  }
  return tf.tidy(() => tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)))) as T;
}
