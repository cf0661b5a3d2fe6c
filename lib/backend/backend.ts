import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-core alone registers no gradients; training needs them on every backend.
import '@tensorflow/tfjs';
import { FseftError } from '../util/errors';
import { releaseGradientsAsUsed } from './backprop-memory';
import { guardWasmAllocations, shareIdentityOnWasm } from './wasm-memory';
import { prepareWasmThreads, wantedWasmThreads } from './wasm-threads';

// Production mode only silences tfjs's console banners; the kit logs its own backend line.
tf.enableProdMode();

export type BackendName = 'tensorflow' | 'wasm' | 'cpu' | 'webgpu';
/** The automatic fallback order. */
export const BACKEND_ORDER: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];
/**
 * Backends that run only when asked for by name: webgpu (Dawn's Node binding, experimental) could
 * otherwise land on a software Vulkan device on machines without a GPU.
 */
export const OPT_IN_BACKENDS: readonly BackendName[] = ['webgpu'];
const KNOWN_BACKENDS: readonly BackendName[] = [...BACKEND_ORDER, ...OPT_IN_BACKENDS];

/** Native TensorFlow bindings, tried in this order; each registers the 'tensorflow' backend. */
const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

export interface BackendChoice {
  name: BackendName;
  /** Why this backend runs (shown in the log line). */
  reason: string;
}

let active: Promise<BackendChoice> | undefined;
/** How the wasm backend started (threads), repeated when a process switches back to it. */
let wasmDetail = 'WebAssembly SIMD/XNNPACK';

/**
 * Starts the compute backend once per process: the one asked for (option or FSEFT_BACKEND), else
 * the first that works of tensorflow (native binding, CUDA when the GPU package is installed),
 * wasm (SIMD/XNNPACK) and cpu. Logs one line saying which backend runs and why.
 */
