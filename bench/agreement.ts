/**
 * npm run bench:agreement [-- --backend webgpu --reference wasm --feature-size 12 --size 64]
 * Runs the same seeded SwinUNETR (random weights, 29 outputs) on two backends and prints how far
 * apart they are: logits, decoder features, the loss and every parameter's gradient. A backend
 * without a MONAI parity test (webgpu, tensorflow) is checked against one that has it (wasm, cpu).
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendName, switchBackend } from '../lib/backend/backend';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { FseftError } from '../lib/util/errors';
import { argument } from './args';

interface Outcome {
  logits: Float32Array;
  features: Float32Array;
  loss: number;
  /** The same loss recomputed in float64 on the host from the read-back logits. */
  hostLoss: number;
  grads: Map<string, Float32Array>;
  seconds: number;
}

async function runOn(backend: BackendName, featureSize: number, size: number): Promise<Outcome> {
  const choice = await switchBackend(backend);
  console.log(`${backend}: ${choice.reason}`);
  const start = performance.now();
  const model = SwinUNETR.create(swinUnetrConfig({ featureSize, outChannels: 29 }), 0);
  const x = tf.randomNormal([1, size, size, size, 1], 0, 1, 'float32', 7) as tf.Tensor5D;
  const target = tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([1, size, size, size, 29], 0, 1, 'float32', 11), 0.9), 'float32'));
  const out = model.forward(x);
  const logits = (await out.logits.data()) as Float32Array;
  const targetValues = (await target.data()) as Float32Array;
  const features = (await out.features.data()) as Float32Array;
  tf.dispose([out.logits, out.features]);
  const variables = [...model.params.values()];
  const { value, grads } = tf.variableGrads(() => tf.losses.sigmoidCrossEntropy(target, model.forward(x, { checkpoint: true }).logits) as tf.Scalar, variables);
  const gradArrays = new Map<string, Float32Array>();
  for (const [name, variable] of model.params) gradArrays.set(name, (await grads[variable.name].data()) as Float32Array);
  const loss = (await value.data())[0];
  tf.dispose([value, ...Object.values(grads), x, target]);
  model.dispose();
  return { logits, features, loss, hostLoss: sigmoidCrossEntropy64(logits, targetValues), grads: gradArrays, seconds: (performance.now() - start) / 1000 };
}

function sigmoidCrossEntropy64(logits: Float32Array, target: Float32Array): number {
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i];
    total += Math.max(l, 0) - l * target[i] + Math.log1p(Math.exp(-Math.abs(l)));
  }
  return total / logits.length;
}

function compare(ours: Float32Array, reference: Float32Array): { maxAbs: number; relative: number } {
  let maxAbs = 0;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ours.length; i++) {
    const d = ours[i] - reference[i];
    maxAbs = Math.max(maxAbs, Math.abs(d));
    diff += d * d;
    norm += reference[i] * reference[i];
  }
  return { maxAbs, relative: Math.sqrt(diff / Math.max(norm, 1e-30)) };
}

async function main(): Promise<void> {
  const backend = (argument('backend') ?? 'webgpu') as BackendName;
  const reference = (argument('reference') ?? 'wasm') as BackendName;
  const featureSize = Number(argument('feature-size') ?? 12);
  const size = Number(argument('size') ?? 64);
  console.log(`SwinUNETR F=${featureSize}, ${size}^3, 29 outputs, seeded random weights: ${backend} against ${reference}`);
  // Both backends must start before minutes go into the reference run.
  for (const name of [backend, reference]) await switchBackend(name);
  const expected = await runOn(reference, featureSize, size);
  const actual = await runOn(backend, featureSize, size);
  const fmt = (r: { maxAbs: number; relative: number }) => `max abs ${r.maxAbs.toExponential(2)}, relative L2 ${r.relative.toExponential(2)}`;
  console.log(`logits: ${fmt(compare(actual.logits, expected.logits))}`);
  console.log(`decoder features: ${fmt(compare(actual.features, expected.features))}`);
  console.log(`loss (float32 on the backend / float64 on the host from its logits): ${backend} ${actual.loss.toFixed(6)} / ${actual.hostLoss.toFixed(6)}, ${reference} ${expected.loss.toFixed(6)} / ${expected.hostLoss.toFixed(6)}`);
  const gradients = [...expected.grads].map(([name, ref]) => ({ name, ...compare(actual.grads.get(name)!, ref) })).sort((a, b) => b.relative - a.relative);
  console.log(`gradients of ${gradients.length} parameter tensors, worst three by relative L2:`);
  for (const g of gradients.slice(0, 3)) console.log(`  ${g.name}: ${fmt(g)}`);
  console.log(`time (forward + gradient, first call, compilation included): ${reference} ${expected.seconds.toFixed(1)} s, ${backend} ${actual.seconds.toFixed(1)} s`);
}

main().catch((error) => {
  console.error(error instanceof FseftError ? `error: ${error.message}` : error);
  process.exitCode = 1;
});
