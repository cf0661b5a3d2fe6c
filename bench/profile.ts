/**
 * npm run bench:profile [-- --backend wasm --config a|b --mode forward|step --checkpoint none|swin|all|fine --top 20 --kernel Name
 *                          --method lora|ft-last|...]
 * (`--method`: the training step of that few-shot method on the frozen backbone instead of the whole network's.)
 * Where a SwinUNETR forward pass or training step spends its time: wall time per kernel (summed
 * over calls), with call counts and the peak of backend memory. Synchronous backends (wasm, cpu)
 * give exact kernel times; asynchronous ones report when their timer query resolves.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendName, switchBackend } from '../lib/backend/backend';
import { argument } from './args';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { AdamW } from '../lib/training/adamw';
import { Adapter, METHODS, zeroShotRow } from '../lib/adapters/adapters';
import { CONFIGS, checkpointFor, forwardPass, frozenBackboneStep, trainingStep } from './swin-workload';

async function main(): Promise<void> {
  const backend = (argument('backend') ?? 'wasm') as BackendName;
  const config = argument('config') ?? 'a';
  const mode = argument('mode') ?? 'step';
  const method = argument('method') as keyof typeof METHODS | undefined;
  if (method && !(method in METHODS)) throw new Error(`--method: unknown method ${method}`);
  const checkpoint = checkpointFor(config, method);
  const top = Number(argument('top') ?? 20);
  const choice = await switchBackend(backend);
  console.log(`backend ${backend} (${choice.reason}); config (${config}); ${method ? `${method} on the frozen backbone` : mode}; checkpoint ${checkpoint.label}`);
  const { featureSize, size } = CONFIGS[config];
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize, outChannels: 29 }), 0);
  const x = tf.randomNormal([1, size, size, size, 1]) as tf.Tensor5D;
  const target = tf.tidy(() => tf.cast(tf.greater(tf.randomNormal([1, size, size, size, 29]), 1), 'float32'));
  const optimizer = new AdamW({ learningRate: 1e-4 });
  const adapter = method ? Adapter.create(method, model, zeroShotRow(model, 5), 1) : undefined;
  const input = method ? METHODS[method].input : 'image';
  if (input === 'features') throw new Error(`--method: ${method} trains on cached features, not through the network`);
  const oneClass = tf.slice(target, [0, 0, 0, 0, 0], [-1, -1, -1, -1, 1]);
  const run = () =>
    adapter ? frozenBackboneStep(model, adapter, input, x, oneClass, optimizer, checkpoint.mode) : mode === 'forward' ? forwardPass(model, x) : trainingStep(model, x, target, optimizer, checkpoint.mode);
  await run();
  const start = performance.now();
  const profile = await tf.profile(run);
  const wall = (performance.now() - start) / 1000;
  const totals = new Map<string, { ms: number; calls: number }>();
  for (const kernel of profile.kernels) {
    const ms = Number(await kernel.kernelTimeMs);
    const entry = totals.get(kernel.name) ?? { ms: 0, calls: 0 };
    entry.ms += Number.isFinite(ms) ? ms : 0;
    entry.calls++;
    totals.set(kernel.name, entry);
  }
  const sorted = [...totals].sort((a, b) => b[1].ms - a[1].ms);
  const kernelSeconds = sorted.reduce((sum, [, e]) => sum + e.ms, 0) / 1000;
  console.log(`wall ${wall.toFixed(2)} s (profiled), kernels ${kernelSeconds.toFixed(2)} s, peak ${(profile.peakBytes / 2 ** 20).toFixed(0)} MiB, ${profile.kernels.length} kernel calls`);
  for (const [name, e] of sorted.slice(0, top)) console.log(`  ${name.padEnd(28)} ${(e.ms / 1000).toFixed(3).padStart(8)} s  ${String(e.calls).padStart(5)} calls`);
  const detail = argument('kernel');
  if (detail) {
    // The slowest calls of one kernel, by input shapes.
    const byShapes = new Map<string, { ms: number; calls: number }>();
    for (const kernel of profile.kernels.filter((k) => k.name === detail)) {
      const key = JSON.stringify(kernel.inputShapes);
      const entry = byShapes.get(key) ?? { ms: 0, calls: 0 };
      entry.ms += Number(await kernel.kernelTimeMs);
      entry.calls++;
      byShapes.set(key, entry);
    }
    console.log(`${detail} by input shapes:`);
    for (const [shapes, e] of [...byShapes].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) console.log(`  ${(e.ms / 1000).toFixed(3)} s ${e.calls} calls ${shapes}`);
  }
  tf.dispose([x, target, oneClass]);
  optimizer.dispose();
  model.dispose();
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
