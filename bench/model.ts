/**
 * npm run bench:model [-- --backends wasm,cpu,webgpu --configs a,b --no-train --repeat N --checkpoint none|swin|all|fine
 *                        --frozen lora,ft-last|none --compare-unfrozen --conv-methods xnnpack,direct,winograd]
 * Times SwinUNETR forward passes and training steps (forward, backward, AdamW) per backend:
 *   (a) feature_size 12, 64^3 input, 29 outputs   (b) feature_size 48, 96^3 input, 29 outputs
 * the training step of few-shot methods on the frozen backbone (`--frozen`: a PEFT method through
 * the whole network, ft-last on the last block; `--compare-unfrozen` also times them with the
 * backbone's weight gradients computed, as before they were skipped), with the wasm heap's
 * high-water mark, and the throughput of the heaviest operations. MONAI's figures come from the
 * same run when MONAI imports here (bench/monai.ts; `--no-monai` skips it), else from
 * shared/baselines.md, and the line says which. `--conv-methods xnnpack,direct,winograd` times the
 * forward pass and the convolutions once per 3x3x3 convolution method, back to back: XNNPACK's
 * conv2d, the kit's direct kernel and its Winograd kernel (lib/networks/wasm-conv.ts; `--direct-conv
 * both` is xnnpack,direct); FSEFT_DIRECT_CONV=0 / FSEFT_WINOGRAD=0 choose the method for the rest.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_ORDER, BackendName, switchBackend } from '../lib/backend/backend';
import { argument } from './args';
import { monaiAvailable, runMonai } from './monai';
import { batchMatMul } from '../lib/networks/matmul';
import { conv3dSame } from '../lib/networks/ops';
import { directConvolutionTuning } from '../lib/networks/wasm-conv';
import { CheckpointMode, SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { Adapter, METHODS, zeroShotRow } from '../lib/adapters/adapters';
import { AdamW } from '../lib/training/adamw';
import { CONFIGS, checkpointFor, forwardPass, frozenBackboneStep, trainingStep } from './swin-workload';

/** MONAI 1.2 / PyTorch 1.13 CPU, 2 threads, re-measured on a quiet machine of this kind on 2026-11-28 (shared/baselines.md). */
const MONAI_REFERENCE: Record<string, { forward: number; step: number }> = { a: { forward: 3.35, step: 5.93 }, b: { forward: 12.5, step: 35.3 } };

/** MONAI's figures for a configuration: measured now when MONAI runs here, else the reference. */
function monaiFigures(config: string, featureSize: number, size: number, train: boolean): { forward: number; step?: number; source: string } {
  const available = monaiAvailable();
  if (!available.ok) return { ...MONAI_REFERENCE[config], source: 'shared/baselines.md, 2026-11-28' };
  const measured = runMonai<{ forward: number; step?: number }>('swinunetr.py', ['--feature-size', String(featureSize), '--size', String(size), '--threads', String(os.cpus().length), '--repeat', String(REPEAT), ...(train ? [] : ['--no-train'])]);
  return { forward: measured.forward, step: measured.step, source: `same run, ${os.cpus().length} threads` };
}

/** Native and GPU backends: fast enough that a whole-tensor read-back would dominate an op's time, and a (b) training step takes seconds. */
function accelerated(backend: string): boolean {
  return backend === 'webgpu' || backend === 'tensorflow';
}

const REPEAT = Number(argument('repeat') ?? 1);

type ConvolutionMethod = 'xnnpack' | 'direct' | 'winograd';
const CONVOLUTION_METHODS: ConvolutionMethod[] = ['xnnpack', 'direct', 'winograd'];

/** The method the kit uses as configured (FSEFT_DIRECT_CONV, FSEFT_WINOGRAD). */
function configuredMethod(): ConvolutionMethod {
  if (!directConvolutionTuning.enabled) return 'xnnpack';
  return directConvolutionTuning.winograd ? 'winograd' : 'direct';
}

/**
 * `--conv-methods xnnpack,direct,winograd` (`--direct-conv both`: xnnpack,direct): every forward
 * and convolution timing once per convolution method, back to back; else the configured one.
 */
const METHODS_AB: ConvolutionMethod[] | null = (() => {
  const listed = argument('conv-methods');
  if (listed) {
    const methods = listed.split(',') as ConvolutionMethod[];
    const unknown = methods.filter((m) => !CONVOLUTION_METHODS.includes(m));
    if (unknown.length) throw new Error(`--conv-methods: unknown ${unknown.join(', ')} (choose from ${CONVOLUTION_METHODS.join(', ')})`);
    return methods;
  }
  return argument('direct-conv') === 'both' ? ['xnnpack', 'direct'] : null;
})();

