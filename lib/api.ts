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
import * as path from 'node:path';
import { Adapter, AdaptMethod, DecoderMode, TRAINED_DECODER_LEARNING_RATE, inputOf, parseDecoderMode, parseMethod, zeroShotRow } from './adapters/adapters';
import { loadAdapter, saveAdapter } from './adapters/adapter-io';
import { BackendName, initBackend } from './backend/backend';
import { novelStructureName, templateClass, templateClassName } from './data/template';
import { FeatureCache } from './inference/feature-cache';
import { BackboneFeatures, backboneFeatures } from './inference/features';
import { PreparedCase, predictCase, prepareCase } from './inference/predict';
import { adapterProbabilities } from './inference/segment';
import { writeNifti } from './io/nifti';
import { Volume, sameGrid } from './io/volume';
import { SizeConstraintForm } from './losses/size-constraint';
import { hausdorff95, surfaceDice } from './metrics/distance';
import { dice } from './metrics/overlap';
import { ModelManifest, ModelPreprocessing, headChannelOf, loadNamedModel, modelPreprocessing } from './networks/model-io';
import { SwinUNETR } from './networks/swin-unetr';
import { StepRecord, SupportVolume, adaptToOrgan, adaptationCrop } from './training/adapt';
import { RecipeName, recipeByName, recipeGamma, recipeHead, recipeMultiClassDice, recipeQueryDice, recipeTraining } from './training/recipes';
import { writeFileAtomic } from './util/atomic-write';
import { FseftError } from './util/errors';

/**
 * A CT with its label file; `value` picks the organ's value in a multi-label map (default: any
 * non-zero voxel). For several organs at once, `values` gives each organ's value in their order
 * (default: each organ's template class, the numbering of the kit's synthetic data).
 */
export interface LabelledCT {
  image: string;
  label: string;
  value?: number;
  values?: number[];
}

export interface AdaptRequest {
  /**
   * Template organ name or synonym ('liver', 'kidney_left', 'gallbladder'), or with `novel` any
   * structure name. Several names adapt one multi-class head over them (background channel,
   * softmax, each voxel to its most probable class), as the reference's multi-class objective.
   */
  organ: string | string[];
  /**
   * The structure is outside the 29-class template (e.g. 'heart', 'gluteus_maximus_left'): its head
   * starts random, generalization does not apply, and the support labels say where it is.
   */
  novel?: boolean;
  supports: LabelledCT[];
  /** Default 'adapter' (the paper's spatial adapter). */
  method?: AdaptMethod | string;
  /** Where every unspecified choice comes from (docs/recipes.md); default 'paper'. */
  recipe?: RecipeName;
  /**
   * Transductive inference on a query CT (Eq. 2-3); lambda, gamma and form default to the recipe's.
   * A labelled query is kept prepared, so `score` of that CT reuses its features.
   */
  ti?: { query: string | LabelledCT; lambda?: number; gamma?: number; form?: SizeConstraintForm; pool?: number };
  epochs?: number;
  learningRate?: number;
  cropsPerStep?: number;
  /**
   * Edge of the training crops in voxels (one number or three). Default: the model's
   * `adaptationRoi` for frozen-backbone methods, its `roi` for methods that run the network on crops.
   */
  crop?: number | [number, number, number];
  seed?: number;
  /** Scratch only: start from this model's Swin encoder (e.g. a self-supervised one), as the reference code; default random. */
  scratchEncoder?: FoundationModel;
  /**
   * The decoder: 'frozen' (default), 'fine-tuned' (trains from its pretrained weights) or 'new'
   * (decoder and head re-initialised), as the reference's --decoder; learning rate 1e-4 unless given.
   */
  decoder?: DecoderMode;
  /** After each training step. */
  onStep?: (record: StepRecord, total: number) => void;
  /** After each volume is read, preprocessed and (frozen methods) passed through the backbone once. */
  onVolume?: (image: string, done: number, total: number) => void;
}

