import * as tf from '@tensorflow/tfjs-core';
import { FseftError } from '../util/errors';
import { Rng } from '../util/random';
import { windowAttention } from './attention';
import { variableOf, checkpointed, concatChannels, depthToSpace2, gatherRows, gelu, layerNorm, linear, lookupRows, pipeline, releaseIntermediates, spaceToDepth2 } from './ops';
import { ParamSpec, ParameterMap, initialValue, kitShape, toKitLayout } from './parameters';
import { WindowMask, biasIndex, maskOfWindows, windowPlan } from './swin-windows';
import { unetResBlock } from './unet-res-block';

/** MONAI `SwinUNETR` arguments (v1 architecture). */
export interface SwinUNETRConfig {
  arch: 'swinunetr';
  inChannels: number;
  outChannels: number;
  featureSize: number;
  depths: number[];
  numHeads: number[];
  windowSize: number;
  normName: 'instance';
  normalize: boolean;
  dropRate: number;
  attnDropRate: number;
  dropPathRate: number;
  /** 'merging' is MONAI's default PatchMerging (the v0.9 layout); 'mergingv2' is PatchMergingV2. */
  downsample: 'merging' | 'mergingv2';
}

export const DEFAULT_SWIN_UNETR: SwinUNETRConfig = {
  arch: 'swinunetr',
  inChannels: 1,
  outChannels: 29,
  featureSize: 48,
  depths: [2, 2, 2, 2],
  numHeads: [3, 6, 12, 24],
  windowSize: 7,
  normName: 'instance',
  normalize: true,
  dropRate: 0,
  attnDropRate: 0,
  dropPathRate: 0,
  downsample: 'merging',
};

/**
 * Bounds of what the kit accepts as a SwinUNETR, from a file or an option: MONAI's published models
 * use F = 12 to 48 with depths of 2; F = 96 (about 250 million parameters) is the ceiling here, so
 * that a forged checkpoint or config cannot make the kit build a network of many gigabytes.
 */
export const SWIN_UNETR_LIMITS = { featureSize: 96, depth: 24, heads: 64, windowSize: 16, inChannels: 16, outChannels: 1024 } as const;

export function swinUnetrConfig(overrides: Partial<SwinUNETRConfig> = {}): SwinUNETRConfig {
  const config = { ...DEFAULT_SWIN_UNETR, ...overrides };
  const whole = (value: unknown, name: string, min: number, max: number) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new FseftError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  };
  const rate = (value: unknown, name: string) => {
    if (typeof value !== 'number' || !(value >= 0 && value < 1)) throw new FseftError(`${name} must be at least 0 and below 1, got ${JSON.stringify(value)}`);
  };
  whole(config.featureSize, 'feature size', 12, SWIN_UNETR_LIMITS.featureSize);
  if (config.featureSize % 12 !== 0) throw new FseftError(`feature size must be divisible by 12 (MONAI), got ${config.featureSize}`);
  whole(config.inChannels, 'input channels', 1, SWIN_UNETR_LIMITS.inChannels);
  whole(config.outChannels, 'output channels', 1, SWIN_UNETR_LIMITS.outChannels);
  whole(config.windowSize, 'window size', 1, SWIN_UNETR_LIMITS.windowSize);
  if (!Array.isArray(config.depths) || !Array.isArray(config.numHeads) || config.depths.length !== 4 || config.numHeads.length !== 4) throw new FseftError('depths and numHeads need four stages each');
  config.depths.forEach((depth, stage) => whole(depth, `depth of stage ${stage}`, 1, SWIN_UNETR_LIMITS.depth));
  config.numHeads.forEach((heads, stage) => whole(heads, `heads of stage ${stage}`, 1, SWIN_UNETR_LIMITS.heads));
  config.numHeads.forEach((heads, stage) => {
    if ((config.featureSize * 2 ** stage) % heads !== 0) throw new FseftError(`stage ${stage}: ${config.featureSize * 2 ** stage} channels are not divisible by ${heads} heads`);
  });
  if (config.downsample !== 'merging' && config.downsample !== 'mergingv2') throw new FseftError(`downsample must be 'merging' or 'mergingv2', got ${JSON.stringify(config.downsample)}`);
  if (config.normName !== 'instance') throw new FseftError(`only instance normalisation is implemented (norm_name 'instance'), got ${JSON.stringify(config.normName)}`);
  if (typeof config.normalize !== 'boolean') throw new FseftError(`normalize must be true or false, got ${JSON.stringify(config.normalize)}`);
  if (config.arch !== 'swinunetr') throw new FseftError(`arch must be 'swinunetr', got ${JSON.stringify(config.arch)}`);
  rate(config.dropRate, 'dropout rate');
  rate(config.attnDropRate, 'attention dropout rate');
  rate(config.dropPathRate, 'drop path rate');
  return config;
}

