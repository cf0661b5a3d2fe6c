import * as tf from '@tensorflow/tfjs-core';
import { linear, variableOf } from '../networks/ops';
import { initialValue, toKitLayout } from '../networks/parameters';
import { CheckpointMode, SwinUNETR } from '../networks/swin-unetr';
import { FseftError } from '../util/errors';
import { Rng } from '../util/random';
import { AdapterInput, CropInputs, uniformWeights } from './method';
import { AdaptMethod, methodOf } from './registry';

export { ADAPT_METHODS, METHODS, METHOD_DESCRIPTIONS, parseMethod } from './registry';
export type { AdaptMethod } from './registry';
export type { AdapterInput, CropInputs, FewShotMethod } from './method';

/**
 * The decoder during adaptation (the reference's --decoder): 'frozen' (default), 'fine-tuned' (every
 * decoder block trains from its pretrained weights) or 'new' (decoder blocks and head start from
 * random weights). A decoder that trains makes the method read the image: no feature cache, no TI.
 */
export type DecoderMode = 'frozen' | 'fine-tuned' | 'new';
export const DECODER_MODES: readonly DecoderMode[] = ['frozen', 'fine-tuned', 'new'];

/** The reference lowers every method's learning rate to 1e-4 when its decoder trains (fseft/configs.py). */
export const TRAINED_DECODER_LEARNING_RATE = 1e-4;

export function parseDecoderMode(value: string | undefined, method: AdaptMethod): DecoderMode {
  const mode = (value ?? 'frozen') as DecoderMode;
  if (!DECODER_MODES.includes(mode)) throw new FseftError(`decoder must be one of ${DECODER_MODES.join(', ')}, got '${value}'`);
  if (mode !== 'frozen' && (method === 'generalization' || method === 'ft' || method === 'scratch')) {
    throw new FseftError(`a ${mode} decoder does not apply to ${method} (${method === 'generalization' ? 'it trains nothing' : 'it trains the whole network already'})`);
  }
  return mode;
}

export function inputOf(method: AdaptMethod, decoder: DecoderMode = 'frozen'): AdapterInput {
  return decoder === 'frozen' ? methodOf(method).input : 'image';
}

/** Names of the decoder blocks' parameters (MONAI's decoder5 ... decoder1). */
const isDecoderParameter = (name: string) => name.startsWith('decoder');

/** Initial 1-channel head: the organ's row of the pretrained classifier ("zero-shot" weights), or random. */
export interface HeadInit {
  weight: Float32Array;
  bias: number;
}

/**
 * A multi-class head over several organs (the reference's multi-class objective): a background
 * channel (xavier-uniform, bias 0) then one channel per organ from its row (zero-shot) or random
 * (undefined), with softmax across them.
 */
export interface MultiClassHead {
  organs: Array<HeadInit | undefined>;
}

