import * as tf from '@tensorflow/tfjs-core';

/**
 * Plumbing for the kit's own wasm kernels: they run tfjs-wasm's C entry points on views (tensor
 * ids registered on parts of existing buffers) and copy memory within the wasm heap directly.
 */

/** The parts of tfjs-wasm's backend object the batched kernel uses (tfjs 4.22). */
export interface WasmBackendInternals {
  wasm: {
    cwrap(name: string, returnType: null, argumentTypes: string[]): (...args: unknown[]) => void;
    HEAPU8: Uint8Array;
    _malloc(bytes: number): number;
    _free(pointer: number): void;
    /** The heap itself (threaded builds export it; others leave it undefined). */
    wasmMemory?: WebAssembly.Memory;
    asm?: { memory?: WebAssembly.Memory };
    tfjs: { registerTensor(id: number, size: number, memoryOffset: number): void; disposeData(id: number): void; getThreadsCount?(): number };
  };
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

export function onWasm(): boolean {
  return tf.getBackend() === 'wasm';
}

/**
 * Registers, for each of `count` items, a tensor id pointing into each buffer (item i of buffer t
 * starts at `bases[t] + i * sizes[t]` floats), runs `body` with them, and disposes the ids. Disposing
 * also frees any XNNPACK operator that tfjs-wasm cached on an id.
 */
export function forEachView(wasm: WasmBackendInternals, count: number, bases: number[], sizes: number[], body: (ids: number[], item: number) => void): void {
  for (let i = 0; i < count; i++) {
    const ids = sizes.map((size, t) => {
      const id = wasm.dataIdNextNumber++;
      wasm.wasm.tfjs.registerTensor(id, size, bases[t] + i * size * 4);
      return id;
    });
    body(ids, i);
    for (const id of ids) wasm.wasm.tfjs.disposeData(id);
  }
}

export function offsetOf(wasm: WasmBackendInternals, tensor: tf.TensorInfo): number {
  return wasm.dataIdMap.get(tensor.dataId).memoryOffset;
}

export function wasmOf(backend: unknown): WasmBackendInternals {
  return backend as WasmBackendInternals;
}

/** `size` floats of a tensor's heap buffer from float `first` on, as a view (no copy). */
export function floatsOf(wasm: WasmBackendInternals, tensor: tf.TensorInfo, first: number, size: number): Float32Array {
  return new Float32Array(wasm.wasm.HEAPU8.buffer, offsetOf(wasm, tensor) + first * 4, size);
}

/** Registers the kit's wasm kernels that are not registered yet. */
export function registerWasmKernels(kernels: ReadonlyArray<{ name: string; kernelFunc: tf.KernelFunc }>): void {
  for (const { name, kernelFunc } of kernels) if (!tf.getKernel(name, 'wasm')) tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc });
}
