import * as fs from 'node:fs';
import os = require('node:os');
import * as path from 'node:path';
import workerThreads = require('node:worker_threads');
import * as tf from '@tensorflow/tfjs-core';
import { FseftError } from '../util/errors';

/**
 * tfjs-wasm's multi-threaded build (XNNPACK with a thread pool) under Node.
 *
 * tfjs 4.22 switches it off in Node (WASM_HAS_MULTITHREAD_SUPPORT is false there): Emscripten
 * starts its worker threads from Blob URLs, which Node's Worker cannot load, and the main script it
 * hands to each worker is the factory's source text, which refers to variables of tfjs's bundle.
 * Here (1) those two scripts are written to a private temporary folder and the workers load them
 * from there, the bundle variables defined in front; (2) XNNPACK's pool is capped at half the
 * logical cores (the C code assumes two hyperthreads per core), so the core count the module sees
 * while it starts is twice the threads wanted; (3) the pool's thread workers are unref'ed, or Node would never
 * exit. Everything is checked before the backend starts; anything unexpected leaves the
 * single-threaded build in place and says why.
 *
 * The module starts only once all eight pool workers have loaded. A worker that fails while loading
 * makes Emscripten throw from an event handler; where a host swallows uncaught exceptions (the tslab
 * kernel does) that start would wait forever. So the plan records the workers it creates, turns
 * such a failure into `failure`, and can terminate them all (`abort`) for a single-threaded start.
 */

/** The variables of tfjs-backend-wasm's Node bundle that the threaded factory's source uses. */
const BUNDLE_PRELUDE = "var require$$0=require('fs'),require$$1=require('path'),require$$3=require('perf_hooks'),require$$4=require('os'),commonjsGlobal=globalThis;";
const KNOWN_BUNDLE_VARIABLES = new Set(['require$$0', 'require$$1', 'require$$3', 'require$$4']);
const MAIN_SCRIPT_START = 'var WasmBackendModuleThreadedSimd';

interface EmscriptenWorker {
  loaded?: boolean;
  unref(): void;
  once(event: 'message', listener: () => void): void;
}

interface EmscriptenThreads {
  PThread?: { runningWorkers: EmscriptenWorker[] };
  tfjs: { getThreadsCount(): number };
}

export interface WasmThreadsPlan {
  /** Call once tf.setBackend('wasm') has returned or thrown: undoes the temporary patches. */
  restore(): void;
  /** Settles with the reason when a pool worker errs or exits before it has loaded. */
  failure: Promise<string>;
  /** Terminates every worker the start created (after a failure or a timeout). */
  abort(): void;
  /** After a successful start: lets Node exit with the worker threads alive; returns XNNPACK's thread count. */
  started(): number;
}

/** Threads wanted: FSEFT_WASM_THREADS, else the cores this process may use (at most 8, the build's pool). */
export function wantedWasmThreads(): number {
  const setting = process.env.FSEFT_WASM_THREADS;
  const wanted = setting === undefined || setting === '' ? os.availableParallelism() : Number(setting);
  if (!Number.isInteger(wanted) || wanted < 1) throw new FseftError(`FSEFT_WASM_THREADS must be a whole number of at least 1, got '${setting}'`);
  return Math.min(wanted, 8);
}

/**
 * Prepares the threaded build before the wasm backend starts. Without a plan (only the reason)
 * when it should not or cannot be used; the backend then starts single-threaded.
 */
