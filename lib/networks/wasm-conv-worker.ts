import * as v8 from 'node:v8';
import workerThreads = require('node:worker_threads');
import { simdConvolutionModuleBytes } from './wasm-simd-conv';
import { ARGUMENT_COUNT, ARGUMENTS, CIN, FUNCTION, FUSED, JOB, POOL_FUNCTIONS, STATE, WINOGRAD } from './wasm-row-pool-protocol';

/**
 * A helper thread of the row pool (wasm-row-pool.ts): it waits on its control block, runs the
 * convolution function and rows it is given on the shared tfjs-wasm heap, and says when it is done.
 */

const { memory, control } = workerThreads.workerData as { memory: WebAssembly.Memory; control: SharedArrayBuffer };
const block = new Int32Array(control);
const modules = new Map<string, Record<string, (...args: number[]) => void>>();

function moduleFor(cin: number, fused: boolean, winograd: boolean): Record<string, (...args: number[]) => void> {
  const key = `${cin}-${fused}-${winograd}`;
  let module = modules.get(key);
  if (!module) {
    if (fused) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    const bytes = simdConvolutionModuleBytes(cin, fused, true, winograd);
    module = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports as unknown as Record<string, (...args: number[]) => void>;
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
    const args = Array.from({ length: block[ARGUMENT_COUNT] }, (_, i) => block[ARGUMENTS + i]);
    moduleFor(block[CIN], block[FUSED] === 1, block[WINOGRAD] === 1)[POOL_FUNCTIONS[block[FUNCTION]]](...args);
  } catch {
    outcome = JOB.failed;
  }
  Atomics.store(block, STATE, outcome);
  Atomics.notify(block, STATE);
}
