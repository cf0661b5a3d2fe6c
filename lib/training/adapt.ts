import * as tf from '@tensorflow/tfjs-core';
import { Adapter, AdaptMethod, DecoderMode, HeadInit, MultiClassHead, inputOf } from '../adapters/adapters';
import { BackboneFeatures } from '../inference/features';
import { Shape3, Volume } from '../io/volume';
import { bcePerChannel, crossEntropy, diceLossPerChannel } from '../losses/segmentation';
import { SizeConstraintForm, referenceSizePenalty, sizeConstraintLoss } from '../losses/size-constraint';
import { largestConnectedComponent } from '../metrics/components';
import { ModelPreprocessing } from '../networks/model-io';
import { CheckpointMode, SwinUNETR } from '../networks/swin-unetr';
import { FeatureGrid, cropGrid, poolGrid, volumeToGrid } from '../networks/volume-tensor';
import { FseftError } from '../util/errors';
import { Rng, seedFrom } from '../util/random';
import { AdamW } from './adamw';
import { warmupCosine } from './schedule';

/** A preprocessed support volume with its binary organ mask and (for frozen-backbone methods) cached features. */
export interface SupportVolume {
  id: string;
  image: Volume<Float32Array>;
  /** The organ (1) on background (0); for a multi-class head the organs 1..C in the head's order. */
  mask: Volume<Uint8Array>;
  features?: BackboneFeatures;
}

export interface TransductiveOptions {
  lambda: number;
  gamma: number;
  form: SizeConstraintForm;
  /** Average-pool the query's features by this factor per axis for the size term (the reference code uses 2). */
  pool: number;
}

export interface AdaptOptions {
  method: AdaptMethod;
  epochs: number;
  learningRate: number;
  weightDecay: number;
  warmupEpochs: number;
  /** Random crops of one support volume per step (positive:negative 1:1). */
  cropsPerStep: number;
  /** Edge of each training crop (`adaptationCrop`: the model's adaptation ROI or an explicit size). */
  roi: Shape3;
  seed: number;
  /** Dice + BCE (default) or Dice alone. */
  bce: boolean;
  /**
   * 'pooled' (default): one Dice over all crops of a step (smooth 1e-5); 'per-crop': the mean of
   * each crop's Dice (the reference code, smooth 1), which punishes false positives in crops
   * without the organ much harder.
   */
  dice?: 'pooled' | 'per-crop';
  diceSmooth?: number;
  /** Scratch only: a model whose Swin encoder starts the network (the reference's self-supervised start). */
  scratchEncoder?: SwinUNETR;
  /** The decoder: frozen (default), fine-tuned or new (see DecoderMode); a trained one reads the image. */
  decoder?: DecoderMode;
  /** Stops before `epochs` when the training loss has stopped falling (the later reference code). */
  earlyStopping?: EarlyStopping;
  /** Transductive inference on this query (Eq. 2-3), active in the last half of the epochs. */
  ti?: TransductiveOptions & { query: BackboneFeatures };
  /**
   * Frozen-backbone methods read crops of the cached whole-volume features (default). false runs
   * the backbone on every crop instead: the same training without the cache, to measure it.
   */
  cachedFeatures?: boolean;
  /**
   * Gradient checkpointing of the methods that train through the network (FT, Scratch, the PEFT
   * methods, a trained decoder; see SwinUNETR's ForwardOptions.checkpoint). 'fine' also
   * checkpoints each convolution, ft-last's block included. At the paper's F = 48, 96^3 on wasm's
   * 4 GiB, FT-Last trains without checkpointing (2.3 GiB peak, set by the frozen trunk's forward
   * pass); a PEFT method, which trains through the whole network, needs its blocks checkpointed
   * (true: 3.2 GiB; 'fine' 3.4 GiB and slower).
   */
  checkpoint?: CheckpointMode;
  onStep?: (record: StepRecord, total: number) => void;
}

/**
 * The later reference code's stopping rule on the training loss: after each epoch, the moving
 * average over `window` epochs of the mean segmentation loss; stop when it fell by less than
 * `minDelta` over the last `patience` epochs (checked once `patience + window + 1` epochs are done).
 */
export interface EarlyStopping {
  window: number;
  patience: number;
  minDelta: number;
}

