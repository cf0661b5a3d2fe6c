import * as tf from '@tensorflow/tfjs-core';
import { conv3dSame, instanceNorm, leakyRelu, linear, variableOf } from '../networks/ops';
import { SwinUNETR } from '../networks/swin-unetr';
import { FseftError } from '../util/errors';
import { Rng } from '../util/random';

export const ADAPT_METHODS = ['generalization', 'scratch', 'ft', 'ft-last', 'lp', 'adapter', 'adapter-k1', 'residual-adapter', 'mlp-adapter'] as const;
export type AdaptMethod = (typeof ADAPT_METHODS)[number];

export const METHOD_DESCRIPTIONS: Record<AdaptMethod, string> = {
  generalization: 'no training: the pretrained head channel of the organ',
  scratch: 'the whole network from random initialisation',
  ft: 'fine-tune the whole network',
  'ft-last': 'fine-tune the last decoder block and a 1-channel head',
  lp: 'linear probe (1x1x1 conv) on frozen features, from the zero-shot head row',
  adapter: "spatial adapter: MONAI UnetResBlock(F, F, kernel 3) + 1x1x1 head (the paper's)",
  'adapter-k1': "the same UnetResBlock with kernel 1 + head: the 'MLP' adapter of Fig. 2a in the reference code",
  'residual-adapter': 'x + conv3(ReLU(conv3(x))), second conv zero-initialised, + head',
  'mlp-adapter': "x + conv1(ReLU(conv1(x))), second conv zero-initialised, + head: the later code's residual MLP adapter",
};

export function parseMethod(name: string): AdaptMethod {
  if ((ADAPT_METHODS as readonly string[]).includes(name)) return name as AdaptMethod;
  throw new FseftError(`unknown method '${name}'; methods: ${ADAPT_METHODS.join(', ')}`);
}

/** What a method's forward pass consumes: cached last-decoder features, cached decoder1 inputs, or the image. */
export type AdapterInput = 'features' | 'decoder' | 'image';

export function inputOf(method: AdaptMethod): AdapterInput {
  if (method === 'ft' || method === 'scratch') return 'image';
  if (method === 'ft-last') return 'decoder';
  return 'features';
}

export interface CropInputs {
  image?: tf.Tensor5D;
  features?: tf.Tensor5D;
  dec0?: tf.Tensor5D;
  enc0?: tf.Tensor5D;
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
 * Copies the Swin encoder of `source` into `target` (same shapes required), e.g. a self-supervised
 * encoder imported with `fseft import-torch`.
 */
function copyEncoder(source: SwinUNETR, target: SwinUNETR): void {
  let copied = 0;
  for (const [name, parameter] of target.params) {
    if (!name.startsWith('swinViT.')) continue;
    const value = source.params.get(name);
    if (!value) throw new FseftError(`the encoder to start Scratch from has no ${name}`);
    if (value.shape.join(',') !== parameter.shape.join(',')) throw new FseftError(`the encoder to start Scratch from has ${name} of shape [${value.shape}], the network needs [${parameter.shape}]`);
    (parameter as tf.Variable).assign(value);
    copied++;
  }
  if (copied === 0) throw new FseftError('the network has no Swin encoder parameters to start from');
}

/**
 * A few-shot model for one organ: trainable variables plus a forward pass from crop inputs to
 * one-channel logits. Frozen-backbone methods hold only their own small parameters.
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
    const f = backbone.config.featureSize;
    const rng = new Rng(seed);
    const variables = new Map<string, tf.Variable>();
    const add = (name: string, shape: number[], values: Float32Array) => variables.set(name, variableOf(tf.tensor(values, shape), method !== 'generalization'));
    const uniform = (n: number, fanIn: number) => Float32Array.from({ length: n }, () => rng.uniform(-1, 1) / Math.sqrt(fanIn));
    if (method === 'adapter' || method === 'adapter-k1') {
      const k = method === 'adapter' ? 3 : 1;
      add('adapter.conv1', [k, k, k, f, f], uniform(k ** 3 * f * f, k ** 3 * f));
      add('adapter.conv2', [k, k, k, f, f], uniform(k ** 3 * f * f, k ** 3 * f));
    } else if (method === 'residual-adapter' || method === 'mlp-adapter') {
      const k = method === 'residual-adapter' ? 3 : 1;
      add('adapter.conv1', [k, k, k, f, f], uniform(k ** 3 * f * f, k ** 3 * f));
      add('adapter.conv2', [k, k, k, f, f], new Float32Array(k ** 3 * f * f));
    }
    let network: SwinUNETR | undefined;
    if (method === 'ft-last') {
      network = backbone;
      for (const spec of backbone.specs.filter((s) => s.name.startsWith('decoder1.'))) {
        const value = backbone.p(spec.name);
        variables.set(spec.name, variableOf(value.clone(), true));
      }
    } else if (method === 'ft') {
      network = new SwinUNETR(backbone.config, new Map([...backbone.params].map(([name, p]) => [name, variableOf(p.clone(), true)])));
    } else if (method === 'scratch') {
      network = SwinUNETR.create(backbone.config, seed);
      if (scratchEncoder) {
        try {
          copyEncoder(scratchEncoder, network);
        } catch (error) {
          network.dispose();
          throw error;
        }
      }
    }
    if (network && network !== backbone) for (const [name, p] of network.params) variables.set(`network.${name}`, p as tf.Variable);
    const head = method === 'scratch' || !init ? { weight: uniform(f, f), bias: rng.uniform(-1, 1) / Math.sqrt(f) } : init;
    add('head.weight', [f, 1], Float32Array.from(head.weight));
    add('head.bias', [1], Float32Array.of(head.bias));
    return new Adapter(method, f, variables, network);
  }

  /** Rebuilds an adapter from saved variables (see adapter-io). */
  static fromVariables(method: AdaptMethod, featureSize: number, variables: Map<string, tf.Variable>, backbone: SwinUNETR): Adapter {
    let network: SwinUNETR | undefined;
    if (method === 'ft-last') network = backbone;
    if (method === 'ft' || method === 'scratch') {
      const params = new Map([...variables].filter(([name]) => name.startsWith('network.')).map(([name, v]) => [name.slice('network.'.length), v]));
      network = new SwinUNETR(backbone.config, params);
    }
    return new Adapter(method, featureSize, variables, network);
  }

