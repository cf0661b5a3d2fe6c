import * as tf from '@tensorflow/tfjs-core';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HostTensor } from '../io/host-tensor';
import { NamedTensor, readSafetensors, writeSafetensors } from '../io/safetensors';
import { ensureWritableDirectory, writeFileAtomic } from '../util/atomic-write';
import { readJsonFile } from '../util/read-file';
import { FseftError } from '../util/errors';
import { ParameterMap, initialValue, kitShape, toKitLayout, toTorchLayout } from './parameters';
import { Rng } from '../util/random';
import { SwinUNETR, SwinUNETRConfig, swinUnetrBufferNames, swinUnetrConfig, swinUnetrParameterSpecs } from './swin-unetr';
import { relativePositionIndex } from './swin-windows';
import { variableOf } from './ops';

/** Where a model's weights came from: kept in the model directory next to them. */
export interface ModelProvenance {
  createdAt: string;
  /** 'import-torch', 'init', 'pretrain', ... */
  origin: string;
  source?: string;
  sourceFormat?: string;
  wrapperKey?: string;
  loadedKeys?: number;
  renamedKeys?: Array<[string, string]>;
  missingKeys?: string[];
  unexpectedKeys?: string[];
  encoderOnly?: boolean;
  seed?: number;
  notes?: string[];
  /** Per-organ Dice of the model's own head on labelled data, by name (`fseft validate --record NAME`). */
  validation?: Record<string, { data: string; valCases: number; volumes: number; dice: Record<string, number>; at: string }>;
}

/** `config.json` of a model directory. */
export interface ModelManifest {
  format: 'fseft-model';
  version: 1;
  arch: 'swinunetr';
  config: SwinUNETRConfig;
  parameters: number;
  weights: string;
  /** Layout of the weights file: PyTorch's, under MONAI's state-dict names. */
  layout: 'pytorch-state-dict';
  provenance: ModelProvenance;
  /** How inputs must be prepared for this model (pretraining records it; imports assume the paper's). */
  preprocessing?: ModelPreprocessing;
  /** Names of the output channels; absent means the 29-class template when there are 29 outputs. */
  classNames?: string[];
}

/** The preprocessing a model was trained with, reused by adaptation and prediction. */
export interface ModelPreprocessing {
  /** Voxel size (mm), isotropic or per axis. */
  spacing: number | [number, number, number];
  /** HU window mapped to [0, 1]. */
  window: [number, number];
  /** Patch (sliding-window ROI) size, each divisible by 32. */
  roi: [number, number, number];
  /**
   * Crop of the cached backbone features that frozen-backbone adaptation (lp, the adapters,
   * ft-last, TI) trains on; default `roi`. The features come from whole-volume sliding windows of
   * `roi`, so a smaller crop costs less per step without taking context from the backbone.
   * Methods that run the network on crops (ft, scratch, PEFT, a trained decoder) use `roi`.
   */
  adaptationRoi?: [number, number, number];
}

/** The paper's preprocessing: 1.5 mm, [-175, 250] HU, 96^3 patches. */
export const PAPER_PREPROCESSING: ModelPreprocessing = { spacing: 1.5, window: [-175, 250], roi: [96, 96, 96] };

const WEIGHTS = 'weights.safetensors';
const MANIFEST = 'config.json';

/**
 * Builds a network from a state dict in PyTorch layout; entries absent from `tensors` are drawn
 * from PyTorch's default initialisation with `seed`.
 */
export function modelFromStateDict(config: SwinUNETRConfig, tensors: Map<string, HostTensor>, seed = 0): SwinUNETR {
  const rng = new Rng(seed);
  const params: ParameterMap = new Map();
  try {
    for (const spec of swinUnetrParameterSpecs(config)) {
      const fresh = initialValue(spec, rng);
      const given = tensors.get(spec.name);
      if (given && given.shape.join() !== spec.torchShape.join()) {
        throw new FseftError(`tensor ${spec.name} has shape [${given.shape}], the model expects [${spec.torchShape}]`);
      }
      const source = given ? { ...given, dtype: 'float32' as const, data: Float32Array.from(given.data) } : fresh;
      const kit = toKitLayout(spec, source);
      params.set(spec.name, variableOf(tf.tensor(kit.data, kitShape(spec), 'float32')));
    }
  } catch (error) {
    for (const v of params.values()) v.dispose();
    throw error;
  }
  return new SwinUNETR(config, params);
}

/** The network's weights as a PyTorch-layout state dict (with MONAI's index buffers). */
export async function stateDictOf(model: SwinUNETR): Promise<NamedTensor[]> {
  const out: NamedTensor[] = [];
  for (const spec of model.specs) {
    const value = model.params.get(spec.name)!;
    const kit: HostTensor = { dtype: 'float32', shape: value.shape, data: (await value.data()) as Float32Array };
    out.push({ name: spec.name, tensor: toTorchLayout(spec, kit) });
  }
  const w = model.config.windowSize;
  const index = relativePositionIndex([w, w, w]);
  const n = w ** 3;
  for (const name of swinUnetrBufferNames(model.config)) out.push({ name, tensor: { dtype: 'int32', shape: [n, n], data: index }, int64: true });
  return out;
}

