/**
 * The common path in a few calls: load a foundation model, adapt it to an organ from a few
 * labelled CTs, segment new CTs, score a mask.
 *
 *   const model = await fseft.load('default');
 *   const liver = await model.adapt({ organ: 'liver', supports: [{ image: 'a.nii.gz', label: 'a_seg.nii.gz', value: 5 }] });
 *   const result = await liver.segment('ct.nii.gz');          // mask in the CT's own geometry
 *   await result.save('ct_liver.nii.gz');
 *   fseft.evaluate(result.mask, await fseft.readNifti('ct_seg.nii.gz'), { labelValue: 5 });
 *
 * Everything below it (networks, transforms, losses, the engine) stays reachable for research.
 */
import * as fs from 'node:fs';
import { Adapter, AdaptMethod, parseMethod, zeroShotRow } from './adapters/adapters';
import { saveAdapter } from './adapters/adapter-io';
import { BackendName, initBackend } from './backend/backend';
import { templateClass, templateClassName } from './data/template';
import { BackboneFeatures, backboneFeatures } from './inference/features';
import { PreparedCase, predictCase, prepareCase } from './inference/predict';
import { adapterProbabilities } from './inference/segment';
import { writeNifti } from './io/nifti';
import { Volume, sameGrid } from './io/volume';
import { SizeConstraintForm } from './losses/size-constraint';
import { hausdorff95, surfaceDice } from './metrics/distance';
import { dice } from './metrics/overlap';
import { ModelManifest, ModelPreprocessing, headChannelOf, loadModel, modelFingerprint, modelPreprocessing, resolveModelDir } from './networks/model-io';
import { SwinUNETR } from './networks/swin-unetr';
import { AdaptResult, StepRecord, SupportVolume, adaptToOrgan } from './training/adapt';
import { RecipeName, recipeByName, recipeGamma, recipeHead, recipeQueryDice, recipeTraining } from './training/recipes';
import { FseftError } from './util/errors';

/** A CT with its label file; `value` picks the organ's value in a multi-label map (default: any non-zero voxel). */
export interface LabelledCT {
  image: string;
  label: string;
  value?: number;
}

export interface AdaptRequest {
  /** Template organ name or synonym ('liver', 'kidney_left', 'gallbladder'). */
  organ: string;
  supports: LabelledCT[];
  /** Default 'adapter' (the paper's spatial adapter). */
  method?: AdaptMethod | string;
  /** Where every unspecified choice comes from (docs/recipes.md); default 'paper'. */
  recipe?: RecipeName;
  /** Transductive inference on a query CT (Eq. 2-3); lambda, gamma and form default to the recipe's. */
  ti?: { query: string; lambda?: number; gamma?: number; form?: SizeConstraintForm; pool?: number };
  epochs?: number;
  learningRate?: number;
  cropsPerStep?: number;
  seed?: number;
  onStep?: (record: StepRecord, total: number) => void;
}

/** A segmentation on the input CT's own grid (orientation, spacing, affine). */
export interface Segmentation {
  mask: Volume<Uint8Array>;
  probabilities: Volume<Float32Array>;
  seconds: number;
  /** Writes the mask (and, when a second file is given, the probabilities) atomically. */
  save(maskFile: string, probabilitiesFile?: string): Promise<void>;
}

/** Loads a model directory ('default' is the shipped small model) and starts the compute backend once. */
export async function load(name = 'default', options: { backend?: BackendName } = {}): Promise<FoundationModel> {
  await initBackend(options.backend);
  const dir = resolveModelDir(name);
  if (!fs.existsSync(dir)) throw new FseftError(name === 'default' ? 'the default model is missing (data/models/default); see data/README.md' : 'no model directory here', dir);
  const { model, manifest } = loadModel(dir);
  return new FoundationModel(model, manifest, dir, modelFingerprint(dir));
}

export class FoundationModel {
  constructor(
    readonly network: SwinUNETR,
    readonly manifest: ModelManifest,
    readonly dir: string,
    readonly fingerprint: string,
  ) {}

  get preprocessing(): ModelPreprocessing {
    return modelPreprocessing(this.manifest);
  }

