import * as tf from '@tensorflow/tfjs-core';
import { variableOf } from '../../networks/ops';
import { ParamSpec } from '../../networks/parameters';
import { SWIN_BLOCK_MODULES, SwinUNETRConfig, swinUnetrParameterSpecs } from '../../networks/swin-unetr';
import { FseftError } from '../../util/errors';
import { Rng } from '../../util/random';
import { FewShotMethod, headSize, need, trainableVariable } from '../method';

/**
 * The parameter-efficient methods of the authors' later code (github jusiro/fewshot-finetuning,
 * fseft/modeling/peft/*.py): they change the frozen Swin encoder from inside its blocks, so they
 * run the backbone per crop (input 'image') with only their own parameters trainable. Each is
 * described by the modules it adds under a Swin block's prefix (SwinUNETR's ForwardOptions.tuning
 * runs them) and the backbone parameters it trains in place (as trainable copies under the same
 * names). The decoder and the pretrained head stay frozen; the one-channel head trains.
 */

/** A module parameter a method adds: its name in the network, kit-layout shape, and initial values. */
interface AddedParameter {
  name: string;
  shape: number[];
  draw: (rng: Rng, count: number) => Float32Array;
}

interface PeftDefinition {
  description: string;
  added: (config: SwinUNETRConfig) => AddedParameter[];
  /** The backbone parameters the method trains (from a copy of their pretrained values). */
  trainsInPlace: (specs: ParamSpec[]) => ParamSpec[];
}

/** Prefix, width and heads of every Swin transformer block, in order. */
function swinBlocks(config: SwinUNETRConfig): Array<{ prefix: string; dim: number }> {
  const blocks = [];
  for (let stage = 0; stage < 4; stage++) {
    for (let b = 0; b < config.depths[stage]; b++) blocks.push({ prefix: `swinViT.layers${stage + 1}.0.blocks.${b}.`, dim: config.featureSize * 2 ** stage });
  }
  return blocks;
}

const zeros = (_rng: Rng, count: number) => new Float32Array(count);
/** PyTorch's default Linear weight init (kaiming-uniform, a = sqrt 5): U(-1, 1) / sqrt(fan-in). */
const torchLinearDefault = (fanIn: number) => (rng: Rng, count: number) => Float32Array.from({ length: count }, () => rng.uniform(-1, 1) / Math.sqrt(fanIn));
/** Xavier-uniform with gain sqrt 2 on a [fanOut, fanIn] matrix. */
const glorotUniform = (fanIn: number, fanOut: number) => {
  const bound = Math.SQRT2 * Math.sqrt(6 / (fanIn + fanOut));
  return (rng: Rng, count: number) => Float32Array.from({ length: count }, () => rng.uniform(-bound, bound));
};
const normal = (std: number) => (rng: Rng, count: number) => Float32Array.from({ length: count }, () => std * rng.normal());

const swinParameters = (specs: ParamSpec[], keep: (name: string) => boolean) => specs.filter((s) => s.name.startsWith('swinViT.') && keep(s.name));
/** Every LayerNorm of the Swin encoder (norm1, norm2 of each block and each patch merging norm), as Affine.py. */
const layerNorms = (specs: ParamSpec[]) => swinParameters(specs, (name) => name.includes('norm'));

export const LORA_RANK = 4;
export const ADAPTFORMER_WIDTH = 16;
export const PHM_DIM = 4;