/** True when the epoch losses so far meet the early-stopping rule. */
export function shouldStopEarly(epochLosses: number[], rule: EarlyStopping): boolean {
  if (epochLosses.length < rule.patience + rule.window + 1) return false;
  const smooth: number[] = [];
  for (let end = rule.window; end <= epochLosses.length; end++) smooth.push(epochLosses.slice(end - rule.window, end).reduce((a, b) => a + b, 0) / rule.window);
  return smooth[smooth.length - rule.patience] - smooth[smooth.length - 1] < rule.minDelta;
}

export interface StepRecord {
  step: number;
  epoch: number;
  loss: number;
  segmentationLoss: number;
  sizeLoss?: number;
  /** The query's predicted size S_hat (voxels), when TI is active. */
  predictedSize?: number;
  seconds: number;
}

export interface AdaptResult {
  adapter: Adapter;
  history: StepRecord[];
  trainableParameters: number;
  /** The target size S used by TI (voxels). */
  targetSize?: number;
  seconds: number;
}

export const DEFAULT_ADAPT: Omit<AdaptOptions, 'method' | 'roi'> = {
  epochs: 100,
  learningRate: 1e-3,
  weightDecay: 1e-5,
  warmupEpochs: 1,
  cropsPerStep: 6,
  seed: 0,
  bce: true,
};

/** Reference learning rates per method (reference notes): adapters 1e-4 in the paper's later code, 1e-2 for the probe, 1e-4 for FT. */
export const METHOD_LEARNING_RATES: Record<AdaptMethod, number> = {
  generalization: 0,
  scratch: 1e-4,
  ft: 1e-4,
  'ft-last': 1e-4,
  lp: 1e-2,
  adapter: 1e-3,
  'residual-adapter': 1e-3,
  'adapter-k1': 1e-3,
  'mlp-adapter': 1e-3,
  lora: 1e-3,
  adaptformer: 1e-2,
  bitfit: 1e-2,
  'ln-affine': 1e-2,
  compacter: 1e-2,
};

/**
 * The organ size S for TI (Eq. 2): mean voxel count of the support masks' largest components;
 * with five or more supports, sizes outside median +- std are dropped first (reference code).
 */
export function estimateTargetSize(masks: Volume[]): number {
  if (masks.length === 0) throw new FseftError('no support masks to estimate the organ size from');
  let sizes = masks.map((m) => largestConnectedComponent(m.data, m.shape, 26).reduce((a, b) => a + b, 0));
  if (sizes.length >= 5) {
    const sorted = [...sizes].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
    const std = Math.sqrt(sizes.reduce((a, b) => a + (b - mean) ** 2, 0) / sizes.length);
    // Strictly inside, as the reference (`estimate_target`); all sizes equal keeps them all.
    const kept = sizes.filter((s) => Math.abs(s - median) < std);
    if (kept.length > 0) sizes = kept;
  }
  const size = sizes.reduce((a, b) => a + b, 0) / sizes.length;
  if (!(size > 0)) throw new FseftError('the support masks are empty: no organ voxels after preprocessing');
  return size;
}

/**
 * The crop edge adaptation trains on: `override` when given, else the model's `adaptationRoi` for
 * methods that read cached backbone features and its sliding-window `roi` for methods that run
 * the network on every crop (the backbone then sees the crop as its whole context).
 */
export function adaptationCrop(preprocessing: ModelPreprocessing, method: AdaptMethod, decoder: DecoderMode = 'frozen', override?: number | Shape3): Shape3 {
  const input = method === 'generalization' ? 'features' : inputOf(method, decoder);
  const crop: Shape3 = override === undefined ? (input === 'image' ? preprocessing.roi : preprocessing.adaptationRoi ?? preprocessing.roi) : typeof override === 'number' ? [override, override, override] : override;
  checkCropSize(crop, input);
  return crop;
}

/** Refuses a crop the network or the half-resolution FT-Last inputs cannot take. */
function checkCropSize(roi: Shape3, input: 'image' | 'features' | 'decoder'): void {
  const named = `adaptation crop ${roi.join('x')}`;
  if (roi.length !== 3 || roi.some((n) => !Number.isInteger(n) || n < 2)) throw new FseftError(`${named}: give three whole sizes of at least 2 voxels`);
  if (input === 'image' && roi.some((n) => n % 32 !== 0)) throw new FseftError(`${named}: the network runs on every crop of this method, so each size must be divisible by 32`);
  if (input === 'decoder' && roi.some((n) => n % 2 !== 0)) throw new FseftError(`${named}: ft-last reads half-resolution decoder inputs, so each size must be even`);
}