  /** The template organs the model's own head segments (its generalization). */
  get organs(): string[] {
    const names: string[] = [];
    for (let c = 1; c <= this.network.config.outChannels; c++) {
      const name = this.manifest.classNames?.[c - 1] ?? (this.network.config.outChannels === 29 ? templateClassName(c) : undefined);
      if (name) names.push(name);
    }
    return names;
  }

  /** Adapts the frozen foundation model (or, for ft / scratch, a copy of it) to one organ. */
  async adapt(request: AdaptRequest): Promise<AdaptedModel> {
    const method = parseMethod(request.method ?? 'adapter');
    const recipe = recipeByName(request.recipe ?? 'paper');
    const organ = templateClassName(templateClass(request.organ));
    if (request.supports.length === 0) throw new FseftError('adapt needs at least one support CT with its label (the model\'s own head: segment(image, { organ }))');
    const channel = headChannelOf(this.manifest, templateClass(organ), organ);
    if (method === 'generalization' && channel === undefined) throw new FseftError(`the model's head has no ${organ} channel: train lp or an adapter`);
    const frozen = method !== 'ft' && method !== 'scratch';
    const roi = this.preprocessing.roi;
    const featuresOf = (c: PreparedCase): BackboneFeatures | undefined => (frozen ? backboneFeatures(this.network, c.image, { roi, decoderInputs: method === 'ft-last' }) : undefined);
    const supports: SupportVolume[] = [];
    for (const s of request.supports) {
      const prepared = await prepareCase(s.image, this.preprocessing, { file: s.label, value: s.value });
      supports.push({ id: s.image, image: prepared.image, mask: prepared.mask!, features: featuresOf(prepared) });
    }
    const trained = method === 'generalization' ? undefined : method;
    let query: { prepared: PreparedCase; features?: BackboneFeatures } | undefined;
    if (request.ti) {
      const prepared = await prepareCase(request.ti.query, this.preprocessing);
      query = { prepared, features: featuresOf(prepared) };
    }
    const ti = request.ti && {
      lambda: request.ti.lambda ?? recipe.ti.lambda,
      gamma: request.ti.gamma ?? recipeGamma(recipe, organ),
      form: request.ti.form ?? recipe.ti.form,
      pool: request.ti.pool ?? 2,
      query: query!.features!,
    };
    if (ti && !frozen) throw new FseftError(`transductive inference trains on cached features: use it with a frozen-backbone method, not ${method}`);
    const result = adaptToOrgan(this.network, supports, recipeHead(recipe, this.network, channel, method), {
      method,
      roi,
      ...recipeTraining(recipe),
      epochs: request.epochs ?? (trained ? recipe.epochs[trained] : 1),
      learningRate: request.learningRate ?? (trained ? recipe.learningRates[trained] : 0),
      cropsPerStep: request.cropsPerStep ?? recipe.cropsPerStep,
      seed: request.seed ?? 0,
      checkpoint: true,
      ti,
      onStep: request.onStep,
    });
    return new AdaptedModel(this, organ, method, result, recipe.name, request);
  }

  /** The model's own segmentation of an organ (generalization: its head, no training). */
  async segment(image: string, options: { organ: string }): Promise<Segmentation> {
    const organ = templateClassName(templateClass(options.organ));
    const channel = headChannelOf(this.manifest, templateClass(organ), organ);
    if (channel === undefined) throw new FseftError(`the model's head has no ${organ} channel: adapt it to the organ first`);
    const adapter = Adapter.create('generalization', this.network, zeroShotRow(this.network, channel), 0);
    try {
      return await segmentWith(this, adapter, image);
    } finally {
      adapter.dispose();
    }
  }

  dispose(): void {
    this.network.dispose();
  }
}

export class AdaptedModel {
  readonly adapter: Adapter;
  readonly trainableParameters: number;
  readonly history: StepRecord[];
  /** TI's target size S (voxels on the preprocessed grid). */
  readonly targetSize?: number;
  readonly seconds: number;

