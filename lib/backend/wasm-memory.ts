import * as tf from '@tensorflow/tfjs-core';
import { FseftError } from '../util/errors';

/**
 * tfjs-wasm allocates every tensor with the module's malloc and never checks the result. When the
 * 4 GiB wasm32 heap is full, malloc returns 0 and the tensor is written over the start of the heap:
 * the single-threaded build then dies with "memory access out of bounds" somewhere later, and the
 * threaded build corrupts its own state and hangs. A request of 4 GiB or more is worse: the size
 * wraps around 32 bits and a much smaller block comes back. This guard turns both into an error
 * that says what happened. Allocations inside the C kernels (scratch space) are not covered.
 */

/** The wasm32 address space: no heap can be larger. */
export const WASM_HEAP_LIMIT = 2 ** 32;

interface WasmModule {
  _malloc(bytes: number): number;
  _free(offset: number): void;
  HEAPU8: Uint8Array;
}

const guarded = new WeakSet<object>();

/** Installs the allocation check on the running wasm backend (idempotent). */
export function guardWasmAllocations(): void {
  const wasm = (tf.backend() as unknown as { wasm?: WasmModule }).wasm;
  if (!wasm || guarded.has(wasm)) return;
  // Emscripten's exported malloc replaces itself with the raw export on its first call; make that
  // call first so that the wrapper below stays in place.
  wasm._free(wasm._malloc(16));
  const malloc = wasm._malloc;
  wasm._malloc = (bytes: number): number => {
    if (bytes >= WASM_HEAP_LIMIT) throw outOfMemory(bytes, wasm);
    const offset = malloc(bytes);
    if (offset === 0 && bytes > 0) throw outOfMemory(bytes, wasm);
    return offset;
  };
  guarded.add(wasm);
}

function outOfMemory(bytes: number, wasm: WasmModule): FseftError {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  return new FseftError(
    `the WebAssembly backend is out of memory: a tensor of ${mib(bytes)} does not fit in its 4 GiB heap ` +
      `(${mib(tf.memory().numBytes)} held by tensors, heap at ${mib(wasm.HEAPU8.length)}). ` +
      'Use a smaller patch or region of interest, gradient checkpointing (checkpoint: true), or a backend without this limit (tensorflow, webgpu).',
  );
}

/**
 * tfjs-wasm's Identity kernel copies its input. tfjs runs Identity for every tensor a kernel or a
 * custom gradient saves for its backward pass (`save` keeps a clone), so on wasm each saved
 * activation existed twice while training, and was copied once more: the largest single cost in
 * memory of a training step at full resolution. No kernel in tfjs-wasm or in this kit writes into
 * its inputs, and variables get a new buffer on each assign, so a clone can share its input's
 * buffer (by reference count, as reshape does), which is what the CPU backend's Identity does.
 */
export function shareIdentityOnWasm(): void {
  const existing = tf.getKernel('Identity', 'wasm');
  if (!existing || (existing.kernelFunc as { shares?: boolean }).shares) return;
  const kernelFunc = ({ inputs, backend }: { inputs: tf.NamedTensorInfoMap; backend: unknown }) => {
    const x = inputs.x as tf.TensorInfo;
    if (x.dtype === 'string') return (existing.kernelFunc as (args: unknown) => tf.TensorInfo)({ inputs, backend, attrs: {} });
    (backend as { incRef(dataId: unknown): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
  Object.assign(kernelFunc, { shares: true });
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({ kernelName: 'Identity', backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}
