/** The SwinUNETR workloads the benchmarks time: the two configurations, one forward pass, one training step. */
import * as tf from '@tensorflow/tfjs-core';
import { argument } from './args';
import { CheckpointMode, SwinUNETR } from '../lib/networks/swin-unetr';
import { AdamW } from '../lib/training/adamw';

/** (a) feature size 12 at 64^3, (b) feature size 48 at 96^3; 29 outputs each. */
export const CONFIGS: Record<string, { featureSize: number; size: number }> = { a: { featureSize: 12, size: 64 }, b: { featureSize: 48, size: 96 } };

const CHECKPOINT_MODES: Record<string, CheckpointMode> = { none: false, swin: 'swin', all: true };

/**
 * Gradient checkpointing of the training step (`--checkpoint none|swin|all`): by default none for
 * (a), whose activations fit; every block for (b), whose full-resolution blocks would not fit
 * wasm's 4 GiB otherwise.
 */
export function checkpointFor(config: string): { mode: CheckpointMode; label: string } {
  const label = argument('checkpoint') ?? (config === 'a' ? 'none' : 'all');
  if (!(label in CHECKPOINT_MODES)) throw new Error(`--checkpoint must be none, swin or all, got '${label}'`);
  return { mode: CHECKPOINT_MODES[label], label };
}

/** One forward pass, read back and released. */
export async function forwardPass(model: SwinUNETR, x: tf.Tensor5D): Promise<void> {
  const out = model.forward(x);
  await out.logits.data();
  tf.dispose([out.logits, out.features]);
}

/** One training step: sigmoid cross-entropy against `target`, backward pass, AdamW update. */
export async function trainingStep(model: SwinUNETR, x: tf.Tensor5D, target: tf.Tensor, optimizer: AdamW, checkpoint: CheckpointMode): Promise<void> {
  const variables = [...model.params.values()];
  const { value, grads } = tf.variableGrads(() => tf.losses.sigmoidCrossEntropy(target, model.forward(x, { checkpoint }).logits) as tf.Scalar, variables);
  optimizer.apply(new Map(variables.map((v) => [v, grads[v.name]])));
  await value.data();
  value.dispose();
}
