/** The few-shot methods (linear probe, spatial adapters, baselines) and adapter directories. */
export { Adapter, zeroShotRow } from './adapters';
export type { HeadInit } from './adapters';
export { ADAPT_METHODS, METHODS, METHOD_DESCRIPTIONS, methodOf, parseMethod } from './registry';
export type { AdaptMethod } from './registry';
export type { FewShotMethod, AdapterInput, CropInputs } from './method';
export { saveAdapter, loadAdapter } from './adapter-io';
export { PEFT_METHOD_NAMES, peftParameters } from './methods/peft';
export type { PeftMethodName } from './methods/peft';
export type { AdapterManifest } from './adapter-io';