/** Runs `measure` with each convolution method (or the configured one), and restores the setting. */
async function eachConvolutionMethod<T>(measure: (method: ConvolutionMethod) => Promise<T>): Promise<Array<{ method: ConvolutionMethod; value: T }>> {
  const saved = { enabled: directConvolutionTuning.enabled, winograd: directConvolutionTuning.winograd };
  const out: Array<{ method: ConvolutionMethod; value: T }> = [];
  try {
    for (const method of METHODS_AB ?? [configuredMethod()]) {
      directConvolutionTuning.enabled = method !== 'xnnpack';
      directConvolutionTuning.winograd = method === 'winograd';
      out.push({ method, value: await measure(method) });
    }
  } finally {
    Object.assign(directConvolutionTuning, saved);
  }
  return out;
}

/** The configured method's measurement where it was taken, else the first. */
function configuredValue<T>(values: Array<{ method: ConvolutionMethod; value: T }>): T {
  return (values.find((v) => v.method === configuredMethod()) ?? values[0]).value;
}

const convolutionLabel = (method: ConvolutionMethod) =>
  method === 'xnnpack' ? "XNNPACK's conv2d" : method === 'direct' ? "the kit's direct kernel" : `the kit's Winograd F(${directConvolutionTuning.winogradTile},3) kernel (direct where Cin is not a multiple of 4)`;

/** Median wall time of `repeat` calls; every call ends by reading a result back. */
async function seconds(run: () => Promise<void>, repeat = REPEAT): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const start = performance.now();
    await run();
    times.push((performance.now() - start) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

async function forwardSeconds(model: SwinUNETR, x: tf.Tensor5D, repeat = REPEAT): Promise<number> {
  return seconds(() => forwardPass(model, x), repeat);
}

async function stepSeconds(model: SwinUNETR, x: tf.Tensor5D, target: tf.Tensor, optimizer: AdamW, checkpoint: CheckpointMode, repeat = REPEAT): Promise<number> {
  return seconds(() => trainingStep(model, x, target, optimizer, checkpoint), repeat);
}

/**
 * Waits for an op's result and disposes it. GPU backends read back one sum, not the whole tensor:
 * a 0.5 GB read-back would time the bus instead of the op.
 */
async function settle(y: tf.Tensor): Promise<void> {
  if (accelerated(tf.getBackend())) {
    const total = tf.sum(y);
    await total.data();
    total.dispose();
  } else {
    await y.data();
  }
  y.dispose();
}

async function opThroughput(): Promise<string[]> {
  const lines: string[] = [];
  const conv = async (size: number, cin: number, cout: number) => {
    const x = tf.randomNormal([1, size, size, size, cin]) as tf.Tensor5D;
    const w = tf.randomNormal([3, 3, 3, cin, cout]) as tf.Tensor5D;
    for (const { method, value: s } of await eachConvolutionMethod(async () => {
      await settle(conv3dSame(x, w));
      return seconds(() => settle(conv3dSame(x, w)));
    })) {
      lines.push(`conv3d 3x3x3 ${size}^3 ${cin}->${cout} (${convolutionLabel(method)}): ${s.toFixed(3)} s, ${((2 * size ** 3 * 27 * cin * cout) / s / 1e9).toFixed(1)} GFLOP/s`);
    }
    tf.dispose([x, w]);
  };
  await conv(64, 24, 12);
  await conv(48, 96, 48);
  await conv(96, 48, 48);
  await conv(24, 192, 192);
  // Window attention scores q k^T, batch = windows x heads: the kit's batchMatMul (k laid out
  // transposed, as the network does) against tf.matMul with transposeB.
  const attention = async (batch: number, tokens: number, dim: number) => {
    const q = tf.randomNormal([batch, tokens, dim]) as tf.Tensor3D;
    const k = tf.randomNormal([batch, tokens, dim]) as tf.Tensor3D;
    const kT = tf.transpose(k, [0, 2, 1]) as tf.Tensor3D;
    const flops = 2 * batch * tokens * tokens * dim;
    for (const [name, product] of [['batchMatMul', () => batchMatMul(q, kT)], ['tf.matMul', () => tf.matMul(q, k, false, true)]] as const) {
      await settle(product());
      const s = await seconds(() => settle(product()));
      lines.push(`attention scores ${batch} x ${tokens}x${dim}x${tokens} (${name}): ${s.toFixed(3)} s, ${(flops / s / 1e9).toFixed(2)} GFLOP/s`);
    }
    tf.dispose([q, k, kT]);
  };
  await attention(375, 343, 4);
  await attention(1029, 343, 16);
  return lines;
}

/** The wasm heap's size: it only grows, so after a step it is the process's high-water mark. */
function heapMiB(): string {
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm;
  return wasm ? `heap high-water ${(wasm.HEAPU8.length / 2 ** 20).toFixed(0)} MiB` : `${(tf.memory().numBytes / 2 ** 20).toFixed(0)} MiB held after`;
}

/**
 * One few-shot method's training step on the frozen backbone, in this (child) process: a fresh
 * network and backend, so that the heap's high-water mark is the step's own and a failure leaves
 * nothing behind for the next measurement. Prints one JSON line.
 */
async function frozenStepChild(backend: BackendName, config: string, method: string, frozenBackbone: boolean): Promise<void> {
  await switchBackend(backend);
  const { featureSize, size } = CONFIGS[config];
  if (!(method in METHODS)) throw new Error(`--frozen: unknown method ${method}`);
  const input = METHODS[method as keyof typeof METHODS].input;
  if (input === 'features') throw new Error(`--frozen: ${method} trains on cached features, not through the network`);
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize, outChannels: 29 }), 0);
  const x = tf.randomNormal([1, size, size, size, 1], 0, 1, 'float32', 3) as tf.Tensor5D;
  const target = tf.tidy(() => tf.cast(tf.greater(tf.randomNormal([1, size, size, size, 1], 0, 1, 'float32', 7), 1), 'float32'));
  const adapter = Adapter.create(method as keyof typeof METHODS, model, zeroShotRow(model, 5), 1);
  const optimizer = new AdamW({ learningRate: 1e-4 });
  const checkpoint = checkpointFor(config, method);
  const run = () => frozenBackboneStep(model, adapter, input as 'image' | 'decoder', x, target, optimizer, checkpoint.mode, frozenBackbone);
  await seconds(run, 1);
  const step = await seconds(run);
  console.log(JSON.stringify({ step, trained: adapter.trainableParameters, checkpoint: checkpoint.label, heap: heapMiB() }));
}