/** The values an adaptation ran with, every default resolved: what `save` records. */
export interface AdaptSettings {
  recipe: RecipeName;
  k: number;
  supports: string[];
  epochs: number;
  learningRate: number;
  crops: number;
  /** Edge of each training crop (voxels). */
  cropSize: [number, number, number];
  seed: number;
  ti?: { lambda: number; gamma: number; form: SizeConstraintForm; pool: number; query: string; targetSize?: number };
  scratchInit?: string;
  /** Present when the decoder trained. */
  decoder?: DecoderMode;
  /** A multi-class head: its organs in channel order with the label value each is written with. */
  organs?: Array<{ organ: string; value: number }>;
  model: string;
}

export interface SegmentOptions {
  /** Sliding-window overlap (default 0.25). */
  overlap?: number;
  onWindow?: (done: number, total: number) => void;
}

/** A segmentation on the input CT's own grid (orientation, spacing, affine). */
export interface Segmentation {
  /** The organ, or the organs of a multi-class adapter joined by ','. */
  organ: string;
  /** Several organs: each one's label value in `mask` and its size. */
  organs?: Array<{ organ: string; value: number; voxels: number; millilitres: number }>;
  method: AdaptMethod;
  mask: Volume<Uint8Array>;
  probabilities: Volume<Float32Array>;
  seconds: number;
  /** Mask voxels and their volume in millilitres. */
  voxels: number;
  millilitres: number;
  /** Writes the mask and, when a second file is given, the probabilities: both or neither, each atomically. */
  save(maskFile: string, probabilitiesFile?: string): Promise<void>;
}

/**
 * Loads a model directory ('default' is the shipped small model) and starts the compute backend
 * once. The model keeps the backbone features of the CTs it has seen (up to `cacheMiB`, default
 * 1024), so adapting and segmenting the same files again skips the backbone.
 */
export async function load(name = 'default', options: { backend?: BackendName | string; cacheMiB?: number } = {}): Promise<FoundationModel> {
  await initBackend(options.backend);
  const { model, manifest, dir, fingerprint } = loadNamedModel(name);
  return new FoundationModel(model, manifest, dir, fingerprint, options.cacheMiB);
}

const specOf = (ct: LabelledCT) => `${ct.image}=${ct.label}${ct.values ? ':' + ct.values.join(',') : ct.value !== undefined ? ':' + ct.value : ''}`;
const asLabelled = (ct: string | LabelledCT): { image: string; label?: string; value?: number } => (typeof ct === 'string' ? { image: ct } : ct);

interface PreparedQuery {
  ct: { image: string; label?: string; value?: number };
  prepared: PreparedCase;
  features?: BackboneFeatures;
}

export class FoundationModel {
  private readonly cache: FeatureCache;

  constructor(
    readonly network: SwinUNETR,
    readonly manifest: ModelManifest,
    readonly dir: string,
    readonly fingerprint: string,
    cacheMiB = 1024,
  ) {
    this.cache = new FeatureCache(cacheMiB * 2 ** 20);
  }