/** Every parameter of the network with its MONAI state-dict name, in MONAI's order. */
export function swinUnetrParameterSpecs(config: SwinUNETRConfig): ParamSpec[] {
  const specs: ParamSpec[] = [];
  const f = config.featureSize;
  const w = config.windowSize;
  const add = (name: string, torchShape: number[], kind: ParamSpec['kind'], init: ParamSpec['init'], fanIn?: number) => specs.push({ name, torchShape, kind, init, fanIn });
  add('swinViT.patch_embed.proj.weight', [f, config.inChannels, 2, 2, 2], 'patchEmbed', 'kaimingUniform', config.inChannels * 8);
  add('swinViT.patch_embed.proj.bias', [f], 'vector', 'convBias', config.inChannels * 8);
  for (let stage = 0; stage < 4; stage++) {
    const dim = f * 2 ** stage;
    const heads = config.numHeads[stage];
    for (let b = 0; b < config.depths[stage]; b++) {
      const p = `swinViT.layers${stage + 1}.0.blocks.${b}.`;
      add(`${p}norm1.weight`, [dim], 'vector', 'ones');
      add(`${p}norm1.bias`, [dim], 'vector', 'zeros');
      add(`${p}attn.relative_position_bias_table`, [(2 * w - 1) ** 3, heads], 'table', 'truncNormal02');
      add(`${p}attn.qkv.weight`, [3 * dim, dim], 'linear', 'truncNormal02');
      add(`${p}attn.qkv.bias`, [3 * dim], 'vector', 'zeros');
      add(`${p}attn.proj.weight`, [dim, dim], 'linear', 'truncNormal02');
      add(`${p}attn.proj.bias`, [dim], 'vector', 'zeros');
      add(`${p}norm2.weight`, [dim], 'vector', 'ones');
      add(`${p}norm2.bias`, [dim], 'vector', 'zeros');
      add(`${p}mlp.linear1.weight`, [4 * dim, dim], 'linear', 'truncNormal02');
      add(`${p}mlp.linear1.bias`, [4 * dim], 'vector', 'zeros');
      add(`${p}mlp.linear2.weight`, [dim, 4 * dim], 'linear', 'truncNormal02');
      add(`${p}mlp.linear2.bias`, [dim], 'vector', 'zeros');
    }
    const d = `swinViT.layers${stage + 1}.0.downsample.`;
    add(`${d}reduction.weight`, [2 * dim, 8 * dim], 'linear', 'truncNormal02');
    add(`${d}norm.weight`, [8 * dim], 'vector', 'ones');
    add(`${d}norm.bias`, [8 * dim], 'vector', 'zeros');
  }
  const resBlock = (prefix: string, cin: number, cout: number) => {
    add(`${prefix}conv1.conv.weight`, [cout, cin, 3, 3, 3], 'conv3d', 'kaimingUniform', cin * 27);
    add(`${prefix}conv2.conv.weight`, [cout, cout, 3, 3, 3], 'conv3d', 'kaimingUniform', cout * 27);
    if (cin !== cout) add(`${prefix}conv3.conv.weight`, [cout, cin, 1, 1, 1], 'conv1x1', 'kaimingUniform', cin);
  };
  resBlock('encoder1.layer.', config.inChannels, f);
  resBlock('encoder2.layer.', f, f);
  resBlock('encoder3.layer.', 2 * f, 2 * f);
  resBlock('encoder4.layer.', 4 * f, 4 * f);
  resBlock('encoder10.layer.', 16 * f, 16 * f);
  for (const [name, cin, cout] of DECODERS(f)) {
    add(`${name}.transp_conv.conv.weight`, [cin, cout, 2, 2, 2], 'convTranspose2', 'kaimingUniform', cout * 8);
    resBlock(`${name}.conv_block.`, 2 * cout, cout);
  }
  add('out.conv.conv.weight', [config.outChannels, f, 1, 1, 1], 'conv1x1', 'kaimingUniform', f);
  add('out.conv.conv.bias', [config.outChannels], 'vector', 'convBias', f);
  return specs;
}