export function initBackend(preferred?: string, log: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Promise<BackendChoice> {
  active ??= choose(preferred ?? process.env.FSEFT_BACKEND).then((choice) => {
    log(`fseft: backend ${choice.name} (${choice.reason})`);
    return choice;
  });
  return active;
}

async function choose(preferred: string | undefined): Promise<BackendChoice> {
  if (preferred !== undefined && preferred !== '' && !KNOWN_BACKENDS.includes(preferred as BackendName)) {
    throw new FseftError(`unknown backend '${preferred}'; choose one of ${KNOWN_BACKENDS.join(', ')}`);
  }
  const wanted = preferred ? (preferred as BackendName) : undefined;
  const failures: string[] = [];
  for (const name of wanted ? [wanted] : BACKEND_ORDER) {
    const outcome = await tryBackend(name);
    if (outcome.ok) {
      const why = wanted ? 'requested' : failures.length > 0 ? `fallback: ${failures.join('; ')}` : 'first available';
      return { name, reason: outcome.detail ? `${outcome.detail}; ${why}` : why };
    }
    failures.push(`${name}: ${outcome.detail}`);
  }
  throw new FseftError(`backend '${wanted}' is not available (${failures.join('; ')})`);
}

async function tryBackend(name: BackendName): Promise<{ ok: boolean; detail: string }> {
  releaseGradientsAsUsed();
  if (name === 'tensorflow') {
    const loaded = NATIVE_PACKAGES.find((pkg) => {
      try {
        require(pkg);
        return true;
      } catch {
        return false;
      }
    });
    if (!loaded) return { ok: false, detail: `no native binding installed (npm install ${NATIVE_PACKAGES[0]} for CUDA, ${NATIVE_PACKAGES[1]} for CPU)` };
    // danfojs-node's install maps its @tensorflow/tfjs-node onto plain @tensorflow/tfjs, which
    // resolves but registers no native backend.
    if (!tf.findBackendFactory('tensorflow')) return { ok: false, detail: `no native binding installed (${loaded} resolves to a package without the native backend; npm install ${NATIVE_PACKAGES[0]} for CUDA, ${NATIVE_PACKAGES[1]} for CPU)` };
    try {
      return (await tf.setBackend('tensorflow')) ? { ok: true, detail: loaded } : { ok: false, detail: `${loaded} failed to start` };
    } catch (error) {
      return { ok: false, detail: `${loaded} failed to start (${(error as Error).message})` };
    }
  }
  if (name === 'wasm') return startWasm();
  if (name === 'webgpu') return startWebGpu();
  return (await tf.setBackend('cpu')) ? { ok: true, detail: 'plain JavaScript' } : { ok: false, detail: 'failed to start' };
}

/**
 * The wasm backend: threaded when more than one thread is wanted, each start bounded by
 * FSEFT_WASM_START_TIMEOUT_S. A threaded start that fails or times out is undone (its workers
 * terminated, the backend registered afresh) and the single-threaded build starts instead; the
 * detail says why.
 */
async function startWasm(): Promise<{ ok: boolean; detail: string }> {
  // A malformed FSEFT_WASM_THREADS or timeout is an error, not a reason to fall back to cpu.
  const wantedThreads = wantedWasmThreads();
  const timeoutMs = wasmStartTimeoutMs();
  let wasmPackage: { setThreadsCount(n: number): void };
  try {
    wasmPackage = require('@tensorflow/tfjs-backend-wasm') as typeof wasmPackage;
  } catch (error) {
    return { ok: false, detail: (error as Error).message };
  }
  // The module starts once per process; a later switch back to wasm reuses it.
  if (tf.findBackend('wasm')) return (await tf.setBackend('wasm')) ? { ok: true, detail: wasmDetail } : { ok: false, detail: 'failed to start' };

  const registration = wasmRegistration();
  let threads: ReturnType<typeof prepareWasmThreads>;
  try {
    threads = prepareWasmThreads(wantedThreads, wasmPackage);
  } catch (error) {
    // e.g. the worker scripts cannot be written to the temporary folder (full disk, file-size limit)
    threads = { reason: `one thread: the threaded build could not be prepared (${(error as Error).message})` };
  }
  let singleThreadReason = threads.reason;
  if (threads.plan) {
    const plan = threads.plan;
    let outcome: StartOutcome;
    try {
      outcome = await boundedStart(tf.setBackend('wasm'), timeoutMs, plan.failure);
    } finally {
      plan.restore();
    }
    if (outcome.started) {
      guardWasmAllocations();
      shareIdentityOnWasm();
      const count = plan.started();
      wasmDetail = `WebAssembly SIMD/XNNPACK, ${count} thread${count > 1 ? 's' : ''}`;
      return { ok: true, detail: wasmDetail };
    }
    plan.abort();
    tf.removeBackend('wasm');
    tf.registerBackend('wasm', registration.factory, registration.priority);
    wasmPackage.setThreadsCount(1);
    singleThreadReason = `one thread: the ${wantedThreads}-thread start ${outcome.why}`;
  }
  const outcome = await boundedStart(tf.setBackend('wasm'), timeoutMs);
  if (!outcome.started) {
    tf.removeBackend('wasm');
    tf.registerBackend('wasm', registration.factory, registration.priority);
    return { ok: false, detail: `${singleThreadReason}; the single-threaded start ${outcome.why}` };
  }
  guardWasmAllocations();
  shareIdentityOnWasm();
  wasmDetail = `WebAssembly SIMD/XNNPACK, ${singleThreadReason}`;
  return { ok: true, detail: wasmDetail };
}

type StartOutcome = { started: true } | { started: false; why: string };

/**
 * Waits for a backend start, at most `timeoutMs` and no longer than `failure` stays pending. The
 * pending timer also keeps Node's event loop alive while worker threads load.
 */
async function boundedStart(start: Promise<boolean>, timeoutMs: number, failure?: Promise<string>): Promise<StartOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<StartOutcome>((resolve) => {
    timer = setTimeout(() => resolve({ started: false, why: `did not finish within ${timeoutMs / 1000} s (FSEFT_WASM_START_TIMEOUT_S)` }), timeoutMs);
  });
  const failed = failure?.then((why): StartOutcome => ({ started: false, why: `failed: ${why}` })) ?? new Promise<StartOutcome>(() => {});
  const finished = start.then(
    (ok): StartOutcome => (ok ? { started: true } : { started: false, why: 'failed' }),
    (error: unknown): StartOutcome => ({ started: false, why: `failed: ${(error as { message?: string })?.message ?? String(error)}` }),
  );
  try {
    return await Promise.race([finished, failed, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** The wasm backend's factory as tfjs-backend-wasm registered it, to register it again after a failed start. */
function wasmRegistration(): { factory: () => tf.KernelBackend | Promise<tf.KernelBackend>; priority: number } {
  const registry = (tf.engine() as unknown as { registryFactory: Record<string, { factory: () => tf.KernelBackend | Promise<tf.KernelBackend>; priority: number }> }).registryFactory;
  const entry = registry.wasm;
  if (!entry) throw new FseftError('the wasm backend is not registered (is @tensorflow/tfjs-backend-wasm installed?)');
  return entry;
}

const DEFAULT_WASM_START_TIMEOUT_S = 60;

/** FSEFT_WASM_START_TIMEOUT_S (seconds, default 60) bounds each wasm start, threaded and single-threaded. */
export function wasmStartTimeoutMs(): number {
  const setting = process.env.FSEFT_WASM_START_TIMEOUT_S;
  const seconds = setting === undefined || setting === '' ? DEFAULT_WASM_START_TIMEOUT_S : Number(setting);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new FseftError(`FSEFT_WASM_START_TIMEOUT_S must be a positive number of seconds, got '${setting}'`);
  return Math.round(seconds * 1000);
}

const WEBGPU_PACKAGES = 'npm install webgpu @tensorflow/tfjs-backend-webgpu@4.22.0';

/**
 * tfjs's WebGPU backend on Dawn's Node binding (the `webgpu` package). Both packages are optional
 * installs; FSEFT_DAWN_FLAGS passes Dawn options such as `backend=vulkan` (comma-separated).
 */
async function startWebGpu(): Promise<{ ok: boolean; detail: string }> {
  let dawn: { create(flags: string[]): unknown; globals: Record<string, unknown> };
  try {
    // A variable specifier keeps TypeScript from resolving a package that is usually not installed.
    const specifier = 'webgpu';
    dawn = (await import(specifier)) as typeof dawn;
  } catch (error) {
    return { ok: false, detail: `Dawn's Node binding is not installed or does not load (${WEBGPU_PACKAGES}): ${(error as Error).message}` };
  }
  if (!tf.findBackendFactory('webgpu')) {
    Object.assign(globalThis, dawn.globals);
    const flags = (process.env.FSEFT_DAWN_FLAGS ?? '').split(',').filter((flag) => flag !== '');
    const gpu = dawn.create(flags);
    // tfjs-backend-webgpu registers itself only where navigator.gpu exists (Node 20 has no navigator).
    const holder = globalThis as { navigator?: object };
    if (holder.navigator === undefined) holder.navigator = { gpu };
    else Object.defineProperty(holder.navigator, 'gpu', { value: gpu, configurable: true });
    try {
      require('@tensorflow/tfjs-backend-webgpu');
    } catch (error) {
      return { ok: false, detail: `@tensorflow/tfjs-backend-webgpu is not installed (${WEBGPU_PACKAGES}): ${(error as Error).message}` };
    }
  }
  try {
    if (!(await tf.setBackend('webgpu'))) return { ok: false, detail: 'no WebGPU adapter (no GPU, or no Vulkan loader and driver)' };
  } catch (error) {
    return { ok: false, detail: `failed to start (${(error as Error).message})` };
  }
  const info = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string } }).adapterInfo;
  const adapter = [info?.vendor, info?.architecture].filter((part) => part).join(' ');
  return { ok: true, detail: `Dawn WebGPU${adapter ? `, ${adapter}` : ''}; experimental` };
}

/** The backend that runs now (after `initBackend`). */
export function currentBackend(): BackendName {
  return tf.getBackend() as BackendName;
}

/** For tests and benchmarks: switch backend within one process. */
export async function switchBackend(name: BackendName): Promise<BackendChoice> {
  active = undefined;
  const outcome = await tryBackend(name);
  if (!outcome.ok) throw new FseftError(`backend ${name} is not available: ${outcome.detail}`);
  const choice = { name, reason: outcome.detail ? `${outcome.detail}; switched` : 'switched' };
  active = Promise.resolve(choice);
  return choice;
}

/** Live tensors and bytes on the current backend (notebooks check that re-running a cell leaks nothing). */
export function tensorMemory(): { numTensors: number; numBytes: number } {
  const { numTensors, numBytes } = tf.memory();
  return { numTensors, numBytes };
}