/** Training steps of few-shot methods on the frozen backbone (`--frozen`, default lora and ft-last), each in a child process. */
function frozenSteps(backend: BackendName, config: string, monaiStep: number | undefined): string[] {
  const methods = (argument('frozen') ?? 'lora,ft-last').split(',').filter((m) => m !== 'none');
  const lines: string[] = [];
  for (const method of methods) {
    for (const frozenBackbone of process.argv.includes('--compare-unfrozen') ? [true, false] : [true]) {
      const label = `train step, ${method} on the ${frozenBackbone ? 'frozen' : 'unfrozen'} backbone`;
      const passed = process.argv.slice(2).filter((a, i, all) => !['--backends', '--configs', '--frozen'].includes(a) && !['--backends', '--configs', '--frozen'].includes(all[i - 1]));
      const child = spawnSync(process.execPath, [__filename, '--frozen-child', [backend, config, method, String(frozenBackbone)].join(','), ...passed], { encoding: 'utf8', maxBuffer: 1 << 24 });
      const last = child.stdout.trim().split('\n').pop() ?? '';
      if (child.status !== 0 || !last.startsWith('{')) {
        const reason = (child.stderr || child.stdout).split('\n').find((l) => /Error|error/.test(l)) ?? `exit ${child.status}`;
        lines.push(`${label}: failed: ${reason.trim()}`);
        continue;
      }
      const r = JSON.parse(last) as { step: number; trained: number; checkpoint: string; heap: string };
      lines.push(`${label} (${r.trained.toLocaleString('en-US')} trained, checkpoint ${r.checkpoint}): ${r.step.toFixed(2)} s${monaiStep ? ` (${(r.step / monaiStep).toFixed(2)}x MONAI's whole-network step)` : ''}, ${r.heap}`);
    }
  }
  return lines;
}

async function main(): Promise<void> {
  const child = argument('frozen-child');
  if (child) {
    const [backend, config, method, frozen] = child.split(',');
    return frozenStepChild(backend as BackendName, config, method, frozen === 'true');
  }
  const backends = (argument('backends')?.split(',') ?? [...BACKEND_ORDER]) as BackendName[];
  const configs = argument('configs')?.split(',') ?? ['a', 'b'];
  const train = !process.argv.includes('--no-train');
  console.log(`SwinUNETR benchmark, node ${process.version}; median of ${REPEAT} call(s) after one warm-up call`);
  console.log(`MONAI: ${monaiAvailable().reason}`);
  console.log('backend | config | forward | MONAI forward | ratio | train step | MONAI step | ratio | MONAI from');
  const monai = new Map<string, ReturnType<typeof monaiFigures>>();
  for (const backend of backends) {
    try {
      const choice = await switchBackend(backend);
      console.log(`${backend} | ${choice.reason}`);
    } catch (error) {
      console.log(`${backend} | not available: ${(error as Error).message}`);
      continue;
    }
    for (const name of configs) {
      const { featureSize, size } = CONFIGS[name];
      // The plain CPU backend would need tens of minutes for (b) and for training steps.
      if (backend === 'cpu' && name === 'b') {
        console.log(`${backend} | (${name}) F=${featureSize} ${size}^3 | skipped (about 1 GFLOP/s: tens of minutes)`);
        continue;
      }
      if (!monai.has(name)) monai.set(name, monaiFigures(name, featureSize, size, train));
      const reference = monai.get(name)!;
      const model = SwinUNETR.create(swinUnetrConfig({ featureSize, outChannels: 29 }), 0);
      const x = tf.randomNormal([1, size, size, size, 1]) as tf.Tensor5D;
      const forwards = await eachConvolutionMethod(async () => {
        await forwardSeconds(model, x, 1);
        return forwardSeconds(model, x);
      });
      const forward = configuredValue(forwards);
      if (METHODS_AB) {
        for (const { method, value } of forwards) console.log(`${backend} | (${name}) forward with ${convolutionLabel(method)}: ${value.toFixed(2)} s, ${(value / reference.forward).toFixed(2)}x MONAI's`);
      }
      let step = 'not run';
      let stepRatio = '-';
      // On wasm a (b) training step takes minutes (and more than its 4 GB heap).
      if (train && backend !== 'cpu' && (name === 'a' || accelerated(backend))) {
        const target = tf.tidy(() => tf.cast(tf.greater(tf.randomNormal([1, size, size, size, 29]), 1), 'float32'));
        const optimizer = new AdamW({ learningRate: 1e-4 });
        const checkpoint = checkpointFor(name);
        await stepSeconds(model, x, target, optimizer, checkpoint.mode, 1);
        const seconds = await stepSeconds(model, x, target, optimizer, checkpoint.mode);
        step = `${seconds.toFixed(2)} s (checkpoint ${checkpoint.label})`;
        if (reference.step) stepRatio = (seconds / reference.step).toFixed(2);
        optimizer.dispose();
        target.dispose();
      } else if (name === 'b' && train) {
        step = "not run (at this size the whole network reaches the 4 GiB heap's limit)";
      }
      const monaiStep = reference.step ? `${reference.step.toFixed(2)} s` : 'not run';
      // MONAI's speed on a shared machine varies (its same-run figures here have been 1.6-2x its
      // quiet-machine reference): print the ratio against the reference as well.
      const quiet = MONAI_REFERENCE[name];
      if (reference.source.startsWith('same run')) console.log(`${backend} | (${name}) against shared/baselines.md's MONAI (quiet machine, ${quiet.forward} s / ${quiet.step} s): forward ${(forward / quiet.forward).toFixed(2)}${stepRatio !== '-' ? `, step ${(Number(step.split(' ')[0]) / quiet.step).toFixed(2)}` : ''}`);
      console.log(`${backend} | (${name}) F=${featureSize} ${size}^3, ${(model.parameterCount / 1e6).toFixed(1)} M params | ${forward.toFixed(2)} s | ${reference.forward.toFixed(2)} s | ${(forward / reference.forward).toFixed(2)} | ${step} | ${monaiStep} | ${stepRatio} | ${reference.source}`);
      model.dispose();
      x.dispose();
      if (train && backend !== 'cpu') for (const line of frozenSteps(backend, name, reference.step)) console.log(`${backend} | (${name}) ${line}`);
    }
    if (backend !== 'cpu') for (const line of await opThroughput()) console.log(`  ${backend}: ${line}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
