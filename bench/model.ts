/**
 * npm run bench:model [-- --backends wasm,cpu,webgpu --configs a,b --no-train --repeat N --checkpoint none|swin|all]
 * Times SwinUNETR forward passes and training steps (forward, backward, AdamW) per backend:
 *   (a) feature_size 12, 64^3 input, 29 outputs   (b) feature_size 48, 96^3 input, 29 outputs
 * and the throughput of the heaviest operations. Reference: MONAI 1.2 on PyTorch CPU on this
 * machine kind needs 5.8 s / 10.2 s for (a) and 26.4 s / 74.0 s for (b) (shared/baselines.md).
 */
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_ORDER, BackendName, switchBackend } from '../lib/backend/backend';
import { argument } from './args';
import { batchMatMul } from '../lib/networks/matmul';
import { conv3dSame } from '../lib/networks/ops';
import { CheckpointMode, SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { AdamW } from '../lib/training/adamw';
import { CONFIGS, checkpointFor, forwardPass, trainingStep } from './swin-workload';

const MONAI: Record<string, { forward: number; step: number }> = { a: { forward: 5.8, step: 10.2 }, b: { forward: 26.4, step: 74.0 } };

/** Native and GPU backends: fast enough that a whole-tensor read-back would dominate an op's time, and a (b) training step takes seconds. */
function accelerated(backend: string): boolean {
  return backend === 'webgpu' || backend === 'tensorflow';
}

const REPEAT = Number(argument('repeat') ?? 1);

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
    await settle(conv3dSame(x, w));
    const s = await seconds(() => settle(conv3dSame(x, w)));
    tf.dispose([x, w]);
    lines.push(`conv3d 3x3x3 ${size}^3 ${cin}->${cout}: ${s.toFixed(3)} s, ${((2 * size ** 3 * 27 * cin * cout) / s / 1e9).toFixed(1)} GFLOP/s`);
  };
  await conv(64, 24, 12);
  await conv(48, 96, 48);
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

async function main(): Promise<void> {
  const backends = (argument('backends')?.split(',') ?? [...BACKEND_ORDER]) as BackendName[];
  const configs = argument('configs')?.split(',') ?? ['a', 'b'];
  const train = !process.argv.includes('--no-train');
  console.log(`SwinUNETR benchmark, node ${process.version}; median of ${REPEAT} call(s) after one warm-up call`);
  console.log('backend | config | forward | MONAI forward | train step | MONAI step');
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
      const model = SwinUNETR.create(swinUnetrConfig({ featureSize, outChannels: 29 }), 0);
      const x = tf.randomNormal([1, size, size, size, 1]) as tf.Tensor5D;
      await forwardSeconds(model, x, 1);
      const forward = await forwardSeconds(model, x);
      let step = 'not run';
      // On wasm a (b) training step takes minutes (and more than its 4 GB heap).
      if (train && backend !== 'cpu' && (name === 'a' || accelerated(backend))) {
        const target = tf.tidy(() => tf.cast(tf.greater(tf.randomNormal([1, size, size, size, 29]), 1), 'float32'));
        const optimizer = new AdamW({ learningRate: 1e-4 });
        const checkpoint = checkpointFor(name);
        await stepSeconds(model, x, target, optimizer, checkpoint.mode, 1);
        step = `${(await stepSeconds(model, x, target, optimizer, checkpoint.mode)).toFixed(2)} s (checkpoint ${checkpoint.label})`;
        optimizer.dispose();
        target.dispose();
      } else if (name === 'b' && train) {
        step = 'not run (inference only at this size on CPU)';
      }
      console.log(`${backend} | (${name}) F=${featureSize} ${size}^3, ${(model.parameterCount / 1e6).toFixed(1)} M params | ${forward.toFixed(2)} s | ${MONAI[name].forward} s | ${step} | ${MONAI[name].step} s`);
      model.dispose();
      x.dispose();
    }
    if (backend !== 'cpu') for (const line of await opThroughput()) console.log(`  ${backend}: ${line}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
