import * as fs from 'node:fs';
import * as path from 'node:path';
import workerThreads = require('node:worker_threads');
import { WasmBackendInternals } from './wasm-views';
import { ARGUMENT_COUNT, ARGUMENTS, CIN, CONTROL_INTS, FLOATS, FUNCTION, FUSED, JOB, MODULE, POOL_FUNCTIONS, POOL_MODULES, PoolFunction, PoolModule, STATE, WINOGRAD, floatBits } from './wasm-row-pool-protocol';

/**
 * Helper threads for the kit's own SIMD kernels (the convolution, the few-row products, the norm
 * and GELU passes), so that
 * they use every core tfjs-wasm's XNNPACK pool would (its pool sleeps while the kit's kernel runs).
 * Each helper instantiates the kernel's module on the same shared heap and takes a share of the
 * rows; the calling thread takes the first share and then waits for the others (Atomics on a
 * control block: no message passing on the hot path). Only for the threaded tfjs-wasm build, whose heap is a SharedArrayBuffer.
 */

/** Which module (the convolution's by its input channels, fused multiply-add, Winograd or direct) and which of its functions. */
export interface PoolJob {
  module: PoolModule;
  fn: PoolFunction;
  cin?: number;
  fused?: boolean;
  /** The convolution module's Winograd tile (2 or 4), 0 or absent for the direct loop. */
  winograd?: number;
  /** Which arguments are float32 (bit k for argument k); the others are integers. */
  floats?: number;
}

export interface RowPool {
  /**
   * Splits rows [0, rows) between the helpers and the calling thread: each helper runs
   * job.fn(...argumentsFor(row0, row1, share)) on its share (1, 2, ...), the caller
   * `own(row0, row1)` on share 0.
   */
  run(job: PoolJob, rows: number, argumentsFor: (row0: number, row1: number, share: number) => number[], own: (row0: number, row1: number) => void): void;
  threads: number;
}

interface Helper {
  worker: workerThreads.Worker;
  block: Int32Array;
}

const pools = new WeakMap<WebAssembly.Memory, RowPool | null>();
const WORKER_SCRIPT = path.join(__dirname, 'wasm-conv-worker.js');

/** Splits rows [0, rows) into `parts` near-equal ranges. */
export function rowShares(rows: number, parts: number): Array<[number, number]> {
  return Array.from({ length: parts }, (_, i) => [Math.floor((rows * i) / parts), Math.floor((rows * (i + 1)) / parts)] as [number, number]);
}

/** The pool for this backend's heap, with as many threads as tfjs-wasm's own pool, or null where it cannot run. */
export function rowPoolOf(wasm: WasmBackendInternals): RowPool | null {
  return rowPoolFor(wasm.wasm.wasmMemory, wasm.wasm.tfjs.getThreadsCount?.() ?? 1);
}

/** The pool for this heap with `threads` threads in all (the caller's included), or null where it cannot run. */
export function rowPoolFor(memory: WebAssembly.Memory | undefined, threads: number): RowPool | null {
  if (!memory || threads < 2 || !(memory.buffer instanceof SharedArrayBuffer) || !fs.existsSync(WORKER_SCRIPT)) return null;
  if (pools.has(memory)) return pools.get(memory)!;
  let pool: RowPool | null = null;
  try {
    const helpers: Helper[] = Array.from({ length: threads - 1 }, () => {
      const control = new SharedArrayBuffer(CONTROL_INTS * 4);
      const worker = new workerThreads.Worker(WORKER_SCRIPT, { workerData: { memory, control } });
      worker.unref();
      return { worker, block: new Int32Array(control) };
    });
    pool = {
      threads,
      run(job, rows, argumentsFor, own) {
        const shares = rowShares(rows, threads);
        helpers.forEach((helper, i) => {
          const args = argumentsFor(shares[i + 1][0], shares[i + 1][1], i + 1);
          if (ARGUMENTS + args.length > CONTROL_INTS) throw new Error(`row pool: ${job.fn} takes at most ${CONTROL_INTS - ARGUMENTS} arguments`);
          helper.block[MODULE] = POOL_MODULES.indexOf(job.module);
          helper.block[CIN] = job.cin ?? 0;
          helper.block[FUSED] = job.fused ? 1 : 0;
          helper.block[WINOGRAD] = job.winograd ?? 0;
          helper.block[FUNCTION] = POOL_FUNCTIONS.indexOf(job.fn);
          helper.block[ARGUMENT_COUNT] = args.length;
          const floats = job.floats ?? 0;
          helper.block[FLOATS] = floats;
          args.forEach((value, k) => (helper.block[ARGUMENTS + k] = (floats >> k) & 1 ? floatBits(value) : value));
          Atomics.store(helper.block, STATE, JOB.posted);
          Atomics.notify(helper.block, STATE);
        });
        own(shares[0][0], shares[0][1]);
        let failed = false;
        for (const helper of helpers) {
          let state = Atomics.load(helper.block, STATE);
          while (state === JOB.posted) {
            Atomics.wait(helper.block, STATE, state);
            state = Atomics.load(helper.block, STATE);
          }
          failed ||= state !== JOB.done;
          Atomics.store(helper.block, STATE, JOB.idle);
        }
        if (failed) throw new Error(`a row-pool helper thread failed in ${job.fn}`);
      },
    };
  } catch {
    pool = null;
  }
  pools.set(memory, pool);
  return pool;
}

/** Whether passes over rows (instance norm, GELU) spread over the row pool (tests turn it off to compare). */
export const passTuning = { threads: true };

/** Passes over fewer floats than this stay on the calling thread: handing rows out costs more than it saves. */
const POOLED_FLOATS = 1 << 16;

/** Shares a pass over `rows` rows of `floatsPerRow` floats is split into (1: the calling thread alone). */
export function sharesFor(wasm: WasmBackendInternals, rows: number, floatsPerRow: number): number {
  const pool = passTuning.threads ? rowPoolOf(wasm) : null;
  return pool && rows >= pool.threads && rows * floatsPerRow >= POOLED_FLOATS ? pool.threads : 1;
}

/**
 * A pass over rows [0, rows) in `sharesFor` shares: job.fn(...argumentsFor(row0, row1, share)) on
 * the pool for shares 1, 2, ..., and `local` (the same function on this thread) with share 0's
 * arguments; else local(...argumentsFor(0, rows, 0)) alone.
 */
export function overRows(wasm: WasmBackendInternals, rows: number, floatsPerRow: number, job: PoolJob, argumentsFor: (row0: number, row1: number, share: number) => number[], local: (...args: number[]) => void): void {
  if (sharesFor(wasm, rows, floatsPerRow) === 1) local(...argumentsFor(0, rows, 0));
  else rowPoolOf(wasm)!.run(job, rows, argumentsFor, (row0, row1) => local(...argumentsFor(row0, row1, 0)));
}

/**
 * An elementwise pass of `fn` over whole vectors of `inputs` into `output` (byte addresses of
 * `floats` floats each), in shares of the pool: fn(...inputs, output, bytes, ...trailing) on each
 * share's range. Returns how many floats it covered (the caller finishes the last floats mod 4).
 */
export function overVectors(wasm: WasmBackendInternals, floats: number, addresses: number[], job: PoolJob, local: (...args: number[]) => void, trailing: number[] = []): number {
  const vectors = Math.floor(floats / 4);
  overRows(wasm, vectors, 4, job, (v0, v1) => [...addresses.map((address) => address + v0 * 16), (v1 - v0) * 16, ...trailing], local);
  return vectors * 4;
}
