import * as v8 from 'node:v8';
import { WasmBackendInternals } from './wasm-views';
import { relaxedSimdProbeBytes } from './wasm-simd-conv';

/**
 * The kit's SIMD modules (built with wasm-assembler.ts) instantiated on tfjs-wasm's own memory,
 * so that they read and write tensors where they lie. One instance per module and backend.
 */

const instances = new Map<string, WeakMap<object, unknown>>();

/**
 * The exports of module `name` (its bytes from `build`, for a shared or an unshared memory) on this
 * backend's heap, or undefined where the heap is not reachable or the runtime lacks wasm SIMD.
 */
export function simdModuleOn<T>(wasm: WasmBackendInternals, name: string, build: (shared: boolean) => Uint8Array): T | undefined {
  let perBackend = instances.get(name);
  if (!perBackend) instances.set(name, (perBackend = new WeakMap()));
  if (!perBackend.has(wasm.wasm)) {
    const memory = wasm.wasm.wasmMemory ?? wasm.wasm.asm?.memory;
    let exports: unknown = null;
    if (memory) {
      try {
        const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
        exports = new WebAssembly.Instance(new WebAssembly.Module(build(shared)), { env: { memory } }).exports;
      } catch {
        exports = null;
      }
    }
    perBackend.set(wasm.wasm, exports);
  }
  return (perBackend.get(wasm.wasm) as T | null) ?? undefined;
}

/** Runs `body` with `bytes` of heap scratch (16-byte aligned), freed afterwards. */
export function withScratch<T>(wasm: WasmBackendInternals, bytes: number, body: (address: number) => T): T {
  // malloc's i32 result is negative for an address past 2 GiB; views need it unsigned.
  const raw = wasm.wasm._malloc(bytes + 16) >>> 0;
  try {
    return body(raw + ((16 - (raw % 16)) % 16));
  } finally {
    wasm.wasm._free(raw);
  }
}

export function heapF64(wasm: WasmBackendInternals, address: number, length: number): Float64Array {
  return new Float64Array(wasm.wasm.HEAPU8.buffer, address, length);
}

export function heapF32(wasm: WasmBackendInternals, address: number, length: number): Float32Array {
  return new Float32Array(wasm.wasm.HEAPU8.buffer, address, length);
}

let relaxed: boolean | undefined;

function compiles(bytes: Uint8Array): boolean {
  try {
    new WebAssembly.Module(bytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether the runtime compiles relaxed SIMD (f32x4.relaxed_madd). Node 22 and later do by
 * default; Node 20's V8 has it behind --experimental-wasm-relaxed-simd, which is turned on here
 * before any module that uses it is compiled (a wasm feature flag, read at compile time).
 * FSEFT_WASM_RELAXED_SIMD=0 keeps the plain multiply and add.
 */
export function relaxedSimdAvailable(): boolean {
  if (relaxed === undefined) {
    const probe = relaxedSimdProbeBytes();
    if (process.env.FSEFT_WASM_RELAXED_SIMD === '0') relaxed = false;
    else if (compiles(probe)) relaxed = true;
    else {
      try {
        v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
      } catch {
        // a runtime without the flag keeps the plain instructions
      }
      relaxed = compiles(probe);
    }
  }
  return relaxed!;
}
