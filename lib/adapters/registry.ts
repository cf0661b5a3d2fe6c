import { FseftError } from '../util/errors';
import { FewShotMethod } from './method';
import { fineTune, fineTuneLast, scratch } from './methods/fine-tuning';
import { generalization } from './methods/generalization';
import { linearProbe } from './methods/linear-probe';
import { adaptformer, bitfit, compacter, lnAffine, lora } from './methods/peft';
import { mlpAdapter, residualAdapter3 } from './methods/residual-adapter';
import { adapter, adapterK1 } from './methods/spatial-adapter';

/** Every few-shot method, by the name the CLI, plans and adapter directories use (one file each under methods/). */
export const METHODS = {
  generalization,
  scratch,
  ft: fineTune,
  'ft-last': fineTuneLast,
  lp: linearProbe,
  adapter,
  'adapter-k1': adapterK1,
  'residual-adapter': residualAdapter3,
  'mlp-adapter': mlpAdapter,
  lora,
  adaptformer,
  bitfit,
  'ln-affine': lnAffine,
  compacter,
} as const satisfies Record<string, FewShotMethod>;

export type AdaptMethod = keyof typeof METHODS;
export const ADAPT_METHODS = Object.keys(METHODS) as AdaptMethod[];

export const METHOD_DESCRIPTIONS = Object.fromEntries(ADAPT_METHODS.map((name) => [name, METHODS[name].description])) as Record<AdaptMethod, string>;

export function methodOf(name: AdaptMethod): FewShotMethod {
  return METHODS[name];
}

export function parseMethod(name: string): AdaptMethod {
  if (Object.prototype.hasOwnProperty.call(METHODS, name)) return name as AdaptMethod;
  throw new FseftError(`unknown method '${name}'; methods: ${ADAPT_METHODS.join(', ')}`);
}