const DECODERS = (f: number): Array<[string, number, number]> => [
  ['decoder5', 16 * f, 8 * f],
  ['decoder4', 8 * f, 4 * f],
  ['decoder3', 4 * f, 2 * f],
  ['decoder2', 2 * f, f],
  ['decoder1', f, f],
];

/** State-dict entries that MONAI stores but that are buffers, not parameters (recomputed here). */
export function swinUnetrBufferNames(config: SwinUNETRConfig): string[] {
  const names: string[] = [];
  for (let stage = 0; stage < 4; stage++) for (let b = 0; b < config.depths[stage]; b++) names.push(`swinViT.layers${stage + 1}.0.blocks.${b}.attn.relative_position_index`);
  return names;
}

export interface ForwardOptions {
  /** Also return the five normalised Swin hidden states (channels-last). */
  hiddenStates?: boolean;
  /** Training mode: dropout and drop-path active (with the given generator). */
  training?: { rng: Rng };
  /**
   * Gradient checkpointing: blocks recompute their activations during backpropagation instead of
   * keeping them (less memory, more time). 'swin' checkpoints the Swin transformer blocks, as
   * MONAI's use_checkpoint does; true checkpoints the convolutional blocks as well, whose
   * full-resolution activations dominate at large inputs. Without it, feature size 12 at 64^3
   * trains in wasm's 4 GiB.
   */
  checkpoint?: CheckpointMode;
  /** Also return the inputs of the last decoder block (dec0, enc0): what FT-Last trains on. */
  decoderInputs?: boolean;
  /**
   * Parameters of a parameter-efficient method (lib/adapters/methods/peft.ts). A name of the
   * network replaces that parameter (BitFit, LayerNorm affine); a name under a Swin block's prefix
   * adds a module there: \`attn.qkv.lora_A.weight\` and \`lora_B.weight\` (LoRA on the qkv
   * projection), \`mlpAdapter.*\` (AdaptFormer's parallel MLP adapter), \`compacter_1.*\` and
   * \`compacter_2.*\` (Compacter's PHM layers on the attention and MLP branches).
   */
  tuning?: ReadonlyMap<string, tf.Tensor>;
}

/** The modules a method may add to a Swin block, by name under the block's prefix. */
export const SWIN_BLOCK_MODULES = {
  loraA: 'attn.qkv.lora_A.weight',
  loraB: 'attn.qkv.lora_B.weight',
  adaptformerDown: ['mlpAdapter.down_proj.weight', 'mlpAdapter.down_proj.bias'],
  adaptformerUp: ['mlpAdapter.up_proj.weight', 'mlpAdapter.up_proj.bias'],
  compacter: ['compacter_1', 'compacter_2'],
} as const;

/** AdaptFormer's fixed scale of its adapter branch (the reference's MLPAdapter scale). */
export const ADAPTFORMER_SCALE = 0.1;

/** Which blocks recompute their activations in the backward pass (see ForwardOptions.checkpoint). */
export type CheckpointMode = boolean | 'swin';

export interface SwinUNETROutput {
  /** [1, D, H, W, outChannels] */
  logits: tf.Tensor5D;
  /** [1, D, H, W, featureSize]: the last decoder features (input of the output head, what adapters consume). */
  features: tf.Tensor5D;
  hidden?: tf.Tensor5D[];
  /** [1, D/2, H/2, W/2, F]: output of decoder2, input of decoder1. */
  dec0?: tf.Tensor5D;
  /** [1, D, H, W, F]: encoder1 applied to the input, the skip connection of decoder1. */
  enc0?: tf.Tensor5D;
}

/**
 * MONAI's SwinUNETR on TensorFlow.js, channels-last: input [1, D, H, W, C] with the same spatial
 * axis order as PyTorch's [1, C, D, H, W]. Parameters carry MONAI's state-dict names so a MONAI
 * checkpoint maps one to one.
 */
