import * as tf from '@tensorflow/tfjs-core';
import { FseftError } from '../util/errors';
import { Rng } from '../util/random';
import { withFrozen, isFrozen } from './frozen';
import { variableOf, checkpointed, layerNorm, recordingGradients } from './ops';
import { requiresGradient, untaped } from '../backend/backprop-memory';
import { ParamSpec, ParameterMap, initialValue, kitShape, toKitLayout } from './parameters';
import { ParamReader, PatchEmbed, Regularisation, SwinStage, SwinTransformerBlock, dropout } from './swin-blocks';
import { UnetOutBlock, UnetResBlockModule, UnetrUpBlock } from './unetr-blocks';

export { ADAPTFORMER_SCALE, SWIN_BLOCK_MODULES, phmLinear, stackSubgrids } from './swin-blocks';

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

/** The modules of the network, each owning its parameters under its MONAI prefix. */
export interface SwinUNETRModules {
  patchEmbed: PatchEmbed;
  stages: SwinStage[];
  /** encoder1, encoder2, encoder3, encoder4 and encoder10 (MONAI UnetrBasicBlock with a residual block, `.layer`). */
  encoders: UnetResBlockModule[];
  /** decoder5 ... decoder1. */
  decoders: UnetrUpBlock[];
  out: UnetOutBlock;
}

export function swinUnetrModules(config: SwinUNETRConfig): SwinUNETRModules {
  const f = config.featureSize;
  const totalBlocks = config.depths.reduce((a, b) => a + b, 0);
  let blockIndex = 0;
  const stages = config.depths.map((depth, stage) => {
    // Stochastic depth grows linearly over all blocks of the encoder (MONAI's dpr).
    const rates = Array.from({ length: depth }, () => (totalBlocks > 1 ? (config.dropPathRate * blockIndex++) / (totalBlocks - 1) : 0));
    return new SwinStage(`swinViT.layers${stage + 1}.0.`, f * 2 ** stage, depth, config.numHeads[stage], config.windowSize, rates, config.downsample);
  });
  return {
    patchEmbed: new PatchEmbed('swinViT.patch_embed.', config.inChannels, f),
    stages,
    encoders: [
      new UnetResBlockModule('encoder1.layer.', config.inChannels, f),
      new UnetResBlockModule('encoder2.layer.', f, f),
      new UnetResBlockModule('encoder3.layer.', 2 * f, 2 * f),
      new UnetResBlockModule('encoder4.layer.', 4 * f, 4 * f),
      new UnetResBlockModule('encoder10.layer.', 16 * f, 16 * f),
    ],
    decoders: [
      new UnetrUpBlock('decoder5.', 16 * f, 8 * f),
      new UnetrUpBlock('decoder4.', 8 * f, 4 * f),
      new UnetrUpBlock('decoder3.', 4 * f, 2 * f),
      new UnetrUpBlock('decoder2.', 2 * f, f),
      new UnetrUpBlock('decoder1.', f, f),
    ],
    out: new UnetOutBlock('out.', f, config.outChannels),
  };
}

/** Every parameter of the network with its MONAI state-dict name, in MONAI's order: the modules' own lists. */
export function swinUnetrParameterSpecs(config: SwinUNETRConfig): ParamSpec[] {
  return specsOf(swinUnetrModules(config));
}

function specsOf(modules: SwinUNETRModules): ParamSpec[] {
  return [
    ...modules.patchEmbed.specs,
    ...modules.stages.flatMap((stage) => stage.specs),
    ...modules.encoders.flatMap((m) => m.specs),
    ...modules.decoders.flatMap((m) => m.specs),
    ...modules.out.specs,
  ];
}

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
   * full-resolution activations dominate at large inputs; 'fine' also checkpoints each
   * convolution inside a convolutional block when it is recomputed, so that only one
   * convolution's intermediates exist at a time, at the cost of computing the decoder's
   * convolutions once more (since a block's tape keeps only its norms' and activation's outputs,
   * true is lower and faster for a PEFT method at the paper's F = 48, 96^3 in wasm's 4 GiB).
   * Without checkpointing, feature size 12 at 64^3 trains in wasm's 4 GiB, and so does FT-Last at
   * F = 48, 96^3.
   */
  checkpoint?: CheckpointMode;
  /** Also return the inputs of the last decoder block (dec0, enc0): what FT-Last trains on. */
  decoderInputs?: boolean;
  /**
   * Parameters of a parameter-efficient method (lib/adapters/methods/peft.ts). A name of the
   * network replaces that parameter (BitFit, LayerNorm affine); a name under a Swin block's prefix
   * adds a module there: `attn.qkv.lora_A.weight` and `lora_B.weight` (LoRA on the qkv
   * projection), `mlpAdapter.*` (AdaptFormer's parallel MLP adapter), `compacter_1.*` and
   * `compacter_2.*` (Compacter's PHM layers on the attention and MLP branches).
   */
  tuning?: ReadonlyMap<string, tf.Tensor>;
  /**
   * The network's own parameters are constants of this pass (a frozen backbone: a PEFT method or
   * an adapter trains only what `tuning` holds, or nothing). Outputs are unchanged; gradients then
   * reach only the input and the `tuning` tensors, and the weight gradients of the frozen
   * convolutions and products, and of checkpointed blocks, are never computed.
   */
  frozen?: boolean;
}

