/** The SwinUNETR workloads the benchmarks time: the two configurations, one forward pass, one training step. */
import * as tf from '@tensorflow/tfjs-core';
import { argument } from './args';
import { Adapter } from '../lib/adapters/adapters';
import { CheckpointMode, SwinUNETR } from '../lib/networks/swin-unetr';
import { AdamW } from '../lib/training/adamw';

/** (a) feature size 12 at 64^3, (b) feature size 48 at 96^3; 29 outputs each. */
export const CONFIGS: Record<string, { featureSize: number; size: number }> = { a: { featureSize: 12, size: 64 }, b: { featureSize: 48, size: 96 } };

const CHECKPOINT_MODES: Record<string, CheckpointMode> = { none: false, swin: 'swin', all: true, fine: 'fine' };

/**
 * Gradient checkpointing of the training step (`--checkpoint none|swin|all|fine`): by default none
 * for (a), whose activations fit; every block for (b)'s whole-network step, whose full-resolution
 * blocks would not fit wasm's 4 GiB otherwise. For (b)'s few-shot steps on the frozen backbone,
 * the fastest mode that fits with room to spare (2026-11-29): none for ft-last (2.3 GiB, set by
 * the untaped trunk), every block for a method that trains through the whole network (LoRA:
 * 3.2 GiB and 47 s, against 3.4 GiB and 58 s with 'fine'; none does not fit).
 */
export function checkpointFor(config: string, method?: string): { mode: CheckpointMode; label: string } {
  const frozenDefault = method === 'ft-last' ? 'none' : 'all';
  const label = argument('checkpoint') ?? (config === 'a' ? 'none' : method ? frozenDefault : 'all');
  if (!(label in CHECKPOINT_MODES)) throw new Error(`--checkpoint must be none, swin, all or fine, got '${label}'`);
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

/**
 * One training step of a few-shot method on a frozen backbone, as `fseft adapt` runs it without
 * the feature cache: an image method (a PEFT method) trains through the whole frozen network; a
 * decoder method (ft-last) gets its inputs from a pass without gradients, then trains the last
 * block. Loss: sigmoid cross-entropy of the one-channel output against `target`. With
 * `frozenBackbone` false the backbone's weight gradients are computed too and thrown away (the
 * kit before it froze them), for comparison.
 */
export async function frozenBackboneStep(model: SwinUNETR, adapter: Adapter, input: 'image' | 'decoder', x: tf.Tensor5D, target: tf.Tensor, optimizer: AdamW, checkpoint: CheckpointMode, frozenBackbone = true): Promise<void> {
  let inputs: { image?: tf.Tensor5D; dec0?: tf.Tensor5D; enc0?: tf.Tensor5D } = { image: x };
  if (input === 'decoder') {
    inputs = model.decoderInputsOf(x);
  }
  const { value, grads } = tf.variableGrads(() => tf.losses.sigmoidCrossEntropy(target, adapter.forward(inputs, { checkpoint, frozenBackbone })) as tf.Scalar, adapter.trainable);
  optimizer.apply(new Map(adapter.trainable.map((v) => [v, grads[v.name]])));
  await value.data();
  tf.dispose([value, ...(input === 'decoder' ? [inputs.dec0!, inputs.enc0!] : [])]);
}
