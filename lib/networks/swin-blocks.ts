import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../util/random';
import { windowAttention } from './attention';
import { gatherRows, gelu, layerNorm, linear, relativePositionBias, spaceToDepth2 } from './ops';
import { ParamSpec } from './parameters';
import { WindowMask, biasIndex, maskOfWindows, windowPlan } from './swin-windows';

/**
 * The modules of MONAI's SwinViT (monai.networks.nets.swin_unetr), each owning its parameters
 * under its state-dict prefix: a module lists its specs (full MONAI names, MONAI's order) and runs
 * with a reader of parameters by those names, so the network's parameter list is the modules'
 * lists and a checkpointed block reads the same names as a plain one.
 */

/** Reads a parameter (or a method's replacement of it, or a module a method adds) by its full name. */
export type ParamReader = (name: string) => tf.Tensor;

/** Training-time randomness: dropout and stochastic depth from one generator. */
export interface Regularisation {
  rng: Rng;
  dropRate: number;
  attnDropRate: number;
}

export function dropout<T extends tf.Tensor>(x: T, regularisation: Regularisation | undefined, rate = regularisation?.dropRate ?? 0): T {
  if (!regularisation || rate <= 0) return x;
  return tf.dropout(x, rate, undefined, regularisation.rng.nextUint32()) as T;
}

/** Stochastic depth for batch 1: the whole branch is dropped or scaled by 1 / keep. */
export function dropPath<T extends tf.Tensor>(x: T, rate: number, regularisation: Regularisation | undefined): T {
  if (!regularisation || rate <= 0) return x;
  return (regularisation.rng.next() < rate ? tf.zerosLike(x) : tf.div(x, 1 - rate)) as T;
}

type Add = (name: string, torchShape: number[], kind: ParamSpec['kind'], init: ParamSpec['init'], fanIn?: number) => void;
function specList(prefix: string, declare: (add: Add) => void): ParamSpec[] {
  const specs: ParamSpec[] = [];
  declare((name, torchShape, kind, init, fanIn) => specs.push({ name: `${prefix}${name}`, torchShape, kind, init, fanIn }));
  return specs;
}

/** The modules a method may add to a Swin block, by name under the block's prefix (see ForwardOptions.tuning). */
export const SWIN_BLOCK_MODULES = {
  loraA: 'attn.qkv.lora_A.weight',
  loraB: 'attn.qkv.lora_B.weight',
  adaptformerDown: ['mlpAdapter.down_proj.weight', 'mlpAdapter.down_proj.bias'],
  adaptformerUp: ['mlpAdapter.up_proj.weight', 'mlpAdapter.up_proj.bias'],
  compacter: ['compacter_1', 'compacter_2'],
} as const;

/** AdaptFormer's fixed scale of its adapter branch (the reference's MLPAdapter scale). */
export const ADAPTFORMER_SCALE = 0.1;

/** MONAI PatchEmbed: a 2x2x2 convolution with stride 2 (as a product on space-to-depth patches). */
export class PatchEmbed {
  readonly specs: ParamSpec[];

  constructor(
    readonly prefix: string,
    inChannels: number,
    featureSize: number,
  ) {
    this.specs = specList(prefix, (add) => {
      add('proj.weight', [featureSize, inChannels, 2, 2, 2], 'patchEmbed', 'kaimingUniform', inChannels * 8);
      add('proj.bias', [featureSize], 'vector', 'convBias', inChannels * 8);
    });
  }

  forward(x: tf.Tensor5D, param: ParamReader): tf.Tensor5D {
    return linear(spaceToDepth2(x), param(`${this.prefix}proj.weight`) as tf.Tensor2D, param(`${this.prefix}proj.bias`) as tf.Tensor1D) as tf.Tensor5D;
  }
}

/**
 * MONAI SwinTransformerBlock: x + attn(LN1 x) over (shifted) windows, then + MLP(LN2 x), each
 * branch with stochastic depth. `tuning` names the modules a PEFT method adds (SWIN_BLOCK_MODULES).
 */
export class SwinTransformerBlock {
  readonly specs: ParamSpec[];