/**
 * Random crop starts of size `roi` in a volume, centred on organ voxels or on body background
 * (image > 0) with equal probability, kept inside the volume (centred when it is smaller than the
 * ROI; outside reads as zero). `even` aligns starts to even voxels (FT-Last's half-resolution inputs).
 */
export function sampleCropStarts(mask: Volume, image: Volume, roi: Shape3, count: number, rng: Rng, even = false): Shape3[] {
  const [nx, ny] = mask.shape;
  const foreground: number[] = [];
  const background: number[] = [];
  for (let i = 0; i < mask.data.length; i++) {
    if (mask.data[i] > 0) foreground.push(i);
    else if (image.data[i] > 0) background.push(i);
  }
  const starts: Shape3[] = [];
  for (let s = 0; s < count; s++) {
    let positive = rng.next() < 0.5;
    if (positive && foreground.length === 0) positive = false;
    if (!positive && background.length === 0) positive = true;
    const pool = positive ? foreground : background;
    const flat = pool.length > 0 ? pool[rng.int(pool.length)] : 0;
    const centre = [flat % nx, Math.floor(flat / nx) % ny, Math.floor(flat / (nx * ny))];
    starts.push(
      centre.map((c, a) => {
        const size = mask.shape[a];
        let start = size <= roi[a] ? Math.floor((size - roi[a]) / 2) : Math.min(Math.max(c - Math.floor(roi[a] / 2), 0), size - roi[a]);
        if (even && start % 2 !== 0) start -= 1;
        return start;
      }) as Shape3,
    );
  }
  return starts;
}

/**
 * Few-shot adaptation of `backbone` to one organ from k support volumes: one step per support
 * volume per epoch, each on `cropsPerStep` random crops; AdamW with warm-up + cosine decay; with
 * `ti`, the size constraint on the query is added (weight lambda) in the last half of the epochs.
 */
