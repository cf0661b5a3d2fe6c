import * as v8 from 'node:v8';
import workerThreads = require('node:worker_threads');
import { WinogradTile, simdConvolutionModuleBytes } from './wasm-simd-conv';
import { simdProductModuleBytes } from './wasm-simd-products';
import { simdNormModuleBytes } from './wasm-simd-norm';
import { simdActivationModuleBytes } from './wasm-simd-activation';
import { ARGUMENT_COUNT, ARGUMENTS, CIN, FLOATS, FUNCTION, FUSED, JOB, MODULE, POOL_FUNCTIONS, POOL_MODULES, STATE, WINOGRAD, floatFromBits } from './wasm-row-pool-protocol';

/**
 * A helper thread of the row pool (wasm-row-pool.ts): it waits on its control block, runs the
 * function and arguments it is given on the shared tfjs-wasm heap, and says when it is done.
 */

type Exports = Record<string, (...args: number[]) => void>;
const { memory, control } = workerThreads.workerData as { memory: WebAssembly.Memory; control: SharedArrayBuffer };
const block = new Int32Array(control);
const modules = new Map<string, Exports>();

function moduleFor(): Exports {
  const kind = POOL_MODULES[block[MODULE]];
  const [cin, fused, winograd] = [block[CIN], block[FUSED] === 1, block[WINOGRAD] as WinogradTile];
  const key = kind === 'conv' ? `conv-${cin}-${fused}-${winograd}` : kind;
  let module = modules.get(key);
  if (!module) {
    if (kind === 'conv' && fused) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    const bytes =
      kind === 'conv' ? simdConvolutionModuleBytes(cin, fused, true, winograd) : kind === 'norm' ? simdNormModuleBytes(true) : kind === 'activation' ? simdActivationModuleBytes(true) : simdProductModuleBytes(true);
    module = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports as unknown as Exports;
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
    const floats = block[FLOATS];
    const args = Array.from({ length: block[ARGUMENT_COUNT] }, (_, i) => ((floats >> i) & 1 ? floatFromBits(block[ARGUMENTS + i]) : block[ARGUMENTS + i]));
    moduleFor()[POOL_FUNCTIONS[block[FUNCTION]]](...args);
  } catch {
    outcome = JOB.failed;
  }
  Atomics.store(block, STATE, outcome);
  Atomics.notify(block, STATE);
}