  constructor(
    readonly prefix: string,
    readonly dim: number,
    readonly heads: number,
    readonly windowSize: number,
    readonly shifted: boolean,
    readonly dropPathRate: number,
  ) {
    this.specs = specList(prefix, (add) => {
      add('norm1.weight', [dim], 'vector', 'ones');
      add('norm1.bias', [dim], 'vector', 'zeros');
      add('attn.relative_position_bias_table', [(2 * windowSize - 1) ** 3, heads], 'table', 'truncNormal02');
      add('attn.qkv.weight', [3 * dim, dim], 'linear', 'truncNormal02');
      add('attn.qkv.bias', [3 * dim], 'vector', 'zeros');
      add('attn.proj.weight', [dim, dim], 'linear', 'truncNormal02');
      add('attn.proj.bias', [dim], 'vector', 'zeros');
      add('norm2.weight', [dim], 'vector', 'ones');
      add('norm2.bias', [dim], 'vector', 'zeros');
      add('mlp.linear1.weight', [4 * dim, dim], 'linear', 'truncNormal02');
      add('mlp.linear1.bias', [4 * dim], 'vector', 'zeros');
      add('mlp.linear2.weight', [dim, 4 * dim], 'linear', 'truncNormal02');
      add('mlp.linear2.bias', [dim], 'vector', 'zeros');
    });
  }

  /** Token rows [D * H * W, C] of a [D, H, W] grid in, same out. */
  forward(x: tf.Tensor2D, dims: [number, number, number], param: ParamReader, has: (name: string) => boolean, regularisation?: Regularisation): tf.Tensor2D {
    const p = this.prefix;
    const w = this.windowSize;
    const half = Math.floor(w / 2);
    const plan = windowPlan(dims, [w, w, w], this.shifted ? [half, half, half] : [0, 0, 0]);
    const normed = layerNorm(x, param(`${p}norm1.weight`), param(`${p}norm1.bias`)) as tf.Tensor2D;
    const windows = gatherRows(normed, plan.partition, plan.reverse);
    const attended = this.attention(windows, plan.windows, plan.tokens, plan.mask, param, has, regularisation);
    // Compacter replaces each branch by its PHM layer's image of it (serial, no inner residual).
    const phm = (branch: tf.Tensor, name: string) => (has(`${p}${name}.W`) ? phmLinear(branch, param(`${p}${name}.phm_rule`), param(`${p}${name}.W`), param(`${p}${name}.b`)) : branch);
    const back = phm(gatherRows(attended, plan.reverse, plan.partition), SWIN_BLOCK_MODULES.compacter[0]);
    const out = tf.add(x, dropPath(back, this.dropPathRate, regularisation)) as tf.Tensor2D;
    const mlpIn = layerNorm(out, param(`${p}norm2.weight`), param(`${p}norm2.bias`));
    const hiddenMlp = dropout(gelu(linear(mlpIn, param(`${p}mlp.linear1.weight`) as tf.Tensor2D, param(`${p}mlp.linear1.bias`) as tf.Tensor1D)), regularisation);
    const mlpOut = dropout(linear(hiddenMlp, param(`${p}mlp.linear2.weight`) as tf.Tensor2D, param(`${p}mlp.linear2.bias`) as tf.Tensor1D), regularisation);
    let branch = phm(dropPath(mlpOut, this.dropPathRate, regularisation), SWIN_BLOCK_MODULES.compacter[1]);
    if (has(`${p}${SWIN_BLOCK_MODULES.adaptformerDown[0]}`)) {
      // AdaptFormer: a bottleneck on the stream after attention (not normalised), added to the MLP branch.
      const [downWeight, downBias] = SWIN_BLOCK_MODULES.adaptformerDown.map((name) => param(`${p}${name}`));
      const [upWeight, upBias] = SWIN_BLOCK_MODULES.adaptformerUp.map((name) => param(`${p}${name}`));
      const down = tf.relu(linear(out, downWeight as tf.Tensor2D, downBias as tf.Tensor1D));
      branch = tf.add(branch, tf.mul(linear(down, upWeight as tf.Tensor2D, upBias as tf.Tensor1D), ADAPTFORMER_SCALE));
    }
    return tf.add(out, branch) as tf.Tensor2D;
  }