export function prepareWasmThreads(threads: number, wasmBackend: { setThreadsCount(n: number): void }): { plan?: WasmThreadsPlan; reason: string } {
  if (threads <= 1) return { reason: 'one thread' };
  if (typeof SharedArrayBuffer === 'undefined') return { reason: 'one thread: no SharedArrayBuffer' };
  const factorySource = threadedFactorySource();
  if (!factorySource) return { reason: 'one thread: the threaded factory of tfjs-backend-wasm was not found' };
  const unknown = [...new Set(factorySource.match(/require\$\$\d+/g) ?? [])].filter((name) => !KNOWN_BUNDLE_VARIABLES.has(name));
  if (unknown.length > 0) return { reason: `one thread: tfjs-backend-wasm's bundle changed (${unknown.join(', ')})` };

  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'fseft-wasm-threads-'));
  process.once('exit', () => fs.rmSync(folder, { recursive: true, force: true }));
  const mainScript = path.join(folder, 'main.js');
  const NativeBlob = globalThis.Blob;
  const nativeCreateObjectURL = URL.createObjectURL;
  const nativeCpus = os.cpus;

  class ScriptBlob extends NativeBlob {
    readonly script?: string;
    constructor(...args: ConstructorParameters<typeof Blob>) {
      super(...args);
      const parts = args[0];
      if (parts?.every((part) => typeof part === 'string')) this.script = parts.join('');
      if (this.script?.startsWith(MAIN_SCRIPT_START)) fs.writeFileSync(mainScript, BUNDLE_PRELUDE + this.script);
    }
  }
  globalThis.Blob = ScriptBlob as typeof Blob;
  const workerScript = path.join(folder, 'worker.js');
  let workerScriptWritten = false;
  URL.createObjectURL = (blob: Blob) => {
    if (!(blob instanceof ScriptBlob) || blob.script === undefined) return nativeCreateObjectURL(blob);
    // The worker script: when told to load the main script (a Blob) it asks for an object URL.
    // Emscripten asks once per pool worker, for the same script. It is written once: rewriting the
    // file (truncate, then write) while an earlier worker was still reading it gave that worker an
    // empty script, which exited with code 0 before loading, and the module waited for it forever.
    if (!workerScriptWritten) {
      fs.writeFileSync(workerScript, `URL.createObjectURL=()=>${JSON.stringify(mainScript)};URL.revokeObjectURL=()=>{};${blob.script}`);
      workerScriptWritten = true;
    }
    return workerScript;
  };
  const cpus = nativeCpus();
  os.cpus = () => Array.from({ length: 2 * threads }, (_, i) => cpus[i % cpus.length]);
  const pool = recordPoolWorkers();
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasmBackend.setThreadsCount(threads);

  return {
    reason: `${threads} threads`,
    plan: {
      restore: () => {
        globalThis.Blob = NativeBlob;
        URL.createObjectURL = nativeCreateObjectURL;
        os.cpus = nativeCpus;
        pool.stopRecording();
        tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
      },
      failure: pool.failure,
      abort: () => pool.terminateAll(),
      started: () => {
        const module = (tf.backend() as unknown as { wasm: EmscriptenThreads }).wasm;
        // Emscripten unrefs idle workers itself once they have loaded, but refs a worker while it
        // runs a thread: XNNPACK's pool threads never end. Unref those, and only after they have
        // loaded (their thread starts, and refs them, on the 'loaded' message): a worker unref'ed
        // while loading lets Node's event loop end under a pending promise.
        for (const worker of module.PThread?.runningWorkers ?? []) {
          if (worker.loaded) worker.unref();
          else worker.once('message', () => worker.unref());
        }
        return module.tfjs.getThreadsCount();
      },
    },
  };
}

/**
 * Replaces worker_threads.Worker (which Emscripten's factory picks up when it runs) by a subclass
 * that records each worker and reports, instead of throwing, an error or exit before it has loaded.
 */
function recordPoolWorkers(): { failure: Promise<string>; stopRecording(): void; terminateAll(): void } {
  const NativeWorker = workerThreads.Worker;
  const created: workerThreads.Worker[] = [];
  let report: (reason: string) => void = () => {};
  const failure = new Promise<string>((resolve) => (report = resolve));

  class PoolWorker extends NativeWorker {
    constructor(...args: ConstructorParameters<typeof NativeWorker>) {
      super(...args);
      created.push(this);
      const worker = this as unknown as { loaded?: boolean };
      let emscriptenOnError: ((error: unknown) => void) | undefined;
      // An error while loading is reported by this listener. Emscripten adds its own 'error'
      // listener only when it hands the worker the module, which can come after a fault in the
      // worker's first lines: without ours the error would be unhandled and end the process
      // (seen once in a full test run).
      this.on('error', (error: Error) => {
        if (!worker.loaded) report(`a pool worker failed while loading (${error?.message ?? String(error)})`);
      });
      // Emscripten's listener calls worker.onerror, which throws: pass errors on only once loaded.
      Object.defineProperty(this, 'onerror', {
        configurable: true,
        get: () => (error: Error) => {
          if (worker.loaded) emscriptenOnError?.(error);
        },
        set: (handler: (error: unknown) => void) => (emscriptenOnError = handler),
      });
      this.on('exit', (code) => {
        if (!worker.loaded) report(`a pool worker exited with code ${code} while loading`);
      });
    }
  }
  const moduleExports = workerThreads as { Worker: typeof NativeWorker };
  moduleExports.Worker = PoolWorker;
  return {
    failure,
    stopRecording: () => {
      moduleExports.Worker = NativeWorker;
    },
    terminateAll: () => {
      for (const worker of created) void worker.terminate();
    },
  };
}

/** The source of the threaded Emscripten factory inside tfjs-backend-wasm's Node bundle. */
function threadedFactorySource(): string | undefined {
  try {
    const bundle = fs.readFileSync(require.resolve('@tensorflow/tfjs-backend-wasm'), 'utf8');
    const start = bundle.indexOf('var WasmBackendModuleThreadedSimd = ');
    const end = bundle.indexOf('tfjsBackendWasmThreadedSimdExports', start);
    return start < 0 || end < 0 ? undefined : bundle.slice(start, end);
  } catch {
    return undefined;
  }
}