export function adaptToOrgan(backbone: SwinUNETR, supports: SupportVolume[], init: HeadInit | MultiClassHead | undefined, options: AdaptOptions): AdaptResult {
  const started = Date.now();
  if (supports.length === 0) throw new FseftError('no support volumes');
  if (options.scratchEncoder && options.method !== 'scratch') throw new FseftError(`an encoder to start from is for scratch only, not ${options.method}`);
  // Everything that can be refused is refused before any variable exists.
  const input = inputOf(options.method, options.decoder);
  const cached = options.method !== 'generalization' && options.cachedFeatures !== false && input !== 'image';
  if (cached) for (const s of supports) if (!s.features || (input === 'decoder' && !s.features.dec0)) throw new FseftError(`support ${s.id} has no cached backbone features`);
  if (options.ti && init !== undefined && 'organs' in init) throw new FseftError('transductive inference constrains one organ\'s size: adapt one organ at a time with TI');
  if (options.ti && input === 'image') throw new FseftError('transductive inference trains on cached backbone features (lp, the adapters, ft-last); ft, scratch, the PEFT methods and a trained decoder change the network');
  checkCropSize(options.roi, options.method === 'generalization' ? 'features' : cached ? input : 'image');
  const adapter = Adapter.create(options.method, backbone, init, seedFrom(options.seed, 'adapter-init'), options.scratchEncoder, options.decoder);
  const history: StepRecord[] = [];
  if (options.method === 'generalization') return { adapter, history, trainableParameters: 0, seconds: 0 };
  const channels = adapter.outputChannels;

  const grids = supports.map((s) => ({ image: volumeToGrid(s.image), mask: volumeToGrid(s.mask) }));
  const targetSize = options.ti ? estimateTargetSize(supports.map((s) => s.mask)) : undefined;
  const query = options.ti ? queryInputs(options.ti.query, input, options.ti.pool) : undefined;
  const optimizer = new AdamW({ learningRate: options.learningRate, weightDecay: options.weightDecay });
  const totalSteps = options.epochs * supports.length;
  const tiFrom = Math.floor(options.epochs / 2);
  const half = options.roi.map((n) => n / 2) as Shape3;
  const epochLosses: number[] = [];
  try {
    for (let epoch = 0, step = 0; epoch < options.epochs; epoch++) {
      const rng = new Rng(seedFrom(options.seed, 'adapt-epoch', epoch));
      for (const index of rng.shuffle(supports.map((_, i) => i))) {
        const stepStarted = Date.now();
        optimizer.learningRate = warmupCosine(step, totalSteps, options.warmupEpochs * supports.length, options.learningRate);
        const support = supports[index];
        const starts = sampleCropStarts(support.mask, support.image, options.roi, options.cropsPerStep, rng, input === 'decoder');
        // The reference form takes its own step once per epoch (below), not a term of every step.
        const withTi = options.ti !== undefined && options.ti.form !== 'reference' && epoch >= tiFrom;
        let segmentationValue = 0;
        let sizeValue: number | undefined;
        let predictedSize: number | undefined;
        const { value, grads } = tf.variableGrads(() => {
          const logits: tf.Tensor5D[] = [];
          const targets: tf.Tensor5D[] = [];
          for (const start of starts) {
            const inputs = cropInputs(backbone, support, grids[index].image, start, options.roi, half, input, cached);
            logits.push(adapter.forward(inputs, { checkpoint: options.checkpoint }));
            const target = cropGrid(grids[index].mask, start, options.roi);
            targets.push(channels === 1 ? target : oneHotTarget(target, channels));
          }
          const allLogits = tf.concat(logits, 0);
          const allTargets = tf.concat(targets, 0);
          let segmentation = stepDiceLoss(logits, targets, options.dice ?? 'pooled', options.diceSmooth, channels === 1 ? 'sigmoid' : 'softmax');
          if (options.bce) segmentation = tf.add(segmentation, (channels === 1 ? bcePerChannel(allLogits, allTargets) : crossEntropy(allLogits, allTargets)).mean()) as tf.Scalar;
          segmentationValue = segmentation.dataSync()[0];
          if (!withTi) return segmentation;
          const sizeScale = options.ti!.pool ** 3;
          const predicted = tf.mul(tf.sum(tf.sigmoid(adapter.forward(query!))), sizeScale) as tf.Scalar;
          predictedSize = predicted.dataSync()[0];
          const size = sizeConstraintLoss(predicted, targetSize!, options.ti!.gamma, options.ti!.form as Exclude<SizeConstraintForm, 'reference'>);
          sizeValue = size.dataSync()[0];
          return tf.add(segmentation, tf.mul(size, options.ti!.lambda)) as tf.Scalar;
        }, adapter.trainable);
        const loss = value.dataSync()[0];
        value.dispose();
        if (!Number.isFinite(loss)) {
          tf.dispose(Object.values(grads));
          throw new FseftError(`the loss became ${loss} at step ${step + 1}; lower --lr`);
        }
        const byName = new Map(adapter.trainable.map((v) => [v.name, v]));
        optimizer.apply(new Map(Object.entries(grads).map(([name, g]) => [byName.get(name)!, g])));
        step++;
        const record: StepRecord = { step, epoch: epoch + 1, loss, segmentationLoss: segmentationValue, sizeLoss: sizeValue, predictedSize, seconds: (Date.now() - stepStarted) / 1000 };
        history.push(record);
        options.onStep?.(record, totalSteps);
      }
      if (options.ti?.form === 'reference' && epoch >= tiFrom) {
        const sizeStep = referenceTiStep(adapter, optimizer, query!, targetSize!, options.ti);
        const last = history.at(-1);
        if (last) Object.assign(last, sizeStep);
      }
      const thisEpoch = history.filter((r) => r.epoch === epoch + 1);
      epochLosses.push(thisEpoch.reduce((total, r) => total + r.segmentationLoss, 0) / thisEpoch.length);
      if (options.earlyStopping && shouldStopEarly(epochLosses, options.earlyStopping)) break;
    }
  } catch (error) {
    adapter.dispose();
    throw error;
  } finally {
    optimizer.dispose();
    if (query) tf.dispose(Object.values(query));
  }
  return { adapter, history, trainableParameters: adapter.trainableParameters, targetSize, seconds: (Date.now() - started) / 1000 };
}

/**
 * The Dice term of a support step: one Dice over all crops pooled (smooth 1e-5 by default), or the
 * mean of each crop's own Dice (smooth 1 by default, the reference code).
 */
export function stepDiceLoss(logits: tf.Tensor5D[], targets: tf.Tensor5D[], mode: 'pooled' | 'per-crop', smooth?: number, activation: 'sigmoid' | 'softmax' = 'sigmoid'): tf.Scalar {
  return tf.tidy(() => {
    if (mode === 'pooled') return diceLossPerChannel(tf.concat(logits, 0), tf.concat(targets, 0), smooth ?? 1e-5, activation).mean() as tf.Scalar;
    return tf.mean(tf.stack(logits.map((crop, i) => diceLossPerChannel(crop, targets[i], smooth ?? 1, activation).mean()))) as tf.Scalar;
  });
}

