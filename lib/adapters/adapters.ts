import * as tf from '@tensorflow/tfjs-core';
import { linear } from '../networks/ops';
import { SwinUNETR } from '../networks/swin-unetr';
import { Rng } from '../util/random';
import { AdapterInput, CropInputs, uniformWeights } from './method';
import { AdaptMethod, methodOf } from './registry';

export { ADAPT_METHODS, METHODS, METHOD_DESCRIPTIONS, parseMethod } from './registry';
export type { AdaptMethod } from './registry';
export type { AdapterInput, CropInputs, FewShotMethod } from './method';

export function inputOf(method: AdaptMethod): AdapterInput {
  return methodOf(method).input;
}

/** Initial 1-channel head: the organ's row of the pretrained classifier ("zero-shot" weights), or random. */
export interface HeadInit {
  weight: Float32Array;
  bias: number;
}

/** The pretrained output head's row for `channel` (0-based). */
export function zeroShotRow(model: SwinUNETR, channel: number): HeadInit {
  const weight = model.p('out.conv.conv.weight').dataSync() as Float32Array; // [F, out]
  const bias = model.p('out.conv.conv.bias').dataSync() as Float32Array;
  const f = model.config.featureSize;
  const out = model.config.outChannels;
  return { weight: Float32Array.from({ length: f }, (_, i) => weight[i * out + channel]), bias: bias[channel] };
}

/**
 * A few-shot model for one organ: the method's variables (registry.ts, one file per method) plus a
 * one-channel head, and a forward pass from crop inputs to logits. Frozen-backbone methods hold
 * only their own small parameters.
 */
export class Adapter {
  private constructor(
    readonly method: AdaptMethod,
    readonly featureSize: number,
    readonly variables: Map<string, tf.Variable>,
    /** The network whose code runs decoder1 (ft-last) or the whole model (ft, scratch). */
    private readonly network?: SwinUNETR,
  ) {}

  /**
   * `scratchEncoder`: for 'scratch', a model whose Swin encoder (`swinViT.*`) starts the network, as
   * the reference code starts Scratch from the self-supervised encoder; the rest stays random.
   */
  static create(method: AdaptMethod, backbone: SwinUNETR, init: HeadInit | undefined, seed: number, scratchEncoder?: SwinUNETR): Adapter {
    const spec = methodOf(method);
    const f = backbone.config.featureSize;
    const rng = new Rng(seed);
    const { variables, network } = spec.create({ backbone, featureSize: f, rng, seed, scratchEncoder });
    const head = spec.head === 'random' || !init ? { weight: uniformWeights(rng, f, f), bias: rng.uniform(-1, 1) / Math.sqrt(f) } : init;
    const add = (name: string, shape: number[], values: Float32Array) => {
      const initial = tf.tensor(values, shape);
      variables.set(name, tf.variable(initial, spec.trains));
      initial.dispose();
    };
    add('head.weight', [f, 1], Float32Array.from(head.weight));
    add('head.bias', [1], Float32Array.of(head.bias));
    return new Adapter(method, f, variables, network);
  }

  /** Rebuilds an adapter from saved variables (see adapter-io). */
  static fromVariables(method: AdaptMethod, featureSize: number, variables: Map<string, tf.Variable>, backbone: SwinUNETR): Adapter {
    return new Adapter(method, featureSize, variables, methodOf(method).restore(variables, backbone));
  }

  get input(): AdapterInput {
    return methodOf(this.method).input;
  }

  get trainable(): tf.Variable[] {
    return methodOf(this.method).trains ? [...this.variables.values()] : [];
  }

  get trainableParameters(): number {
    return this.trainable.reduce((sum, v) => sum + v.size, 0);
  }

  private v(name: string): tf.Tensor {
    const value = this.variables.get(name);
    if (!value) throw new Error(`adapter has no variable ${name}`);
    return value;
  }

  /** Logits [1, X, Y, Z, 1] of one crop. */
  forward(inputs: CropInputs, options: { checkpoint?: boolean } = {}): tf.Tensor5D {
    return tf.tidy(() => {
      const features = methodOf(this.method).features(inputs, (name) => this.v(name), this.network, { ...options, tuning: this.variables });
      return linear(features, this.v('head.weight') as tf.Tensor2D, this.v('head.bias') as tf.Tensor1D) as tf.Tensor5D;
    });
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
  }
}