  /**
   * The frozen backbone's features of a prepared CT, computed once per file (its size and time
   * of change are part of the key, so an edited file is read again).
   */
  featuresOf(file: string, prepared: PreparedCase, options: { decoderInputs?: boolean; overlap?: number; onWindow?: (done: number, total: number) => void } = {}): BackboneFeatures {
    const stat = fs.statSync(file);
    const key = [path.resolve(file), stat.size, stat.mtimeMs, prepared.image.shape.join('x'), options.decoderInputs ? 'decoder' : 'features', options.overlap ?? 'default'].join('|');
    return this.cache.get(key, () => backboneFeatures(this.network, prepared.image, { roi: this.preprocessing.roi, decoderInputs: options.decoderInputs, overlap: options.overlap, onWindow: options.onWindow }));
  }

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
    const names = typeof request.organ === 'string' ? [request.organ] : request.organ;
    if (names.length === 0) throw new FseftError('adapt needs an organ');
    const organs = names.map((name) => (request.novel ? novelStructureName(name) : templateClassName(templateClass(name))));
    if (new Set(organs).size !== organs.length) throw new FseftError(`an organ is named twice: ${organs.join(', ')}`);
    const multi = organs.length > 1;
    if (multi && (method === 'generalization' || request.ti)) throw new FseftError(`several organs adapt one multi-class head: ${method === 'generalization' ? 'generalization has none to train' : 'TI constrains one organ at a time'}`);
    const organ = organs.join(',');
    const channel = request.novel || multi ? undefined : headChannelOf(this.manifest, templateClass(organ), organ);
    // A multi-class support label names each organ by a value: given, or the organ's template class.
    const valuesOf = (ct: LabelledCT): number[] => {
      const values = ct.values ?? (request.novel ? undefined : organs.map((o) => templateClass(o)));
      if (!values) throw new FseftError(`give the label values of ${organs.join(', ')} in ${ct.label} (values: [...]; --support image=label:v1,v2)`);
      if (values.length !== organs.length) throw new FseftError(`${values.length} label values for ${organs.length} organs (${organs.join(', ')})`, ct.label);
      // The multi-label mask that predict writes is uint8.
      if (values.some((v) => !Number.isInteger(v) || v < 1 || v > 255)) throw new FseftError(`label values must be whole numbers from 1 to 255, got ${values.join(', ')}`, ct.label);
      return values;
    };
    if (method === 'generalization' && channel === undefined) throw new FseftError(`the model's head has no ${organ} channel: generalization is not possible; train lp or an adapter`);
    if (method !== 'generalization' && request.supports.length === 0) throw new FseftError("adapt needs at least one support CT with its label (the model's own head: segment(image, { organ }))");
    if (request.scratchEncoder && method !== 'scratch') throw new FseftError(`a scratch encoder starts scratch from a model's Swin encoder; it does not apply to ${method}`);
    const decoder = parseDecoderMode(request.decoder, method);
    const frozen = inputOf(method, decoder) !== 'image';
    if (request.ti && !frozen) throw new FseftError(`transductive inference trains on cached backbone features (lp, the adapters, ft-last); ${decoder === 'frozen' ? method : `a ${decoder} decoder`} changes the network`);
    const roi = adaptationCrop(this.preprocessing, method, decoder, request.crop);
    const featuresOf = (file: string, c: PreparedCase): BackboneFeatures | undefined => (frozen ? this.featuresOf(file, c, { decoderInputs: inputOf(method, decoder) === 'decoder' }) : undefined);
    const total = request.supports.length + (request.ti ? 1 : 0);
    const supports: SupportVolume[] = [];
    for (const s of request.supports) {
      const prepared = await prepareCase(s.image, this.preprocessing, multi ? { file: s.label, values: valuesOf(s) } : { file: s.label, value: s.value });
      supports.push({ id: s.image, image: prepared.image, mask: prepared.mask!, features: featuresOf(s.image, prepared) });
      request.onVolume?.(s.image, supports.length, total);
    }
    let query: PreparedQuery | undefined;
    if (request.ti) {
      const ct = asLabelled(request.ti.query);
      const prepared = await prepareCase(ct.image, this.preprocessing, ct.label ? { file: ct.label, value: ct.value } : undefined);
      query = { ct, prepared, features: featuresOf(ct.image, prepared) };
      request.onVolume?.(ct.image, total, total);
    }
    const trained = method === 'generalization' ? undefined : method;
    const ti = request.ti && {
      lambda: request.ti.lambda ?? recipe.ti.lambda,
      gamma: request.ti.gamma ?? recipeGamma(recipe, organ),
      form: request.ti.form ?? recipe.ti.form,
      pool: request.ti.pool ?? 2,
    };
    const epochs = request.epochs ?? (trained ? recipe.epochs[trained] : 1);
    const learningRate = request.learningRate ?? (trained ? (decoder !== 'frozen' ? TRAINED_DECODER_LEARNING_RATE : recipe.learningRates[trained]) : 0);
    const crops = request.cropsPerStep ?? recipe.cropsPerStep;
    const seed = request.seed ?? 0;
    const head = multi
      ? { organs: organs.map((o) => (request.novel ? undefined : recipeHead(recipe, this.network, headChannelOf(this.manifest, templateClass(o), o), method))) }
      : recipeHead(recipe, this.network, channel, method);
    const result = adaptToOrgan(this.network, supports, head, {
      method,
      roi,
      ...recipeTraining(recipe),
      epochs,
      learningRate,
      cropsPerStep: crops,
      seed,
      scratchEncoder: request.scratchEncoder?.network,
      checkpoint: true,
      decoder,
      ti: ti && { ...ti, query: query!.features! },
      onStep: request.onStep,
    });
    const settings: AdaptSettings = {
      recipe: recipe.name,
      k: supports.length,
      supports: request.supports.map(specOf),
      epochs,
      learningRate,
      crops,
      cropSize: roi,
      seed,
      ti: ti && { ...ti, query: query!.ct.image, targetSize: result.targetSize },
      scratchInit: method === 'scratch' ? (request.scratchEncoder ? `${request.scratchEncoder.dir} (${request.scratchEncoder.fingerprint})` : 'random') : undefined,
      decoder: decoder === 'frozen' ? undefined : decoder,
      organs: multi ? organs.map((o, i) => ({ organ: o, value: valuesOf(request.supports[0])[i] })) : undefined,
      model: this.dir,
    };
    return new AdaptedModel(this, organ, result.adapter, { ...result, settings }, query);
  }

  /** Reads an adapter directory written by `AdaptedModel.save` or `fseft adapt` (refused when trained on another backbone). */
  loadAdapter(dir: string): AdaptedModel {
    const { adapter, manifest } = loadAdapter(dir, this.network, this.fingerprint);
    const logFile = path.join(dir, 'log.jsonl');
    const history = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as StepRecord) : [];
    const training = manifest.training as Partial<AdaptSettings>;
    return new AdaptedModel(this, manifest.organ, adapter, {
      trainableParameters: manifest.trainableParameters,
      history,
      targetSize: training.ti?.targetSize,
      seconds: 0,
      // Adapters saved before crops could be chosen trained on crops of the model's ROI.
      settings: { ...training, cropSize: training.cropSize ?? this.preprocessing.roi } as AdaptSettings,
    });
  }

  /** The model's own segmentation of an organ (generalization: its head, no training). */
  async segment(image: string, options: { organ: string } & SegmentOptions): Promise<Segmentation> {
    const organ = templateClassName(templateClass(options.organ));
    const channel = headChannelOf(this.manifest, templateClass(organ), organ);
    if (channel === undefined) throw new FseftError(`the model's head has no ${organ} channel; adapt it to the organ first (fseft adapt)`);
    const adapter = Adapter.create('generalization', this.network, zeroShotRow(this.network, channel), 0);
    try {
      return await segmentWith(this, adapter, organ, image, options);
    } finally {
      adapter.dispose();
    }
  }

  dispose(): void {
    this.cache.clear();
    this.network.dispose();
  }
}