const DEFINITIONS = {
  lora: {
    description: `LoRA (rank ${LORA_RANK}) on every Swin block's qkv projection: qkv(x) + B(A x), B zero at start`,
    added: (config) =>
      swinBlocks(config).flatMap(({ prefix, dim }) => [
        { name: `${prefix}${SWIN_BLOCK_MODULES.loraA}`, shape: [dim, 3 * LORA_RANK], draw: torchLinearDefault(dim) },
        { name: `${prefix}${SWIN_BLOCK_MODULES.loraB}`, shape: [3 * LORA_RANK, 3 * dim], draw: zeros },
      ]),
    trainsInPlace: () => [],
  },
  adaptformer: {
    description: `AdaptFormer: per Swin block, MLP branch + 0.1 Up(ReLU(Down x)), bottleneck ${ADAPTFORMER_WIDTH}, Up zero at start`,
    added: (config) =>
      swinBlocks(config).flatMap(({ prefix, dim }) => {
        const [downWeight, downBias] = SWIN_BLOCK_MODULES.adaptformerDown;
        const [upWeight, upBias] = SWIN_BLOCK_MODULES.adaptformerUp;
        return [
          { name: `${prefix}${downWeight}`, shape: [dim, ADAPTFORMER_WIDTH], draw: torchLinearDefault(dim) },
          { name: `${prefix}${downBias}`, shape: [ADAPTFORMER_WIDTH], draw: zeros },
          { name: `${prefix}${upWeight}`, shape: [ADAPTFORMER_WIDTH, dim], draw: zeros },
          { name: `${prefix}${upBias}`, shape: [dim], draw: zeros },
        ];
      }),
    trainsInPlace: () => [],
  },
  bitfit: {
    description: "BitFit (the reference's 'Bias'): the Swin attention and MLP biases, relative position bias tables included",
    added: () => [],
    // Bias.py's rule: 'attn' or 'mlp' and 'bias' in the name, which also matches the relative
    // position bias tables; the LayerNorm biases are not included.
    trainsInPlace: (specs) => swinParameters(specs, (name) => (name.includes('attn') || name.includes('mlp')) && name.includes('bias')),
  },
  'ln-affine': {
    description: "the affine parameters of every Swin LayerNorm, patch merging norms included (the reference's 'Affine')",
    added: () => [],
    trainsInPlace: layerNorms,
  },
  compacter: {
    description: `Compacter: a PHM layer (n = ${PHM_DIM}) after each Swin block's attention and MLP, plus the LayerNorm affine parameters`,
    added: (config) =>
      swinBlocks(config).flatMap(({ prefix, dim }) =>
        SWIN_BLOCK_MODULES.compacter.flatMap((module) => [
          { name: `${prefix}${module}.phm_rule`, shape: [PHM_DIM, PHM_DIM, PHM_DIM], draw: normal(0.01) },
          { name: `${prefix}${module}.W`, shape: [PHM_DIM, dim / PHM_DIM, dim / PHM_DIM], draw: glorotUniform(dim / PHM_DIM, dim / PHM_DIM) },
          { name: `${prefix}${module}.b`, shape: [dim], draw: zeros },
        ]),
      ),
    trainsInPlace: layerNorms,
  },
} satisfies Record<string, PeftDefinition>;

export type PeftMethodName = keyof typeof DEFINITIONS;

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * A method's own trainable parameters for a network configuration (head not included), split into
 * the modules it adds and the backbone parameters it trains in place, by name; nothing is built.
 */
export function peftParameters(name: PeftMethodName, config: SwinUNETRConfig): { added: Map<string, number>; inPlace: Map<string, number> } {
  const definition: PeftDefinition = DEFINITIONS[name];
  return {
    added: new Map(definition.added(config).map((p) => [p.name, size(p.shape)])),
    inPlace: new Map(definition.trainsInPlace(swinUnetrParameterSpecs(config)).map((s) => [s.name, size(s.torchShape)])),
  };
}

const total = (sizes: Map<string, number>) => [...sizes.values()].reduce((a, b) => a + b, 0);

function peftMethod(name: PeftMethodName): FewShotMethod {
  const definition: PeftDefinition = DEFINITIONS[name];
  return {
    description: definition.description,
    input: 'image',
    trains: true,
    head: 'recipe',
    create: ({ backbone, rng }) => {
      const variables = new Map<string, tf.Variable>();
      for (const p of definition.added(backbone.config)) variables.set(p.name, trainableVariable(p.draw(rng, size(p.shape)), p.shape));
      for (const spec of definition.trainsInPlace(backbone.specs)) variables.set(spec.name, variableOf(backbone.p(spec.name).clone(), true));
      return { variables, network: backbone };
    },
    restore: (variables, backbone) => {
      const expected = [...definition.added(backbone.config).map((p) => [p.name, p.shape] as const), ...definition.trainsInPlace(backbone.specs).map((spec) => [spec.name, backbone.p(spec.name).shape] as const)];
      for (const [n, shape] of expected) {
        const found = variables.get(n);
        if (!found) throw new FseftError(`the saved ${name} adapter has no ${n}`);
        if (found.shape.join() !== shape.join()) throw new FseftError(`the saved ${name} adapter has ${n} of shape [${found.shape}], this backbone needs [${shape}]`);
      }
      return backbone;
    },
    features: (inputs, _param, network, options) => {
      const out = network!.forward(need(inputs.image, 'image'), { checkpoint: options.checkpoint, tuning: options.tuning, frozen: options.frozen ?? true });
      out.logits.dispose();
      return out.features;
    },
    parameterCount: (config) => {
      const { added, inPlace } = peftParameters(name, config);
      return total(added) + total(inPlace) + headSize(config);
    },
  };
}

export const lora = peftMethod('lora');
export const adaptformer = peftMethod('adaptformer');
export const bitfit = peftMethod('bitfit');
export const lnAffine = peftMethod('ln-affine');
export const compacter = peftMethod('compacter');
export const PEFT_METHOD_NAMES = Object.keys(DEFINITIONS) as PeftMethodName[];
