/** The few-shot methods (linear probe, spatial adapters, baselines) and adapter directories. */
export { Adapter, ADAPT_METHODS, METHOD_DESCRIPTIONS, parseMethod, zeroShotRow } from './adapters';
export type { AdaptMethod, HeadInit } from './adapters';
export { saveAdapter, loadAdapter } from './adapter-io';
export type { AdapterManifest } from './adapter-io';