/** A crop of organ indices [1, X, Y, Z, 1] (0 background) as one-hot [1, X, Y, Z, channels]. */
function oneHotTarget(indices: tf.Tensor5D, channels: number): tf.Tensor5D {
  return tf.tidy(() => {
    const [, x, y, z] = indices.shape;
    const hot = tf.oneHot(tf.cast(tf.reshape(indices, [-1]), 'int32') as tf.Tensor1D, channels);
    return tf.reshape(tf.cast(hot, 'float32'), [1, x, y, z, channels]) as tf.Tensor5D;
  });
}

/**
 * The reference code's TI step, once per epoch after the support steps: the query's predicted size
 * alone, its penalty times lambda, one optimizer step; none while S_hat is inside the margin.
 * Returns what the epoch's last step record shows (S_hat before the step, the penalty).
 */
function referenceTiStep(adapter: Adapter, optimizer: AdamW, query: ReturnType<typeof queryInputs>, targetSize: number, ti: TransductiveOptions): { predictedSize: number; sizeLoss: number } {
  let predictedSize = 0;
  let sizeLoss = 0;
  let stepped = false;
  const { value, grads } = tf.variableGrads(() => {
    const predicted = tf.mul(tf.sum(tf.sigmoid(adapter.forward(query))), ti.pool ** 3) as tf.Scalar;
    predictedSize = predicted.dataSync()[0];
    const penalty = referenceSizePenalty(predicted, targetSize, ti.gamma);
    if (!penalty) return tf.mul(predicted, 0) as tf.Scalar;
    stepped = true;
    sizeLoss = penalty.dataSync()[0];
    return tf.mul(penalty, ti.lambda) as tf.Scalar;
  }, adapter.trainable);
  value.dispose();
  if (stepped) {
    const byName = new Map(adapter.trainable.map((v) => [v.name, v]));
    optimizer.apply(new Map(Object.entries(grads).map(([name, g]) => [byName.get(name)!, g])));
  } else {
    tf.dispose(Object.values(grads));
  }
  return { predictedSize, sizeLoss };
}

function cropInputs(
  backbone: SwinUNETR,
  support: SupportVolume,
  image: FeatureGrid,
  start: Shape3,
  roi: Shape3,
  half: Shape3,
  input: 'features' | 'decoder' | 'image',
  cached: boolean,
): { image?: tf.Tensor5D; features?: tf.Tensor5D; dec0?: tf.Tensor5D; enc0?: tf.Tensor5D } {
  if (input === 'image') return { image: cropGrid(image, start, roi) };
  if (cached) {
    const f = support.features!;
    if (input === 'features') return { features: cropGrid(f.features, start, roi) };
    return { dec0: cropGrid(f.dec0!, start.map((s) => s / 2) as Shape3, half), enc0: cropGrid(f.enc0!, start, roi) };
  }
  // Without the cache: the frozen backbone runs on this crop (no gradient flows into it).
  const crop = cropGrid(image, start, roi);
  if (input === 'decoder') {
    const inputs = backbone.decoderInputsOf(crop);
    crop.dispose();
    return inputs;
  }
  const out = backbone.forward(crop);
  tf.dispose([crop, out.logits]);
  return { features: out.features };
}

/** The query's (pooled) inputs for the size term, as tensors kept for the whole run. */
function queryInputs(query: BackboneFeatures, input: 'features' | 'decoder' | 'image', pool: number): { features?: tf.Tensor5D; dec0?: tf.Tensor5D; enc0?: tf.Tensor5D } {
  const tensor = (grid: FeatureGrid, shape?: Shape3) => cropGrid(grid, [0, 0, 0], shape ?? grid.shape);
  if (input === 'features') return { features: tensor(poolGrid(query.features, pool)) };
  if (!query.dec0 || !query.enc0) throw new FseftError('the query has no cached decoder inputs');
  const enc0 = poolGrid(query.enc0, pool);
  const dec0 = poolGrid(query.dec0, pool);
  // Keep enc0 exactly twice dec0 per axis after pooling.
  const low = dec0.shape.map((n, a) => Math.min(n, Math.floor(enc0.shape[a] / 2))) as Shape3;
  return { dec0: tensor(dec0, low), enc0: tensor(enc0, low.map((n) => 2 * n) as Shape3) };
}