export class AdaptedModel {
  readonly method: AdaptMethod;
  readonly trainableParameters: number;
  readonly history: StepRecord[];
  /** TI's target size S (voxels on the preprocessed grid). */
  readonly targetSize?: number;
  readonly seconds: number;
  readonly settings: AdaptSettings;

  constructor(
    readonly base: FoundationModel,
    readonly organ: string,
    readonly adapter: Adapter,
    result: { trainableParameters: number; history: StepRecord[]; targetSize?: number; seconds: number; settings: AdaptSettings },
    private query?: PreparedQuery,
  ) {
    this.method = adapter.method;
    this.trainableParameters = result.trainableParameters;
    this.history = result.history;
    this.targetSize = result.targetSize;
    this.seconds = result.seconds;
    this.settings = result.settings;
  }

  get recipe(): RecipeName {
    return this.settings.recipe ?? 'paper';
  }

  /** Segments a CT: preprocessing, sliding windows, back onto the CT's grid, threshold 0.5, largest component. */
  segment(image: string, options: SegmentOptions = {}): Promise<Segmentation> {
    return segmentWith(this.base, this.adapter, this.organ, image, options, this.settings.organs);
  }

  /** The organs of a multi-class adapter in channel order (one name otherwise). */
  get organs(): string[] {
    return this.settings.organs?.map((o) => o.organ) ?? [this.organ];
  }

  /**
   * Dice of a labelled CT on the preprocessed grid, under the recipe's evaluation (as experiments
   * score); for a multi-class adapter the mean over its organs (scoreByOrgan gives each).
   */
  async score(ct: LabelledCT): Promise<number> {
    const byOrgan = await this.scoreByOrgan(ct);
    const values = Object.values(byOrgan);
    return values.reduce((a, b) => a + b, 0) / values.length;
  }

