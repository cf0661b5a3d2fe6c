import * as v8 from 'node:v8';
import workerThreads = require('node:worker_threads');
import { simdConvolutionModuleBytes, SimdConvolutionExports } from './wasm-simd-conv';
import { JOB, ARGUMENTS, CIN, FUSED, STATE } from './wasm-row-pool-protocol';

/**
 * A helper thread of the row pool (wasm-row-pool.ts): it waits on its control block, runs the
 * convolution rows it is given on the shared tfjs-wasm heap, and says when it is done.
 */

const { memory, control } = workerThreads.workerData as { memory: WebAssembly.Memory; control: SharedArrayBuffer };
const block = new Int32Array(control);
const modules = new Map<string, SimdConvolutionExports>();

function moduleFor(cin: number, fused: boolean): SimdConvolutionExports {
  const key = `${cin}-${fused}`;
  let module = modules.get(key);
  if (!module) {
    if (fused) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    module = new WebAssembly.Instance(new WebAssembly.Module(simdConvolutionModuleBytes(cin, fused, true)), { env: { memory } }).exports as unknown as SimdConvolutionExports;
    modules.set(key, module);
  }
  return module;
}

for (;;) {
  let state = Atomics.load(block, STATE);
  while (state !== JOB.posted && state !== JOB.exit) {
    Atomics.wait(block, STATE, state);
    state = Atomics.load(block, STATE);
  }
  if (state === JOB.exit) break;
  let outcome: number = JOB.done;
  try {
    const a = Array.from({ length: 8 }, (_, i) => block[ARGUMENTS + i]);
    moduleFor(block[CIN], block[FUSED] === 1).convolveRows(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
  } catch {
    outcome = JOB.failed;
  }
  Atomics.store(block, STATE, outcome);
  Atomics.notify(block, STATE);
}