/** Writes a model directory: config.json (architecture, provenance) and weights.safetensors. */
export async function saveModel(
  model: SwinUNETR,
  dir: string,
  provenance: ModelProvenance,
  extra: { preprocessing?: ModelPreprocessing; classNames?: string[] } = {},
): Promise<ModelManifest> {
  await ensureWritableDirectory(dir);
  const manifest: ModelManifest = {
    format: 'fseft-model',
    version: 1,
    arch: 'swinunetr',
    config: model.config,
    parameters: model.parameterCount,
    weights: WEIGHTS,
    layout: 'pytorch-state-dict',
    provenance,
    ...extra,
  };
  await writeSafetensors(path.join(dir, WEIGHTS), await stateDictOf(model), { format: 'pt', producer: 'fseft', arch: 'swinunetr' });
  await writeFileAtomic(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2));
  return manifest;
}

/** Reads a model directory written by `saveModel` (or by `fseft import-torch`). */
export function loadModel(dir: string): { model: SwinUNETR; manifest: ModelManifest } {
  const manifestFile = path.join(dir, MANIFEST);
  if (!fs.existsSync(manifestFile)) throw new FseftError(`not a model directory (no ${MANIFEST})`, dir);
  const manifest = readJsonFile(manifestFile) as ModelManifest;
  if (manifest.format !== 'fseft-model' || manifest.arch !== 'swinunetr') throw new FseftError(`unsupported model (format ${manifest.format}, arch ${manifest.arch})`, manifestFile);
  let config: SwinUNETRConfig;
  try {
    config = swinUnetrConfig(manifest.config);
  } catch (error) {
    throw error instanceof FseftError ? new FseftError(`invalid config: ${error.message}`, manifestFile) : error;
  }
  if (manifest.preprocessing !== undefined) checkPreprocessing(manifest.preprocessing, manifestFile);
  const { tensors } = readSafetensors(path.join(dir, manifest.weights ?? WEIGHTS));
  const missing = swinUnetrParameterSpecs(config).filter((s) => !tensors.has(s.name)).map((s) => s.name);
  if (missing.length > 0) throw new FseftError(`weights lack ${missing.length} tensor(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`, path.join(dir, WEIGHTS));
  return { model: modelFromStateDict(config, tensors), manifest };
}

/** Refuses a config.json whose preprocessing could not prepare an input (named by file). */
function checkPreprocessing(p: ModelPreprocessing, file: string): void {
  const sizes = (v: unknown, n: number) => Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  const spacing = typeof p.spacing === 'number' ? [p.spacing] : p.spacing;
  if (!(sizes(spacing, 1) || sizes(spacing, 3)) || (spacing as number[]).some((x) => x <= 0)) throw new FseftError(`invalid preprocessing.spacing ${JSON.stringify(p.spacing)}: one or three positive sizes in mm`, file);
  if (!sizes(p.window, 2) || p.window[0] >= p.window[1]) throw new FseftError(`invalid preprocessing.window ${JSON.stringify(p.window)}: [low, high] HU with low < high`, file);
  if (!sizes(p.roi, 3) || p.roi.some((n) => !Number.isInteger(n) || n <= 0 || n % 32 !== 0)) throw new FseftError(`invalid preprocessing.roi ${JSON.stringify(p.roi)}: three sizes, each a positive multiple of 32`, file);
  if (p.adaptationRoi !== undefined && (!sizes(p.adaptationRoi, 3) || p.adaptationRoi.some((n) => !Number.isInteger(n) || n < 2))) {
    throw new FseftError(`invalid preprocessing.adaptationRoi ${JSON.stringify(p.adaptationRoi)}: three whole sizes of at least 2 voxels`, file);
  }
}

/** A short content hash of a model's weights: adapters record it and refuse other backbones. */
export function modelFingerprint(dir: string): string {
  const manifest = readJsonFile(path.join(dir, MANIFEST)) as ModelManifest;
  const bytes = fs.readFileSync(path.join(dir, manifest.weights ?? WEIGHTS));
  return crypto.createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/** The model directory a name stands for: 'default' is the small model shipped in data/models/default. */
export function resolveModelDir(name: string): string {
  if (name !== 'default') return name;
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'data', 'models', 'default');
}

/** Loads a model by name ('default' or a directory) with its fingerprint; a missing default model gets a clear hint. */
export function loadNamedModel(name: string): { model: SwinUNETR; manifest: ModelManifest; dir: string; fingerprint: string } {
  const dir = resolveModelDir(name);
  if (name === 'default' && !fs.existsSync(dir)) throw new FseftError('the default model is missing (data/models/default); see data/README.md for the command that trains it', dir);
  const loaded = loadModel(dir);
  return { ...loaded, dir, fingerprint: modelFingerprint(dir) };
}

/** The preprocessing a model expects (the paper's when the model does not say). */
export function modelPreprocessing(manifest: ModelManifest): ModelPreprocessing {
  return manifest.preprocessing ?? PAPER_PREPROCESSING;
}

/** The output channel (0-based) of an organ (template class, 1-based) in the model's head, if it has one. */
export function headChannelOf(manifest: ModelManifest, templateClass: number, templateName: string): number | undefined {
  if (manifest.classNames) {
    const index = manifest.classNames.indexOf(templateName);
    return index >= 0 ? index : undefined;
  }
  return manifest.config.outChannels === 29 ? templateClass - 1 : undefined;
}