  get input(): AdapterInput {
    return inputOf(this.method);
  }

  get trainable(): tf.Variable[] {
    return this.method === 'generalization' ? [] : [...this.variables.values()];
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
      let features: tf.Tensor5D;
      if (this.input === 'image') {
        const out = this.network!.forward(need(inputs.image, 'image'), { checkpoint: options.checkpoint });
        out.logits.dispose();
        features = out.features;
      } else if (this.input === 'decoder') {
        const param = (name: string) => this.v(name);
        features = this.network!.lastDecoder(need(inputs.dec0, 'dec0'), need(inputs.enc0, 'enc0'), param);
      } else {
        features = this.adapt(need(inputs.features, 'features'));
      }
      return linear(features, this.v('head.weight') as tf.Tensor2D, this.v('head.bias') as tf.Tensor1D) as tf.Tensor5D;
    });
  }

  private adapt(x: tf.Tensor5D): tf.Tensor5D {
    if (this.method === 'adapter' || this.method === 'adapter-k1') {
      // MONAI UnetResBlock(F, F, k, norm instance): conv-norm-lrelu-conv-norm, + input, lrelu; with
      // kernel 1 the convolutions are per-voxel products.
      const f = this.featureSize;
      const conv = (input: tf.Tensor5D, name: string): tf.Tensor5D =>
        this.method === 'adapter' ? conv3dSame(input, this.v(name) as tf.Tensor5D) : (linear(input, tf.reshape(this.v(name), [f, f]) as tf.Tensor2D) as tf.Tensor5D);
      let out = instanceNorm(conv(x, 'adapter.conv1'), 0.01);
      out = instanceNorm(conv(out, 'adapter.conv2'));
      return leakyRelu(tf.add(out, x)) as tf.Tensor5D;
    }
    if (this.method === 'residual-adapter') {
      const hidden = tf.relu(conv3dSame(x, this.v('adapter.conv1') as tf.Tensor5D)) as tf.Tensor5D;
      return tf.add(x, conv3dSame(hidden, this.v('adapter.conv2') as tf.Tensor5D)) as tf.Tensor5D;
    }
    if (this.method === 'mlp-adapter') {
      const f = this.featureSize;
      const hidden = tf.relu(linear(x, tf.reshape(this.v('adapter.conv1'), [f, f]) as tf.Tensor2D));
      return tf.add(x, linear(hidden, tf.reshape(this.v('adapter.conv2'), [f, f]) as tf.Tensor2D)) as tf.Tensor5D;
    }
    return x;
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
  }
}

function need(tensor: tf.Tensor5D | undefined, name: string): tf.Tensor5D {
  if (!tensor) throw new Error(`this adapter needs ${name} inputs`);
  return tensor;
}
