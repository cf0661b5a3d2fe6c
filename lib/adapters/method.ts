import * as tf from '@tensorflow/tfjs-core';
import { CheckpointMode, SwinUNETR, SwinUNETRConfig, swinUnetrParameterSpecs } from '../networks/swin-unetr';
import { Rng } from '../util/random';

/** What a method's forward pass consumes: cached last-decoder features, cached decoder1 inputs, or the image. */
export type AdapterInput = 'features' | 'decoder' | 'image';

export interface CropInputs {
  image?: tf.Tensor5D;
  features?: tf.Tensor5D;
  dec0?: tf.Tensor5D;
  enc0?: tf.Tensor5D;
}

export interface MethodSetup {
  backbone: SwinUNETR;
  featureSize: number;
  /** Draws the method's initial weights (the head's come after them, from the same stream). */
  rng: Rng;
  seed: number;
  /** Scratch: a model whose Swin encoder starts the network. */
  scratchEncoder?: SwinUNETR;
}

/**
 * One few-shot method: what it trains, what it reads, how it is built and rebuilt from saved
 * variables, and its trainable parameter count. Every method ends in a one-channel 1x1x1 head
 * (`head.weight`, `head.bias`) that the Adapter adds; a method supplies the features under it.
 */
export interface FewShotMethod {
  readonly description: string;
  readonly input: AdapterInput;
  /** False only for generalization, which runs the pretrained head row unchanged. */
  readonly trains: boolean;
  /** Where its head starts: the recipe's choice (zero-shot row or random), or always random (scratch). */
  readonly head: 'recipe' | 'random';
  /** Its own variables at their initial values, and the network it runs (ft-last and the PEFT methods: the backbone; ft, scratch: their own). */
  create(setup: MethodSetup): { variables: Map<string, tf.Variable>; network?: SwinUNETR };
  /** The network a saved adapter of this method runs, from its variables. */
  restore(variables: Map<string, tf.Variable>, backbone: SwinUNETR): SwinUNETR | undefined;
  /**
   * The features the one-channel head reads, for one crop; `param` reads the method's variables,
   * `options.tuning` holds all of them by name (what a method inside the backbone passes to it),
   * and `options.frozen` says whether the backbone's own weights are constants (true unless a
   * benchmark asks otherwise; see SwinUNETR.forward).
   */
  features(inputs: CropInputs, param: (name: string) => tf.Tensor, network: SwinUNETR | undefined, options: { checkpoint?: CheckpointMode; tuning?: ReadonlyMap<string, tf.Tensor>; frozen?: boolean }): tf.Tensor5D;
  /** Trainable parameters for a backbone of this configuration, head included, without building anything. */
  parameterCount(config: SwinUNETRConfig): number;
}

export function need(tensor: tf.Tensor5D | undefined, name: string): tf.Tensor5D {
  if (!tensor) throw new Error(`this adapter needs ${name} inputs`);
  return tensor;
}

/** Kaiming-uniform-like draws in [-1, 1] / sqrt(fan-in), from the method's stream. */
export function uniformWeights(rng: Rng, count: number, fanIn: number): Float32Array {
  return Float32Array.from({ length: count }, () => rng.uniform(-1, 1) / Math.sqrt(fanIn));
}

export function trainableVariable(values: Float32Array, shape: number[]): tf.Variable {
  const initial = tf.tensor(values, shape);
  const variable = tf.variable(initial, true);
  initial.dispose();
  return variable;
}

/**
 * The two F -> F convolutions of an adapter block ([k, k, k, F, F]): `adapter.conv1` drawn from
 * the stream, `adapter.conv2` drawn too or zero (then the untrained block adds nothing).
 */
export function adapterConvolutions(rng: Rng, featureSize: number, kernel: 1 | 3, second: 'drawn' | 'zero'): Map<string, tf.Variable> {
  const shape = [kernel, kernel, kernel, featureSize, featureSize];
  const count = kernel ** 3 * featureSize * featureSize;
  const conv1 = trainableVariable(uniformWeights(rng, count, kernel ** 3 * featureSize), shape);
  const conv2 = trainableVariable(second === 'drawn' ? uniformWeights(rng, count, kernel ** 3 * featureSize) : new Float32Array(count), shape);
  return new Map([['adapter.conv1', conv1], ['adapter.conv2', conv2]]);
}

/** Size of the one-channel head: F weights and a bias. */
export const headSize = (config: SwinUNETRConfig) => config.featureSize + 1;

/** Parameters of the network's specs that pass `keep` (all of them by default). */
export function specParameters(config: SwinUNETRConfig, keep: (name: string) => boolean = () => true): number {
  return swinUnetrParameterSpecs(config)
    .filter((spec) => keep(spec.name))
    .reduce((sum, spec) => sum + spec.torchShape.reduce((a, b) => a * b, 1), 0);
}