const isMultiClass = (init: HeadInit | MultiClassHead | undefined): init is MultiClassHead => init !== undefined && 'organs' in init;

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
    /** The network whose code runs decoder1 (ft-last), the backbone (PEFT, a trained decoder) or the whole model (ft, scratch). */
    private readonly network: SwinUNETR | undefined,
    readonly decoder: DecoderMode,
  ) {}

  /**
   * `scratchEncoder`: for 'scratch', a model whose Swin encoder (`swinViT.*`) starts the network, as
   * the reference code starts Scratch from the self-supervised encoder; the rest stays random.
   */
  static create(method: AdaptMethod, backbone: SwinUNETR, init: HeadInit | MultiClassHead | undefined, seed: number, scratchEncoder?: SwinUNETR, decoder: DecoderMode = 'frozen'): Adapter {
    parseDecoderMode(decoder, method);
    const spec = methodOf(method);
    const f = backbone.config.featureSize;
    const rng = new Rng(seed);
    const created = spec.create({ backbone, featureSize: f, rng, seed, scratchEncoder });
    const variables = created.variables;
    if (decoder !== 'frozen') {
      // Trainable decoder blocks under their network names, which the backbone's forward pass reads
      // through ForwardOptions.tuning ('new': PyTorch's default initialisation, drawn from the stream).
      for (const p of backbone.specs.filter((s) => isDecoderParameter(s.name))) {
        variables.get(p.name)?.dispose();
        const host = decoder === 'new' ? toKitLayout(p, initialValue(p, rng)) : undefined;
        variables.set(p.name, variableOf(host ? tf.tensor(host.data, host.shape, 'float32') : backbone.p(p.name).clone(), true));
      }
    }
    const network = decoder === 'frozen' ? created.network : (created.network ?? backbone);
    const randomRow = () => ({ weight: uniformWeights(rng, f, f), bias: rng.uniform(-1, 1) / Math.sqrt(f) });
    const keepRows = spec.head !== 'random' && decoder !== 'new';
    let rows: HeadInit[];
    if (isMultiClass(init)) {
      if (method === 'generalization') throw new FseftError('generalization runs the pretrained head: it has no multi-class head to train');
      const bound = Math.sqrt(6 / (f + 1));
      const background = { weight: Float32Array.from({ length: f }, () => rng.uniform(-bound, bound)), bias: 0 };
      rows = [background, ...init.organs.map((row) => (keepRows && row ? row : randomRow()))];
    } else rows = [keepRows && init ? init : randomRow()];
    const add = (name: string, shape: number[], values: Float32Array) => {
      const initial = tf.tensor(values, shape);
      variables.set(name, tf.variable(initial, spec.trains));
      initial.dispose();
    };
    // [F, channels] with channel c in column c.
    add('head.weight', [f, rows.length], Float32Array.from({ length: f * rows.length }, (_, i) => rows[i % rows.length].weight[Math.floor(i / rows.length)]));
    add('head.bias', [rows.length], Float32Array.from(rows, (row) => row.bias));
    return new Adapter(method, f, variables, network, decoder);
  }

  /** Rebuilds an adapter from saved variables (see adapter-io). */
  static fromVariables(method: AdaptMethod, featureSize: number, variables: Map<string, tf.Variable>, backbone: SwinUNETR, decoder: DecoderMode = 'frozen'): Adapter {
    parseDecoderMode(decoder, method);
    if (decoder !== 'frozen') {
      for (const p of backbone.specs.filter((s) => isDecoderParameter(s.name))) if (!variables.has(p.name)) throw new FseftError(`the saved adapter has a ${decoder} decoder but no ${p.name}`);
    }
    const network = methodOf(method).restore(variables, backbone);
    return new Adapter(method, featureSize, variables, decoder === 'frozen' ? network : (network ?? backbone), decoder);
  }

  get input(): AdapterInput {
    return inputOf(this.method, this.decoder);
  }

  /** Channels of the head: 1 (one organ, sigmoid) or organs + 1 (background first, softmax). */
  get outputChannels(): number {
    return this.v('head.bias').shape[0];
  }

  /** Probabilities from this adapter's logits: sigmoid for one organ, softmax across a multi-class head. */
  activate(logits: tf.Tensor5D): tf.Tensor5D {
    return (this.outputChannels === 1 ? tf.sigmoid(logits) : tf.softmax(logits)) as tf.Tensor5D;
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

  /**
   * Logits [1, X, Y, Z, 1] of one crop. The backbone is frozen (SwinUNETR.forward's `frozen`):
   * `frozenBackbone: false` also computes its weight gradients, which training throws away; it
   * exists only so that `npm run bench:model` can measure what freezing saves.
   */
  forward(inputs: CropInputs, options: { checkpoint?: CheckpointMode; frozenBackbone?: boolean } = {}): tf.Tensor5D {
    return tf.tidy(() => {
      const method = methodOf(this.method);
      const param = (name: string) => this.v(name);
      const tuning = { checkpoint: options.checkpoint, tuning: this.variables, frozen: options.frozenBackbone ?? true };
      let features: tf.Tensor5D;
      if (this.decoder === 'frozen' || method.input === 'image') features = method.features(inputs, param, this.network, tuning);
      else {
        // The trained decoder's output; a features method then applies its own block, while
        // ft-last's block (decoder1) is already part of the trained decoder.
        if (!inputs.image) throw new Error('an adapter with a trained decoder needs image inputs');
        const out = this.network!.forward(inputs.image, tuning);
        out.logits.dispose();
        features = method.input === 'features' ? method.features({ features: out.features }, param, this.network, tuning) : out.features;
      }
      return linear(features, this.v('head.weight') as tf.Tensor2D, this.v('head.bias') as tf.Tensor1D) as tf.Tensor5D;
    });
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
  }
}