  /** Dice per organ of a labelled CT (the label values as at adaptation unless `ct.values` says otherwise). */
  async scoreByOrgan(ct: LabelledCT): Promise<Record<string, number>> {
    const multi = this.settings.organs;
    const q = this.query;
    const cached = !multi && q && q.ct.image === ct.image && q.ct.label === ct.label && q.ct.value === ct.value ? q : undefined;
    const label = multi ? { file: ct.label, values: ct.values ?? multi.map((o) => o.value) } : { file: ct.label, value: ct.value };
    const prepared = cached?.prepared ?? (await prepareCase(ct.image, this.base.preprocessing, label));
    const roi = this.base.preprocessing.roi;
    const features = this.adapter.input === 'image' ? undefined : (cached?.features ?? this.base.featuresOf(ct.image, prepared, { decoderInputs: this.adapter.input === 'decoder' }));
    const grid = adapterProbabilities(this.adapter, { image: prepared.image, features }, { roi });
    if (!multi) return { [this.organ]: recipeQueryDice(recipeByName(this.recipe), grid, prepared).dice };
    return recipeMultiClassDice(recipeByName(this.recipe), grid, prepared, this.organs);
  }

  /** Writes an adapter directory (adapter.json, adapter.safetensors, log.jsonl) that `fseft predict --adapter` and `loadAdapter` read. */
  async save(dir: string): Promise<void> {
    await saveAdapter(this.adapter, dir, {
      organ: this.organ,
      backbone: { fingerprint: this.base.fingerprint, featureSize: this.base.network.config.featureSize, outChannels: this.base.network.config.outChannels },
      preprocessing: this.base.preprocessing,
      training: { ...this.settings },
      createdAt: new Date().toISOString(),
    });
    await writeFileAtomic(path.join(dir, 'log.jsonl'), this.history.map((h) => JSON.stringify(h) + '\n').join(''));
  }

  /** Releases the adapter's weights and the cached query (the foundation model stays loaded). */
  dispose(): void {
    this.adapter.dispose();
    this.query = undefined;
  }
}

async function segmentWith(base: FoundationModel, adapter: Adapter, organ: string, image: string, options: SegmentOptions, organs?: Array<{ organ: string; value: number }>): Promise<Segmentation> {
  const prepared = await prepareCase(image, base.preprocessing);
  const features = adapter.input === 'image' ? undefined : base.featuresOf(image, prepared, { decoderInputs: adapter.input === 'decoder', overlap: options.overlap, onWindow: options.onWindow });
  const result = predictCase(base.network, adapter, prepared, base.preprocessing, { ...options, features });
  const [sx, sy, sz] = result.mask.spacing;
  const ml = (count: number) => (count * sx * sy * sz) / 1000;
  let perOrgan: Segmentation['organs'];
  if (organs) {
    // The head's channel c becomes the organ's label value (as in the supports' labels).
    const counts = new Array<number>(organs.length + 1).fill(0);
    const values = Uint8Array.from([0, ...organs.map((o) => o.value)]);
    const data = result.mask.data;
    for (let i = 0; i < data.length; i++) {
      counts[data[i]]++;
      data[i] = values[data[i]];
    }
    perOrgan = organs.map((o, c) => ({ organ: o.organ, value: o.value, voxels: counts[c + 1], millilitres: ml(counts[c + 1]) }));
  }
  const voxels = perOrgan ? perOrgan.reduce((a, o) => a + o.voxels, 0) : result.mask.data.reduce((a, b) => a + b, 0);
  const description = `fseft ${adapter.method} ${organs ? organs.map((o) => `${o.organ}=${o.value}`).join(',') : organ}`;
  return {
    organ,
    organs: perOrgan,
    method: adapter.method,
    mask: result.mask,
    probabilities: result.probabilities,
    seconds: result.seconds,
    voxels,
    millilitres: ml(voxels),
    save: async (maskFile, probabilitiesFile) => {
      await writeNifti(maskFile, result.mask, { description });
      if (!probabilitiesFile) return;
      try {
        await writeNifti(probabilitiesFile, result.probabilities, { description: `${description} probabilities` });
      } catch (error) {
        // Both files or neither: a failed second write (a full disk) removes the first.
        await fs.promises.rm(maskFile, { force: true });
        throw error;
      }
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
