import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSafetensors, writeSafetensors } from '../io/safetensors';
import { ModelPreprocessing } from '../networks/model-io';
import { SwinUNETR } from '../networks/swin-unetr';
import { variableOf } from '../networks/ops';
import { ensureWritableDirectory, writeFileAtomic } from '../util/atomic-write';
import { FseftError } from '../util/errors';
import { readJsonFile } from '../util/read-file';
import { Adapter, AdaptMethod, DecoderMode, parseDecoderMode, parseMethod } from './adapters';

/** `adapter.json` of an adapter directory. */
export interface AdapterManifest {
  format: 'fseft-adapter';
  version: 1;
  method: AdaptMethod;
  /** The decoder during adaptation; absent (older adapters) means 'frozen'. */
  decoder?: DecoderMode;
  organ: string;
  featureSize: number;
  /** The backbone it was trained on: predictions with another one are refused. */
  backbone: { fingerprint: string; featureSize: number; outChannels: number };
  preprocessing: ModelPreprocessing;
  trainableParameters: number;
  training: Record<string, unknown>;
  /** Layout of the weights: tfjs (conv filters [kD, kH, kW, in, out], linear [in, out]). */
  layout: 'tfjs';
  createdAt: string;
}

const MANIFEST = 'adapter.json';
const WEIGHTS = 'adapter.safetensors';

export async function saveAdapter(adapter: Adapter, dir: string, manifest: Omit<AdapterManifest, 'format' | 'version' | 'layout' | 'method' | 'decoder' | 'featureSize' | 'trainableParameters'>): Promise<AdapterManifest> {
  await ensureWritableDirectory(dir);
  const tensors = [];
  for (const [name, variable] of adapter.variables) tensors.push({ name, tensor: { dtype: 'float32' as const, shape: variable.shape, data: (await variable.data()) as Float32Array } });
  const full: AdapterManifest = {
    format: 'fseft-adapter',
    version: 1,
    method: adapter.method,
    decoder: adapter.decoder,
    featureSize: adapter.featureSize,
    trainableParameters: adapter.trainableParameters,
    layout: 'tfjs',
    ...manifest,
  };
  await writeSafetensors(path.join(dir, WEIGHTS), tensors, { format: 'fseft-adapter', method: adapter.method });
  await writeFileAtomic(path.join(dir, MANIFEST), JSON.stringify(full, null, 2));
  return full;
}

/** Loads an adapter directory for `backbone`, refusing one trained on another backbone. */
export function loadAdapter(dir: string, backbone: SwinUNETR, fingerprint: string): { adapter: Adapter; manifest: AdapterManifest } {
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file)) throw new FseftError(`not an adapter directory (no ${MANIFEST})`, dir);
  const manifest = readJsonFile(file) as AdapterManifest;
  if (manifest.format !== 'fseft-adapter') throw new FseftError(`unsupported adapter format '${manifest.format}'`, file);
  const method = parseMethod(manifest.method);
  if (manifest.backbone.fingerprint !== fingerprint) {
    throw new FseftError(`was trained on another backbone (fingerprint ${manifest.backbone.fingerprint}, this model ${fingerprint}, feature size ${manifest.backbone.featureSize} vs ${backbone.config.featureSize})`, dir);
  }
  const { tensors } = readSafetensors(path.join(dir, WEIGHTS));
  const variables = new Map<string, tf.Variable>();
  for (const [name, t] of tensors) variables.set(name, variableOf(tf.tensor(Float32Array.from(t.data), t.shape), method !== 'generalization'));
  try {
    return { adapter: Adapter.fromVariables(method, manifest.featureSize, variables, backbone, parseDecoderMode(manifest.decoder, method)), manifest };
  } catch (error) {
    for (const variable of variables.values()) variable.dispose();
    throw error instanceof FseftError && error.file === undefined ? new FseftError(error.message, dir) : error;
  }
}