export class SwinUNETR {
  readonly specs: ParamSpec[];

  constructor(
    readonly config: SwinUNETRConfig,
    readonly params: ParameterMap,
  ) {
    this.specs = swinUnetrParameterSpecs(config);
    for (const spec of this.specs) {
      const p = params.get(spec.name);
      if (!p) throw new FseftError(`parameter ${spec.name} is missing`);
      const expected = kitShape(spec);
      if (p.shape.join() !== expected.join()) throw new FseftError(`parameter ${spec.name} has shape [${p.shape}], expected [${expected}]`);
    }
  }

  /** A network with PyTorch's default initialisation, drawn from `seed`. */
  static create(config: SwinUNETRConfig, seed = 0): SwinUNETR {
    const rng = new Rng(seed);
    const params: ParameterMap = new Map();
    for (const spec of swinUnetrParameterSpecs(config)) {
      const host = toKitLayout(spec, initialValue(spec, rng));
      params.set(spec.name, variableOf(tf.tensor(host.data, host.shape, 'float32'), true, spec.name.replace(/[^A-Za-z0-9_.]/g, '_') + `_${uniqueSuffix()}`));
    }
    return new SwinUNETR(config, params);
  }

  get parameterCount(): number {
    let total = 0;
    for (const spec of this.specs) total += spec.torchShape.reduce((a, b) => a * b, 1);
    return total;
  }

  p(name: string): tf.Tensor {
    const value = this.params.get(name);
    if (!value) throw new Error(`no parameter ${name}`);
    return value;
  }

  /** Checks the input shape: [1, D, H, W, inChannels] with D, H, W divisible by 32. */
  checkInput(x: tf.Tensor): void {
    if (x.rank !== 5 || x.shape[0] !== 1) throw new FseftError(`input must be [1, D, H, W, C], got [${x.shape}]`);
    if (x.shape[4] !== this.config.inChannels) throw new FseftError(`input has ${x.shape[4]} channels, the model expects ${this.config.inChannels}`);
    const bad = x.shape.slice(1, 4).filter((n) => n % 32 !== 0);
    if (bad.length > 0) throw new FseftError(`input spatial size ${x.shape.slice(1, 4).join('x')} must be divisible by 32 on every axis`);
  }

  forward(x: tf.Tensor5D, options: ForwardOptions = {}): SwinUNETROutput {
    this.checkInput(x);
    return tf.tidy(() => {
      const hidden = this.swinViT(x, options);
      const convolutional = options.checkpoint === true;
      const res = (prefix: string, input: tf.Tensor5D) => this.block(prefix, [input], convolutional, options, (param, i) => this.resBlock(prefix, i as tf.Tensor5D, param));
      const up = (name: string, input: tf.Tensor5D, skip: tf.Tensor5D) =>
        this.block(`${name}.`, [input, skip], convolutional, options, (param, i, k) => this.upBlock(name, i as tf.Tensor5D, k as tf.Tensor5D, param));
      const enc0 = res('encoder1.layer.', x);
      const enc1 = res('encoder2.layer.', hidden[0]);
      const enc2 = res('encoder3.layer.', hidden[1]);
      const enc3 = res('encoder4.layer.', hidden[2]);
      const dec4 = res('encoder10.layer.', hidden[4]);
      const dec3 = up('decoder5', dec4, hidden[3]);
      const dec2 = up('decoder4', dec3, enc3);
      const dec1 = up('decoder3', dec2, enc2);
      const dec0 = up('decoder2', dec1, enc1);
      const features = up('decoder1', dec0, enc0);
      const param = this.resolver(options);
      const logits = linear(features, param('out.conv.conv.weight') as tf.Tensor2D, param('out.conv.conv.bias') as tf.Tensor1D) as tf.Tensor5D;
      const result: SwinUNETROutput = { logits, features };
      if (options.hiddenStates) result.hidden = hidden;
      if (options.decoderInputs) Object.assign(result, { dec0, enc0 });
      return result as unknown as tf.TensorContainerObject;
    }) as unknown as SwinUNETROutput;
  }