  /** Multi-head self-attention within windows: rows [windows * tokens, C] in, same out. */
  private attention(rows: tf.Tensor2D, windows: number, tokens: number, mask: WindowMask | undefined, param: ParamReader, has: (name: string) => boolean, regularisation?: Regularisation): tf.Tensor2D {
    const p = this.prefix;
    const w = this.windowSize;
    const heads = this.heads;
    const c = rows.shape[1];
    const headDim = c / heads;
    const bias = relativePositionBias(param(`${p}attn.relative_position_bias_table`) as tf.Tensor2D, biasIndex([w, w, w], tokens), tokens);
    // q, k and v from column blocks of the qkv weight, each split into heads by a rank-4
    // transpose (tfjs-wasm's rank-5 transposes are an order of magnitude slower). k is laid out
    // transposed ([windows * heads, headDim, tokens]): the products take no transposed operands.
    const weight = param(`${p}attn.qkv.weight`) as tf.Tensor2D;
    const qkvBias = param(`${p}attn.qkv.bias`) as tf.Tensor1D;
    // LoRA: qkv(x) + B(A x), A and B without bias or scaling (the reference's LoRALayer).
    const lora = has(`${p}${SWIN_BLOCK_MODULES.loraA}`)
      ? linear(linear(rows, param(`${p}${SWIN_BLOCK_MODULES.loraA}`) as tf.Tensor2D), param(`${p}${SWIN_BLOCK_MODULES.loraB}`) as tf.Tensor2D)
      : undefined;
    const [q, kT, v] = [[0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]].map((order, part) => {
      const plain = linear(rows, tf.slice(weight, [0, part * c], [c, c]), tf.slice(qkvBias, [part * c], [c]));
      const projected = lora ? tf.add(plain, tf.slice(lora, [0, part * c], [rows.shape[0], c])) : plain;
      const split = tf.transpose(tf.reshape(projected, [windows, tokens, heads, headDim]), order);
      return tf.reshape(split, [windows * heads, split.shape[2]!, split.shape[3]!]) as tf.Tensor3D;
    });
    const attnDrop = regularisation && regularisation.attnDropRate > 0 ? { rate: regularisation.attnDropRate, seed: regularisation.rng.nextUint32() } : undefined;
    const mixed = windowAttention(tf.mul(q, headDim ** -0.5) as tf.Tensor3D, kT, v, bias, {
      heads,
      mask: mask && ((start, count) => maskOfWindows(mask, start, count)),
      // Chunks of windows bound each [windows, heads, N, N] temporary to 64 MB.
      chunkWindows: Math.max(1, Math.floor(16_000_000 / (heads * tokens * tokens))),
      dropout: attnDrop,
    });
    const merged = tf.reshape(tf.transpose(tf.reshape(mixed, [windows, heads, tokens, headDim]), [0, 2, 1, 3]), [windows * tokens, c]);
    return dropout(linear(merged, param(`${p}attn.proj.weight`) as tf.Tensor2D, param(`${p}attn.proj.bias`) as tf.Tensor1D), regularisation) as tf.Tensor2D;
  }
}

/**
 * MONAI PatchMerging: pad odd sizes, take the eight 2 x 2 x 2 sub-grids, LayerNorm(8C), Linear(8C -> 2C).
 * 'merging' keeps MONAI's v0.9 order of sub-grids (two of them repeated); 'mergingv2' is PatchMergingV2.
 */
export class PatchMerging {
  readonly specs: ParamSpec[];

  constructor(
    readonly prefix: string,
    dim: number,
    readonly mode: 'merging' | 'mergingv2',
  ) {
    this.specs = specList(prefix, (add) => {
      add('reduction.weight', [2 * dim, 8 * dim], 'linear', 'truncNormal02');
      add('norm.weight', [8 * dim], 'vector', 'ones');
      add('norm.bias', [8 * dim], 'vector', 'zeros');
    });
  }

  forward(x: tf.Tensor5D, param: ParamReader): tf.Tensor5D {
    const [, d, h, w, c] = x.shape;
    let input = x;
    if (d % 2 || h % 2 || w % 2) input = tf.pad(x, [[0, 0], [0, d % 2], [0, h % 2], [0, w % 2], [0, 0]]);
    const [, dp, hp, wp] = input.shape;
    const count = (dp / 2) * (hp / 2) * (wp / 2);
    const merged = tf.reshape(stackSubgrids(input, this.mode), [count, 8 * c]);
    const normed = layerNorm(merged, param(`${this.prefix}norm.weight`), param(`${this.prefix}norm.bias`));
    const reduced = linear(normed, param(`${this.prefix}reduction.weight`) as tf.Tensor2D);
    return tf.reshape(reduced, [1, dp / 2, hp / 2, wp / 2, 2 * c]) as tf.Tensor5D;
  }
}

/** MONAI BasicLayer: `depth` Swin blocks (every second one on shifted windows), then patch merging. */
export class SwinStage {
  readonly blocks: SwinTransformerBlock[];
  readonly downsample: PatchMerging;

  constructor(prefix: string, dim: number, depth: number, heads: number, windowSize: number, dropPathRates: number[], mode: 'merging' | 'mergingv2') {
    this.blocks = Array.from({ length: depth }, (_, b) => new SwinTransformerBlock(`${prefix}blocks.${b}.`, dim, heads, windowSize, b % 2 === 1, dropPathRates[b]));
    this.downsample = new PatchMerging(`${prefix}downsample.`, dim, mode);
  }

  get specs(): ParamSpec[] {
    return [...this.blocks.flatMap((block) => block.specs), ...this.downsample.specs];
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
export function stackSubgrids(x: tf.Tensor5D, mode: 'merging' | 'mergingv2'): tf.Tensor3D {
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