  constructor(
    readonly base: FoundationModel,
    readonly organ: string,
    readonly method: AdaptMethod,
    result: AdaptResult,
    readonly recipe: RecipeName,
    private readonly request: AdaptRequest,
  ) {
    this.adapter = result.adapter;
    this.trainableParameters = result.trainableParameters;
    this.history = result.history;
    this.targetSize = result.targetSize;
    this.seconds = result.seconds;
  }

  /** Segments a CT: preprocessing, sliding windows, back onto the CT's grid, threshold 0.5, largest component. */
  segment(image: string): Promise<Segmentation> {
    return segmentWith(this.base, this.adapter, image);
  }

  /** Dice of a labelled CT on the preprocessed grid, under the recipe's evaluation (as experiments score). */
  async score(ct: LabelledCT): Promise<number> {
    const prepared = await prepareCase(ct.image, this.base.preprocessing, { file: ct.label, value: ct.value });
    const features = this.adapter.input === 'image' ? undefined : backboneFeatures(this.base.network, prepared.image, { roi: this.base.preprocessing.roi, decoderInputs: this.adapter.input === 'decoder' });
    const grid = adapterProbabilities(this.adapter, { image: prepared.image, features }, { roi: this.base.preprocessing.roi });
    return recipeQueryDice(recipeByName(this.recipe), grid, prepared).dice;
  }

  /** Writes an adapter directory that `fseft predict --adapter` and `loadAdapter` read. */
  async save(dir: string): Promise<void> {
    await saveAdapter(this.adapter, dir, {
      organ: this.organ,
      backbone: { fingerprint: this.base.fingerprint, featureSize: this.base.network.config.featureSize, outChannels: this.base.network.config.outChannels },
      preprocessing: this.base.preprocessing,
      training: { recipe: this.recipe, k: this.request.supports.length, supports: this.request.supports.map((s) => `${s.image}=${s.label}${s.value !== undefined ? ':' + s.value : ''}`), epochs: this.request.epochs, learningRate: this.request.learningRate, seed: this.request.seed ?? 0, ti: this.request.ti, targetSize: this.targetSize, model: this.base.dir },
      createdAt: new Date().toISOString(),
    });
  }

  /** Releases the adapter's weights (the foundation model stays loaded). */
  dispose(): void {
    this.adapter.dispose();
  }
}

async function segmentWith(base: FoundationModel, adapter: Adapter, image: string): Promise<Segmentation> {
  const prepared = await prepareCase(image, base.preprocessing);
  const result = predictCase(base.network, adapter, prepared, base.preprocessing);
  return {
    mask: result.mask,
    probabilities: result.probabilities,
    seconds: result.seconds,
    save: async (maskFile, probabilitiesFile) => {
      await writeNifti(maskFile, result.mask);
      if (probabilitiesFile) await writeNifti(probabilitiesFile, result.probabilities);
    },
  };
}

export interface Evaluation {
  dice: number;
  /** Symmetric 95th-percentile Hausdorff distance (mm); NaN when a mask is empty. */
  hd95: number;
  surfaceDice: number;
  voxels: { prediction: number; label: number };
}

/** Dice, HD95 and surface Dice (at `tolerance` mm) of a mask against a label on the same grid. */
export function evaluate(prediction: Volume, label: Volume, options: { predictionValue?: number; labelValue?: number; tolerance?: number } = {}): Evaluation {
  if (!sameGrid(prediction, label)) throw new FseftError(`the prediction (${prediction.shape.join('x')}) and the label (${label.shape.join('x')}) are not on one grid`);
  const binary = (v: Volume, value?: number) => Uint8Array.from(v.data as ArrayLike<number>, (x) => (value === undefined ? (x !== 0 ? 1 : 0) : x === value ? 1 : 0));
  const p = binary(prediction, options.predictionValue);
  const l = binary(label, options.labelValue);
  const count = (m: Uint8Array) => m.reduce((a, b) => a + b, 0);
  return {
    dice: dice(p, l),
    hd95: hausdorff95(p, l, label.shape, label.spacing),
    surfaceDice: surfaceDice(p, l, label.shape, label.spacing, options.tolerance ?? 2),
    voxels: { prediction: count(p), label: count(l) },
  };
}