  /** The Swin encoder: five hidden states, layer-normalised without parameters when `normalize`. */
  swinViT(x: tf.Tensor5D, options: ForwardOptions = {}): tf.Tensor5D[] {
    const param = this.resolver(options);
    const patches = spaceToDepth2(x);
    let current = linear(patches, param('swinViT.patch_embed.proj.weight') as tf.Tensor2D, param('swinViT.patch_embed.proj.bias') as tf.Tensor1D) as tf.Tensor5D;
    current = this.dropout(current, this.config.dropRate, options);
    const outputs = [this.projOut(current)];
    let blockIndex = 0;
    const totalBlocks = this.config.depths.reduce((a, b) => a + b, 0);
    for (let stage = 0; stage < 4; stage++) {
      const [, d, h, w, c] = current.shape;
      let tokens = tf.reshape(current, [d * h * w, c]) as tf.Tensor2D;
      for (let b = 0; b < this.config.depths[stage]; b++, blockIndex++) {
        const dropPath = totalBlocks > 1 ? (this.config.dropPathRate * blockIndex) / (totalBlocks - 1) : 0;
        tokens = this.swinBlockMaybeCheckpointed(`swinViT.layers${stage + 1}.0.blocks.${b}.`, tokens, [d, h, w], b % 2 === 1, this.config.numHeads[stage], dropPath, options);
      }
      current = this.patchMerging(`swinViT.layers${stage + 1}.0.downsample.`, tf.reshape(tokens, [1, d, h, w, c]) as tf.Tensor5D, param);
      outputs.push(this.projOut(current));
    }
    return outputs;
  }

  /** Reads a parameter: a method's replacement when it has one (ForwardOptions.tuning), else the network's. */
  private resolver(options: ForwardOptions): (name: string) => tf.Tensor {
    const tuning = options.tuning;
    return tuning ? (name) => tuning.get(name) ?? this.p(name) : (name) => this.p(name);
  }

  private projOut(x: tf.Tensor5D): tf.Tensor5D {
    return this.config.normalize ? (layerNorm(x) as tf.Tensor5D) : x;
  }

  /**
   * Runs one block whose parameters share `prefix`, checkpointed when `checkpoint` is set: its
   * activations are recomputed during backpropagation instead of kept.
   * `run` reads parameters through `param` so that the checkpoint can route their gradients.
   */
  private block<T extends tf.Tensor>(
    prefix: string,
    inputs: tf.Tensor[],
    checkpoint: boolean,
    options: ForwardOptions,
    run: (param: (name: string) => tf.Tensor, ...inputs: tf.Tensor[]) => T,
  ): T {
    const resolve = this.resolver(options);
    // A tidy per block frees its intermediates as soon as it ends (inference memory stays bounded).
    if (!checkpoint) return tf.tidy(() => run(resolve, ...inputs));
    const names = this.specs.filter((spec) => spec.name.startsWith(prefix)).map((spec) => spec.name);
    for (const name of options.tuning?.keys() ?? []) if (name.startsWith(prefix) && !this.params.has(name)) names.push(name);
    return checkpointed((...all: tf.Tensor[]) => {
      const params = all.slice(inputs.length);
      return run((name) => {
        const index = names.indexOf(name);
        if (index < 0) throw new Error(`block ${prefix} has no parameter ${name}`);
        return params[index];
      }, ...all.slice(0, inputs.length));
    }, [...inputs, ...names.map(resolve)]) as T;
  }

  private swinBlockMaybeCheckpointed(prefix: string, x: tf.Tensor2D, dims: [number, number, number], shifted: boolean, heads: number, dropPath: number, options: ForwardOptions): tf.Tensor2D {
    // A recomputation must draw the same dropout masks: each run gets a generator with one seed.
    const seed = options.training ? options.training.rng.nextUint32() : 0;
    return this.block(prefix, [x], Boolean(options.checkpoint), options, (param, input) => {
      const replay: ForwardOptions = options.training ? { ...options, training: { rng: new Rng(seed) } } : options;
      return this.swinBlock(prefix, input as tf.Tensor2D, dims, shifted, heads, dropPath, replay, param);
    });
  }