/** Which blocks recompute their activations in the backward pass (see ForwardOptions.checkpoint). */
export type CheckpointMode = boolean | 'swin' | 'fine';

/** Whether the convolutional blocks are checkpointed, and each convolution inside them too. */
function convolutionalCheckpoints(options: ForwardOptions): { convolutional: boolean; segments: boolean } {
  return { convolutional: options.checkpoint === true || options.checkpoint === 'fine', segments: options.checkpoint === 'fine' };
}

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
  readonly modules: SwinUNETRModules;
  readonly specs: ParamSpec[];

  constructor(
    readonly config: SwinUNETRConfig,
    readonly params: ParameterMap,
  ) {
    this.modules = swinUnetrModules(config);
    this.specs = specsOf(this.modules);
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
    if (options.frozen) return withFrozen(this.params.values(), () => this.forward(x, { ...options, frozen: false }));
    return tf.tidy(() => {
      const { hidden, dec0, enc0 } = this.trunk(x, options);
      const features = this.decoderBlock(this.modules.decoders[4], dec0, enc0, options);
      const logits = this.modules.out.forward(features, this.resolver(options));
      const result: SwinUNETROutput = { logits, features };
      if (options.hiddenStates) result.hidden = hidden;
      if (options.decoderInputs) Object.assign(result, { dec0, enc0 });
      return result as unknown as tf.TensorContainerObject;
    }) as unknown as SwinUNETROutput;
  }

  /**
   * The inputs of the last decoder block alone (what FT-Last trains on from a frozen backbone),
   * without running that block and the head: at F = 48, 96^3 they are a third of the forward pass.
   */
  decoderInputsOf(x: tf.Tensor5D, options: ForwardOptions = {}): { dec0: tf.Tensor5D; enc0: tf.Tensor5D } {
    this.checkInput(x);
    if (options.frozen) return withFrozen(this.params.values(), () => this.decoderInputsOf(x, { ...options, frozen: false }));
    return tf.tidy(() => {
      const { dec0, enc0 } = this.trunk(x, options);
      return { dec0, enc0 };
    });
  }

  /** Everything before the last decoder block: the Swin encoder's hidden states and that block's inputs. */
  private trunk(x: tf.Tensor5D, options: ForwardOptions): { hidden: tf.Tensor5D[]; dec0: tf.Tensor5D; enc0: tf.Tensor5D } {
    const hidden = this.swinViT(x, options);
    const [encoder1, encoder2, encoder3, encoder4, encoder10] = this.modules.encoders;
    const [decoder5, decoder4, decoder3, decoder2] = this.modules.decoders;
    const res = (module: UnetResBlockModule, input: tf.Tensor5D) => this.encoderBlock(module, input, options);
    const up = (module: UnetrUpBlock, input: tf.Tensor5D, skip: tf.Tensor5D) => this.decoderBlock(module, input, skip, options);
    const enc0 = res(encoder1, x);
    const enc1 = res(encoder2, hidden[0]);
    const enc2 = res(encoder3, hidden[1]);
    const enc3 = res(encoder4, hidden[2]);
    const dec4 = res(encoder10, hidden[4]);
    const dec3 = up(decoder5, dec4, hidden[3]);
    const dec2 = up(decoder4, dec3, enc3);
    const dec1 = up(decoder3, dec2, enc2);
    const dec0 = up(decoder2, dec1, enc1);
    return { hidden, dec0, enc0 };
  }

  private encoderBlock(module: UnetResBlockModule, input: tf.Tensor5D, options: ForwardOptions): tf.Tensor5D {
    const { convolutional, segments } = convolutionalCheckpoints(options);
    return this.block(module.prefix, [input], convolutional, options, (param, i) => module.forward(i as tf.Tensor5D, param, segments));
  }

  private decoderBlock(module: UnetrUpBlock, input: tf.Tensor5D, skip: tf.Tensor5D, options: ForwardOptions): tf.Tensor5D {
    const { convolutional, segments } = convolutionalCheckpoints(options);
    return this.block(module.prefix, [input, skip], convolutional, options, (param, i, k) => module.forward(i as tf.Tensor5D, k as tf.Tensor5D, param, segments));
  }

  /** The Swin encoder: five hidden states, layer-normalised without parameters when `normalize`. */
  swinViT(x: tf.Tensor5D, options: ForwardOptions = {}): tf.Tensor5D[] {
    const param = this.resolver(options);
    const regularisation = this.regularisation(options.training?.rng);
    let current = dropout(this.modules.patchEmbed.forward(x, param), regularisation);
    const outputs = [this.projOut(current)];
    for (const stage of this.modules.stages) {
      const [, d, h, w, c] = current.shape;
      let tokens = tf.reshape(current, [d * h * w, c]) as tf.Tensor2D;
      for (const block of stage.blocks) tokens = this.swinBlock(block, tokens, [d, h, w], options);
      current = stage.downsample.forward(tf.reshape(tokens, [1, d, h, w, c]) as tf.Tensor5D, param);
      outputs.push(this.projOut(current));
    }
    return outputs;
  }

  /** Reads a parameter: a method's replacement when it has one (ForwardOptions.tuning), else the network's. */
  private resolver(options: ForwardOptions): ParamReader {
    const tuning = options.tuning;
    return tuning ? (name) => tuning.get(name) ?? this.p(name) : (name) => this.p(name);
  }

  private regularisation(rng: Rng | undefined): Regularisation | undefined {
    return rng && { rng, dropRate: this.config.dropRate, attnDropRate: this.config.attnDropRate };
  }

  private projOut(x: tf.Tensor5D): tf.Tensor5D {
    return this.config.normalize ? (layerNorm(x) as tf.Tensor5D) : x;
  }

  /**
   * Runs one module whose parameters share `prefix`, checkpointed when `checkpoint` is set: its
   * activations are recomputed during backpropagation instead of kept. `run` reads parameters
   * through `param` so that the checkpoint can route their gradients (a method's modules under
   * the prefix included).
   */
  private block<T extends tf.Tensor>(
    prefix: string,
    inputs: tf.Tensor[],
    checkpoint: boolean,
    options: ForwardOptions,
    run: (param: ParamReader, ...inputs: tf.Tensor[]) => T,
  ): T {
    const resolve = this.resolver(options);
    const recording = recordingGradients();
    // A tidy per block frees its intermediates as soon as it ends (inference memory stays bounded).
    if (!checkpoint && !recording) return tf.tidy(() => run(resolve, ...inputs));
    const names = this.specs.filter((spec) => spec.name.startsWith(prefix)).map((spec) => spec.name);
    for (const name of options.tuning?.keys() ?? []) if (name.startsWith(prefix) && !this.params.has(name)) names.push(name);
    // A frozen block on inputs no gradient reaches (encoder1 on the image, under a PEFT method)
    // is a constant: run as in inference, it keeps nothing for a backward pass.
    if (recording && names.every((name) => isFrozen(resolve(name))) && !inputs.some(requiresGradient)) return untaped(() => tf.tidy(() => run(resolve, ...inputs)));
    if (!checkpoint) return tf.tidy(() => run(resolve, ...inputs));
    // Frozen parameters are read as constants; the others pass through the checkpoint to get gradients.
    const routed = names.filter((name) => !isFrozen(resolve(name)));
    return checkpointed((...all: tf.Tensor[]) => {
      const params = all.slice(inputs.length);
      return run((name) => {
        const index = routed.indexOf(name);
        if (index >= 0) return params[index];
        if (names.includes(name)) return resolve(name);
        throw new Error(`block ${prefix} has no parameter ${name}`);
      }, ...all.slice(0, inputs.length));
    }, [...inputs, ...routed.map(resolve)]) as T;
  }

  private swinBlock(block: SwinTransformerBlock, x: tf.Tensor2D, dims: [number, number, number], options: ForwardOptions): tf.Tensor2D {
    // A recomputation must draw the same dropout masks: each run gets a generator with one seed.
    const seed = options.training ? options.training.rng.nextUint32() : 0;
    const has = (name: string) => options.tuning?.has(name) ?? false;
    return this.block(block.prefix, [x], Boolean(options.checkpoint), options, (param, input) =>
      block.forward(input as tf.Tensor2D, dims, param, has, this.regularisation(options.training ? new Rng(seed) : undefined)),
    );
  }

  /** The UnetResBlock of this network at `prefix` (an encoder's `.layer.` or a decoder's `.conv_block.`). */
  resBlock(prefix: string, x: tf.Tensor5D, param: ParamReader = (name) => this.p(name)): tf.Tensor5D {
    const module = [...this.modules.encoders, ...this.modules.decoders.map((d) => d.convBlock)].find((m) => m.prefix === prefix);
    if (!module) throw new Error(`no UnetResBlock at ${prefix}`);
    return module.forward(x, param);
  }

  /**
   * The last decoder block (decoder1) on its inputs, with parameters read through `param` (FT-Last
   * trains copies); `segments` checkpoints each of its convolutions while training.
   */
  lastDecoder(dec0: tf.Tensor5D, enc0: tf.Tensor5D, param: ParamReader = (name) => this.p(name), segments = false): tf.Tensor5D {
    return this.modules.decoders[4].forward(dec0, enc0, param, segments);
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
  }
}

let suffix = 0;
function uniqueSuffix(): number {
  return suffix++;
}