  private swinBlock(
    prefix: string,
    x: tf.Tensor2D,
    dims: [number, number, number],
    shifted: boolean,
    heads: number,
    dropPath: number,
    options: ForwardOptions,
    param: (name: string) => tf.Tensor,
  ): tf.Tensor2D {
    const w = this.config.windowSize;
    const half = Math.floor(w / 2);
    const plan = windowPlan(dims, [w, w, w], shifted ? [half, half, half] : [0, 0, 0]);
    const normed = layerNorm(x, param(`${prefix}norm1.weight`), param(`${prefix}norm1.bias`)) as tf.Tensor2D;
    const windows = gatherRows(normed, plan.partition, plan.reverse);
    const attended = this.windowAttention(prefix, windows, plan.windows, plan.tokens, heads, plan.mask, options, param);
    const has = (name: string) => options.tuning?.has(`${prefix}${name}`) ?? false;
    // Compacter replaces each branch by its PHM layer's image of it (serial, no inner residual).
    const phm = (branch: tf.Tensor, name: string) => (has(`${name}.W`) ? phmLinear(branch, param(`${prefix}${name}.phm_rule`), param(`${prefix}${name}.W`), param(`${prefix}${name}.b`)) : branch);
    const back = phm(gatherRows(attended, plan.reverse, plan.partition), SWIN_BLOCK_MODULES.compacter[0]);
    let out = tf.add(x, this.dropPath(back, dropPath, options)) as tf.Tensor2D;
    const mlpIn = layerNorm(out, param(`${prefix}norm2.weight`), param(`${prefix}norm2.bias`));
    let hiddenMlp = gelu(linear(mlpIn, param(`${prefix}mlp.linear1.weight`) as tf.Tensor2D, param(`${prefix}mlp.linear1.bias`) as tf.Tensor1D));
    hiddenMlp = this.dropout(hiddenMlp, this.config.dropRate, options);
    let mlpOut = linear(hiddenMlp, param(`${prefix}mlp.linear2.weight`) as tf.Tensor2D, param(`${prefix}mlp.linear2.bias`) as tf.Tensor1D);
    mlpOut = this.dropout(mlpOut, this.config.dropRate, options);
    let branch = phm(this.dropPath(mlpOut, dropPath, options), SWIN_BLOCK_MODULES.compacter[1]);
    if (has(SWIN_BLOCK_MODULES.adaptformerDown[0])) {
      // AdaptFormer: a bottleneck on the stream after attention (not normalised), added to the MLP branch.
      const [downWeight, downBias] = SWIN_BLOCK_MODULES.adaptformerDown.map((name) => param(`${prefix}${name}`));
      const [upWeight, upBias] = SWIN_BLOCK_MODULES.adaptformerUp.map((name) => param(`${prefix}${name}`));
      const down = tf.relu(linear(out, downWeight as tf.Tensor2D, downBias as tf.Tensor1D));
      branch = tf.add(branch, tf.mul(linear(down, upWeight as tf.Tensor2D, upBias as tf.Tensor1D), ADAPTFORMER_SCALE));
    }
    out = tf.add(out, branch) as tf.Tensor2D;
    return out;
  }

  /** Multi-head self-attention within windows: rows [windows * tokens, C] in, same out. */
  private windowAttention(
    prefix: string,
    rows: tf.Tensor2D,
    windows: number,
    tokens: number,
    heads: number,
    mask: WindowMask | undefined,
    options: ForwardOptions,
    param: (name: string) => tf.Tensor,
  ): tf.Tensor2D {
    const w = this.config.windowSize;
    const c = rows.shape[1];
    const headDim = c / heads;
    const bias = tf.reshape(
      tf.transpose(tf.reshape(lookupRows(param(`${prefix}attn.relative_position_bias_table`) as tf.Tensor2D, biasIndex([w, w, w], tokens)), [tokens, tokens, heads]), [2, 0, 1]),
      [1, heads, tokens, tokens],
    ) as tf.Tensor4D;
    // q, k and v from column blocks of the qkv weight, each split into heads by a rank-4
    // transpose (tfjs-wasm's rank-5 transposes are an order of magnitude slower). k is laid out
    // transposed ([windows * heads, headDim, tokens]): the products take no transposed operands.
    const weight = param(`${prefix}attn.qkv.weight`) as tf.Tensor2D;
    const qkvBias = param(`${prefix}attn.qkv.bias`) as tf.Tensor1D;
    // LoRA: qkv(x) + B(A x), A and B without bias or scaling (the reference's LoRALayer).
    const lora = options.tuning?.has(`${prefix}${SWIN_BLOCK_MODULES.loraA}`)
      ? linear(linear(rows, param(`${prefix}${SWIN_BLOCK_MODULES.loraA}`) as tf.Tensor2D), param(`${prefix}${SWIN_BLOCK_MODULES.loraB}`) as tf.Tensor2D)
      : undefined;
    const [q, kT, v] = [[0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]].map((order, part) => {
      const plain = linear(rows, tf.slice(weight, [0, part * c], [c, c]), tf.slice(qkvBias, [part * c], [c]));
      const projected = lora ? tf.add(plain, tf.slice(lora, [0, part * c], [rows.shape[0], c])) : plain;
      const split = tf.transpose(tf.reshape(projected, [windows, tokens, heads, headDim]), order);
      return tf.reshape(split, [windows * heads, split.shape[2]!, split.shape[3]!]) as tf.Tensor3D;
    });
    const attnDrop = options.training && this.config.attnDropRate > 0 ? { rate: this.config.attnDropRate, seed: options.training.rng.nextUint32() } : undefined;
    const mixed = windowAttention(tf.mul(q, headDim ** -0.5) as tf.Tensor3D, kT, v, bias, {
      heads,
      mask: mask && ((start, count) => maskOfWindows(mask, start, count)),
      // Chunks of windows bound each [windows, heads, N, N] temporary to 64 MB.
      chunkWindows: Math.max(1, Math.floor(16_000_000 / (heads * tokens * tokens))),
      dropout: attnDrop,
    });
    const merged = tf.reshape(tf.transpose(tf.reshape(mixed, [windows, heads, tokens, headDim]), [0, 2, 1, 3]), [windows * tokens, c]);
    const out = linear(merged, param(`${prefix}attn.proj.weight`) as tf.Tensor2D, param(`${prefix}attn.proj.bias`) as tf.Tensor1D);
    return this.dropout(out, this.config.dropRate, options) as tf.Tensor2D;
  }

  /**
   * MONAI PatchMerging: pad odd sizes, take the eight 2 x 2 x 2 sub-grids, LayerNorm(8C), Linear(8C -> 2C).
   * The default 'merging' keeps MONAI's v0.9 order of sub-grids (two of them repeated).
   */
  private patchMerging(prefix: string, x: tf.Tensor5D, param: (name: string) => tf.Tensor): tf.Tensor5D {
    const [, d, h, w, c] = x.shape;
    let input = x;
    if (d % 2 || h % 2 || w % 2) input = tf.pad(x, [[0, 0], [0, d % 2], [0, h % 2], [0, w % 2], [0, 0]]);
    const [, dp, hp, wp] = input.shape;
    const count = (dp / 2) * (hp / 2) * (wp / 2);
    const merged = tf.reshape(stackSubgrids(input, this.config.downsample), [count, 8 * c]);
    const normed = layerNorm(merged, param(`${prefix}norm.weight`), param(`${prefix}norm.bias`));
    const reduced = linear(normed, param(`${prefix}reduction.weight`) as tf.Tensor2D);
    return tf.reshape(reduced, [1, dp / 2, hp / 2, wp / 2, 2 * c]) as tf.Tensor5D;
  }

  /** MONAI UnetResBlock of this network at `prefix` (see unet-res-block.ts). */
  resBlock(prefix: string, x: tf.Tensor5D, param: (name: string) => tf.Tensor = (name) => this.p(name)): tf.Tensor5D {
    const projected = this.params.has(`${prefix}conv3.conv.weight`);
    return unetResBlock(x, { conv1: param(`${prefix}conv1.conv.weight`), conv2: param(`${prefix}conv2.conv.weight`), conv3: projected ? param(`${prefix}conv3.conv.weight`) : undefined });
  }

  /** The last decoder block (decoder1) on its inputs, with parameters read through `param` (FT-Last trains copies). */
  lastDecoder(dec0: tf.Tensor5D, enc0: tf.Tensor5D, param: (name: string) => tf.Tensor = (name) => this.p(name)): tf.Tensor5D {
    return this.upBlock('decoder1', dec0, enc0, param);
  }

  /** MONAI UnetrUpBlock: transposed conv (kernel 2, stride 2), concatenation with the skip, UnetResBlock. */
  private upBlock(name: string, x: tf.Tensor5D, skip: tf.Tensor5D, param: (name: string) => tf.Tensor): tf.Tensor5D {
    const joined = pipeline(
      x,
      (t) => linear(t, param(`${name}.transp_conv.conv.weight`) as tf.Tensor2D),
      (t) => depthToSpace2(t as tf.Tensor5D),
      (t) => concatChannels(t, skip),
    );
    const out = this.resBlock(`${name}.conv_block.`, joined as tf.Tensor5D, param);
    releaseIntermediates(joined);
    return out;
  }

  private dropout<T extends tf.Tensor>(x: T, rate: number, options: ForwardOptions): T {
    if (!options.training || rate <= 0) return x;
    return tf.dropout(x, rate, undefined, options.training.rng.nextUint32()) as T;
  }

  /** Stochastic depth for batch 1: the whole branch is dropped or scaled by 1 / keep. */
  private dropPath<T extends tf.Tensor>(x: T, rate: number, options: ForwardOptions): T {
    if (!options.training || rate <= 0) return x;
    return (options.training.rng.next() < rate ? tf.zerosLike(x) : tf.div(x, 1 - rate)) as T;
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
  }
}

/**
 * Compacter's PHMLinear: y = x H + b with H = sum_i rule_i (x) W_i (Kronecker products), rule
 * [n, n, n], W [n, in/n, out/n], so that H[a * in/n + k, c * out/n + p] = sum_i rule[i, a, c] W[i, k, p].
 */
export function phmLinear(x: tf.Tensor, rule: tf.Tensor, w: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  const [n] = rule.shape;
  const [, inPart, outPart] = w.shape;
  const products = tf.mul(tf.reshape(rule, [n, n, 1, n, 1]), tf.reshape(w, [n, 1, inPart, 1, outPart]));
  const h = tf.reshape(tf.sum(products, 0), [n * inPart, n * outPart]) as tf.Tensor2D;
  return linear(x, h, bias as tf.Tensor1D);
}

/** Sub-grid order of MONAI's PatchMerging as (d, h, w) offsets flattened d * 4 + h * 2 + w: x0..x7. */
const LEGACY_MERGING_ORDER = [0, 4, 2, 1, 5, 2, 1, 7];

/**
 * The eight 2 x 2 x 2 sub-grids x[:, i::2, j::2, k::2] of an even-sized [1, D, H, W, C] volume as
 * [D/2 * H/2 * W/2, 8, C], in MONAI's order: itertools.product order for 'mergingv2', the v0.9
 * order (x0, x1, x2, x3, x4, x2, x3, x7 by offsets) for 'merging'.
 */
export function stackSubgrids(x: tf.Tensor5D, mode: SwinUNETRConfig['downsample']): tf.Tensor3D {
  return tf.tidy(() => {
    const [, d, h, w, c] = x.shape;
    const count = (d / 2) * (h / 2) * (w / 2);
    // spaceToDepth2's channel order is the sub-grid offsets flattened d * 4 + h * 2 + w.
    const stacked = tf.reshape(spaceToDepth2(x), [count, 8, c]) as tf.Tensor3D;
    return mode === 'merging' ? selectSubgrids(stacked, LEGACY_MERGING_ORDER) : stacked;
  });
}

/** out[:, j, :] = x[:, order[j], :] as a tiny matmul, so gradients need no scatter kernel. */
function selectSubgrids(x: tf.Tensor3D, order: number[]): tf.Tensor3D {
  const [count, eight, c] = x.shape;
  const selection = new Float32Array(eight * eight);
  order.forEach((source, target) => (selection[source * eight + target] = 1));
  const moved = tf.reshape(tf.transpose(x, [0, 2, 1]), [count * c, eight]);
  const picked = tf.matMul(moved, tf.tensor2d(selection, [eight, eight]));
  return tf.transpose(tf.reshape(picked, [count, c, eight]), [0, 2, 1]) as tf.Tensor3D;
}

let suffix = 0;
function uniqueSuffix(): number {
  return suffix++;
}
