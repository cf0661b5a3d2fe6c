import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Dataset, datasetAnnotation, loadCase } from '../data/datasets';
import { DISJOINT_CLASSES, TEMPLATE_CLASSES, TEMPLATE_SIZE } from '../data/template';
import { Shape3, Volume } from '../io/volume';
import { diceLossPerChannel, partialLabelLoss } from '../losses/segmentation';
import { ModelPreprocessing, loadModel, saveModel } from '../networks/model-io';
import { SwinUNETR, swinUnetrConfig } from '../networks/swin-unetr';
import { labelToMultiHot, volumeToTensor } from '../networks/volume-tensor';
import { randShiftIntensity } from '../transforms/intensity';
import { randZoom } from '../transforms/zoom';
import { groupByDataset, validationDice } from './validation';
import { randCropByClassBalance, randCropByPosNegLabel, randFlip, randRotate90 } from '../transforms/random';
import { ensureWritableDirectory } from '../util/atomic-write';
import { FseftError } from '../util/errors';
import { ProgressBar } from '../util/progress';
import { Rng, seedFrom } from '../util/random';
import { AdamW } from './adamw';
import { warmupCosine } from './schedule';
import { CommitStage, checkpointLog, commitEpoch, readCheckpoint, restoreOptimizer } from './train-state';

const DISJOINT_FLAGS = Uint8Array.from(TEMPLATE_CLASSES, (name) => (DISJOINT_CLASSES.includes(name) ? 1 : 0));

export type PretrainSampling = 'case' | 'uniform-dataset';

export interface PretrainOptions {
  featureSize: number;
  /** Patch size, each divisible by 32. */
  roi: Shape3;
  epochs: number;
  /** Patches per drawn volume (RandCropByPosNegLabel num_samples). */
  samplesPerVolume: number;
  learningRate: number;
  weightDecay: number;
  warmupEpochs: number;
  seed: number;
  /** Dice + BCE per class instead of Dice alone. */
  bce: boolean;
  /** Recompute every block's activations in the backward pass (less memory, about 1.3x the time). */
  checkpoint: boolean;
  /** The preprocessing the data went through, recorded in the model. */
  preprocessing: ModelPreprocessing;
  /** Centre positive patches on a uniformly drawn class (RandCropByLabelClasses) instead of any labelled voxel. */
  balanceClasses?: boolean;
  /** With `bce`: each class's BCE as the mean of its positive and its negative voxels' means (class-balanced). */
  balancedBce?: boolean;
  /**
   * With `bce`: voxels of the organs a volume's dataset labels are known negatives of the disjoint
   * classes it leaves unlabelled (exclusionBce in losses/segmentation). Not in the paper's Eq. 1.
   */
  exclusionBce?: boolean;
  /** Start from this model directory's weights instead of a random initialisation (continued pretraining). */
  init?: string;
  /**
   * `case`: every volume once per epoch, one step per patch. `uniform-dataset` (the reference's
   * UniformDataset): each draw picks a dataset (every dataset equally often, whatever its size),
   * then one of its volumes at random.
   */
  sampling?: PretrainSampling;
  /** uniform-dataset: optimizer steps per epoch; default volumes / batch (the reference's epoch). */
  stepsPerEpoch?: number;
  /** Patches per optimizer step, gradients averaged (the reference's batch size). */
  batch?: number;
  /** Positive : negative patch centres (RandCropByPosNegLabel pos, neg). */
  pos?: number;
  neg?: number;
  /** RandZoomd on volumes of datasets whose name matches `datasets` (a case-insensitive pattern). */
  zoom?: { prob: number; minZoom: number; maxZoom: number; datasets: string };
  rotate90Prob?: number;
  flipProb?: number;
  shiftOffset?: number;
  shiftProb?: number;
  /** Smoothing of the per-class Dice (MONAI 1e-5, the reference's BinaryDice3D 1). */
  diceSmooth?: number;
  /** The warm-up starts at this fraction of the learning rate (the reference: 1 / warm-up epochs). */
  warmupStart?: number;
  /** Held-out volumes scored after every epoch (per-class Dice of the model's head). */
  validation?: TrainingCase[];
  /**
   * Multiplies the learning rate of the output head (out.conv). The decoder's features are
   * instance-normalised (no affine), so the logits' range is the head's weights: under Adam, whose
   * steps are about lr whatever the gradient, they grow by about lr per step.
   */
  headRateScale?: number;
  /**
   * Stop after this epoch of the `epochs`-long schedule (the learning rate follows the whole
   * schedule). Not part of the run's identity: the same run continues past it when called again
   * with a later stop or none.
   */
  stopAfterEpoch?: number;
}

/** Sampling, augmentation and loss details of the kit's first recipe; a run that names none of them behaves as before. */
export const KIT_SAMPLING = { headRateScale: 1, sampling: 'case' as PretrainSampling, stepsPerEpoch: 0, batch: 1, pos: 1, neg: 1, zoom: undefined, rotate90Prob: 0.1, flipProb: 0.1, shiftOffset: 0.1, shiftProb: 0.2, diceSmooth: 1e-5, warmupStart: 0 };

export const DEFAULT_PRETRAIN: Omit<PretrainOptions, 'preprocessing'> = {
  featureSize: 48,
  roi: [96, 96, 96],
  epochs: 100,
  samplesPerVolume: 2,
  learningRate: 1e-4,
  weightDecay: 1e-5,
  warmupEpochs: 1,
  seed: 0,
  bce: false,
  checkpoint: true,
};

/** A preprocessed training volume with its dataset's annotation vector. */
export interface TrainingCase {
  id: string;
  dataset: string;
  image: Volume<Float32Array>;
  label: Volume<Uint8Array>;
  annotation: Uint8Array;
}

/** Loads every labelled case of preprocessed datasets (labels in template classes). */
export async function loadTrainingCases(datasets: Dataset[]): Promise<TrainingCase[]> {
  const cases: TrainingCase[] = [];
  for (const dataset of datasets) {
    const annotation = datasetAnnotation(dataset);
    if (dataset.annotated.length === 0) throw new FseftError(`dataset ${dataset.name} annotates no template class: nothing to pretrain on`);
    for (const entry of dataset.cases) {
      if (!entry.label && !entry.masks) throw new FseftError(`case ${entry.id} of ${dataset.name} has no label`, entry.image);
      const loaded = await loadCase(dataset, entry);
      const image = loaded.image.data instanceof Float32Array ? (loaded.image as Volume<Float32Array>) : loaded.image.withData(Float32Array.from(loaded.image.data));
      cases.push({ id: entry.id, dataset: dataset.name, image, label: loaded.label!, annotation });
    }
  }
  return cases;
}

export interface EpochRecord {
  epoch: number;
  step: number;
  learningRate: number;
  loss: number;
  /** Mean Dice loss per annotated class over the epoch's patches (template names). */
  classLoss: Record<string, number>;
  /** Per-class Dice of the model's head on the held-out volumes after this epoch. */
  validation?: { dice: Record<string, number>; seconds: number };
  seconds: number;
}

type Optional = 'init' | 'validation' | 'zoom' | 'balanceClasses' | 'balancedBce' | 'exclusionBce' | 'stopAfterEpoch';
type Resolved = Required<Omit<PretrainOptions, Optional>> & Pick<PretrainOptions, Optional>;

/** Options with the kit's sampling and augmentation wherever a run names none. */
export function resolvePretrainOptions(options: PretrainOptions): Resolved {
  const resolved = { ...KIT_SAMPLING, ...withoutUndefined(options) } as Resolved;
  if (resolved.stopAfterEpoch !== undefined && !(Number.isInteger(resolved.stopAfterEpoch) && resolved.stopAfterEpoch >= 1)) throw new FseftError(`the epoch to stop after must be a positive integer, got ${resolved.stopAfterEpoch}`);
  if (resolved.balancedBce && !resolved.bce) throw new FseftError('a balanced BCE needs the BCE term: add --bce');
  if (resolved.exclusionBce && !resolved.bce) throw new FseftError('the exclusion BCE needs the BCE term: add --bce');
  if (!(resolved.batch >= 1 && Number.isInteger(resolved.batch))) throw new FseftError(`batch must be a positive integer, got ${resolved.batch}`);
  if (!(resolved.pos >= 0 && resolved.neg >= 0 && resolved.pos + resolved.neg > 0)) throw new FseftError(`pos:neg must be non-negative and not both zero, got ${resolved.pos}:${resolved.neg}`);
  if (resolved.zoom && !(resolved.zoom.minZoom >= 1 && resolved.zoom.maxZoom >= resolved.zoom.minZoom)) throw new FseftError(`zoom range must satisfy 1 <= min <= max, got ${resolved.zoom.minZoom}..${resolved.zoom.maxZoom}`);
  return resolved;
}

/** Optimizer steps per epoch: every patch of every volume (case), or the reference's volumes / batch (uniform-dataset). */
export function stepsPerEpochOf(options: Resolved, volumes: number): number {
  if (options.sampling === 'case') return Math.ceil((volumes * options.samplesPerVolume) / options.batch);
  return options.stepsPerEpoch > 0 ? options.stepsPerEpoch : Math.max(1, Math.ceil(volumes / options.batch));
}

/**
 * The volumes one epoch draws, in order. `uniform-dataset` gives every dataset the same number of
 * draws (shuffled), each a volume of that dataset drawn at random, as the reference's UniformDataset.
 */
export function epochDraws<T extends { dataset: string }>(cases: readonly T[], draws: number, sampling: PretrainSampling, rng: Rng): T[] {
  if (sampling === 'case') return rng.shuffle([...cases]);
  const datasets = [...groupByDataset(cases).values()];
  const order = rng.shuffle(Array.from({ length: draws }, (_, i) => i % datasets.length));
  return order.map((d) => datasets[d][rng.int(datasets[d].length)]);
}

/**
 * Pretrains SwinUNETR on partially labelled datasets with the masked loss of Eq. 1, AdamW and a
 * warm-up + cosine schedule. Every epoch is committed in one step to `outDir/resume/epoch-N`
 * (weights, optimizer state, `train-state.json`, log), then `outDir` itself holds the loadable
 * weights and `log.jsonl`; calling again with the same options resumes after the last committed epoch.
 */
export async function pretrain(
  cases: TrainingCase[],
  outDir: string,
  options: PretrainOptions,
  onEpoch?: (record: EpochRecord) => void,
  onCommitStage?: (stage: CommitStage, epoch: number) => void,
): Promise<SwinUNETR> {
  if (cases.length === 0) throw new FseftError('no training cases');
  for (const n of options.roi) if (n % 32 !== 0) throw new FseftError(`--roi ${options.roi.join(',')}: every size must be divisible by 32`);
  const o = resolvePretrainOptions(options);
  await ensureWritableDirectory(outDir);
  const { validation, stopAfterEpoch, ...settings } = o;
  const recorded = { ...settings, cases: cases.map((c) => `${c.dataset}/${c.id}`), ...(validation ? { validation: validation.map((c) => `${c.dataset}/${c.id}`) } : {}) };
  const checkpoint = readCheckpoint(outDir);
  const previous = checkpoint?.state;
  let model: SwinUNETR;
  if (checkpoint && previous) {
    if (JSON.stringify(previous.options) !== JSON.stringify(recorded) && JSON.stringify(previous.options) !== JSON.stringify(legacyRecorded(options, cases))) {
      throw new FseftError('holds a run with other options or data; choose another --out, or delete it to start over', outDir);
    }
    model = loadModel(checkpoint.dir).model;
  } else if (o.init) {
    model = loadModel(o.init).model;
    if (model.config.featureSize !== o.featureSize || model.config.outChannels !== TEMPLATE_SIZE) {
      throw new FseftError(`has feature size ${model.config.featureSize} and ${model.config.outChannels} outputs; pretraining needs ${o.featureSize} and ${TEMPLATE_SIZE}`, o.init);
    }
  } else {
    model = SwinUNETR.create(swinUnetrConfig({ featureSize: o.featureSize, outChannels: TEMPLATE_SIZE }), o.seed);
  }
  const variables = new Map([...model.params].map(([name, p]) => [name, p as tf.Variable]));
  const optimizer = new AdamW({ learningRate: o.learningRate, weightDecay: o.weightDecay });
  if (o.headRateScale !== 1) for (const [name, variable] of variables) if (name.startsWith('out.')) optimizer.rateScale.set(variable, o.headRateScale);
  if (checkpoint) restoreOptimizer(checkpoint.dir, optimizer, variables);
  const logLines = checkpoint && checkpoint.dir !== outDir ? checkpointLog(checkpoint) : legacyLog(outDir, previous?.epoch ?? 0);

  const stepsPerEpoch = stepsPerEpochOf(o, cases.length);
  const totalSteps = stepsPerEpoch * o.epochs;
  const zoomPattern = o.zoom ? new RegExp(o.zoom.datasets, 'i') : undefined;
  const firstEpoch = previous ? previous.epoch : 0;
  let step = previous ? previous.step : 0;
  const lastEpoch = Math.min(o.epochs, stopAfterEpoch ?? o.epochs);
  const bar = new ProgressBar(Math.max(0, lastEpoch * stepsPerEpoch - step), firstEpoch > 0 ? `pretrain (resumed at epoch ${firstEpoch + 1})` : 'pretrain');
  let lastValidation = '';
  try {
    for (let epoch = firstEpoch; epoch < lastEpoch; epoch++) {
      const started = Date.now();
      // One generator per epoch: a resumed run draws exactly the patches an uninterrupted one would.
      const rng = new Rng(seedFrom(o.seed, 'pretrain-epoch', epoch));
      let lossSum = 0;
      const classSum = new Float64Array(TEMPLATE_SIZE);
      const classCount = new Float64Array(TEMPLATE_SIZE);
      const patches = epochPatches(cases, stepsPerEpoch * o.batch, o, zoomPattern, rng);
      for (let s = 0; s < stepsPerEpoch; s++) {
        optimizer.learningRate = learningRateAt(step, totalSteps, o.warmupEpochs * stepsPerEpoch, o);
        const batch: Array<{ image: Volume; label: Volume; annotation: Uint8Array }> = [];
        for (let b = 0; b < o.batch; b++) {
          const next = patches.next();
          if (next.done) break;
          batch.push(next.value);
        }
        if (batch.length === 0) break;
        const { loss, perClass } = trainStep(model, optimizer, variables, batch, o, rng);
        lossSum += loss;
        for (const [index, item] of batch.entries()) {
          item.annotation.forEach((w, c) => {
            if (w) {
              classSum[c] += perClass[index][c];
              classCount[c]++;
            }
          });
        }
        step++;
        bar.tick(`epoch ${epoch + 1}/${o.epochs} loss ${loss.toFixed(4)}${lastValidation}`);
      }
      const classLoss: Record<string, number> = {};
      classCount.forEach((n, c) => {
        if (n > 0) classLoss[TEMPLATE_CLASSES[c]] = classSum[c] / n;
      });
      const record: EpochRecord = { epoch: epoch + 1, step, learningRate: optimizer.learningRate, loss: lossSum / stepsPerEpoch, classLoss, seconds: 0 };
      if (validation && validation.length > 0) {
        const result = validationDice(model, validation, o.roi);
        record.validation = { dice: result.dice, seconds: result.seconds };
        lastValidation = ` | val ${Object.entries(result.dice).map(([name, d]) => `${name} ${d.toFixed(2)}`).join(' ')}`;
      }
      record.seconds = (Date.now() - started) / 1000;
      logLines.push(JSON.stringify(record));
      const provenance = { createdAt: new Date().toISOString(), origin: 'pretrain', seed: o.seed, notes: [`epoch ${epoch + 1} of ${o.epochs}`] };
      await commitEpoch(
        outDir,
        {
          state: { epoch: epoch + 1, step, options: recorded },
          optimizer,
          variables,
          logLines,
          saveModelTo: (dir) => saveModel(model, dir, provenance, { preprocessing: o.preprocessing }),
        },
        onCommitStage && ((stage) => onCommitStage(stage, epoch + 1)),
      );
      onEpoch?.(record);
    }
  } catch (error) {
    // An interrupted run leaves its checkpoint; the model in memory is of no further use.
    model.dispose();
    throw error;
  } finally {
    optimizer.dispose();
  }
  return model;
}

/** Warm-up from `warmupStart` x the rate to the rate, then cosine to 0, per step. */
function learningRateAt(step: number, totalSteps: number, warmupSteps: number, o: Resolved): number {
  if (step < warmupSteps) return o.learningRate * (o.warmupStart + ((1 - o.warmupStart) * step) / Math.max(1, warmupSteps));
  return warmupCosine(step, totalSteps, warmupSteps, o.learningRate);
}

/** The augmented patches of one epoch, drawn lazily: zoom (some datasets), crop, rotate, flip, shift. */
function* epochPatches(cases: TrainingCase[], count: number, o: Resolved, zoomPattern: RegExp | undefined, rng: Rng): Generator<{ image: Volume; label: Volume; annotation: Uint8Array }> {
  const draws = epochDraws(cases, Math.ceil(count / o.samplesPerVolume), o.sampling, rng);
  for (const trainingCase of draws) {
    let image: Volume<Float32Array> = trainingCase.image;
    let label: Volume<Uint8Array> = trainingCase.label;
    if (o.zoom && zoomPattern!.test(trainingCase.dataset)) [image, label] = randZoom(image, label, rng, o.zoom);
    const crop = { roi: o.roi, numSamples: o.samplesPerVolume, pos: o.pos, neg: o.neg };
    const patches = o.balanceClasses ? randCropByClassBalance(image, label, rng, crop) : randCropByPosNegLabel(image, label, rng, crop);
    for (const patch of patches) {
      let [patchImage, patchLabel] = randRotate90([patch.image, patch.label] as [Volume, Volume], rng, { prob: o.rotate90Prob, maxK: 3 });
      if (o.flipProb > 0) [patchImage, patchLabel] = randFlip([patchImage, patchLabel] as [Volume, Volume], rng, { prob: o.flipProb, axes: [rng.int(3)] });
      patchImage = randShiftIntensity(patchImage as Volume<Float32Array>, rng, o.shiftOffset, o.shiftProb);
      yield { image: patchImage, label: patchLabel, annotation: trainingCase.annotation };
    }
  }
}

/** The options a run recorded before sampling and augmentation became options (so that it still resumes). */
function legacyRecorded(options: PretrainOptions, cases: TrainingCase[]): object {
  return { ...options, cases: cases.map((c) => `${c.dataset}/${c.id}`) };
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The reference's BinaryDice3D smooth-1 Dice or MONAI's 1e-5, per class, masked as Eq. 1. */
function trainStep(
  model: SwinUNETR,
  optimizer: AdamW,
  variables: Map<string, tf.Variable>,
  batch: Array<{ image: Volume; label: Volume; annotation: Uint8Array }>,
  o: Resolved,
  rng: Rng,
): { loss: number; perClass: Float32Array[] } {
  const list = [...variables.values()];
  const byName = new Map(list.map((v) => [v.name, v]));
  const summed = new Map<tf.Variable, tf.Tensor>();
  const perClass: Float32Array[] = [];
  let lossSum = 0;
  try {
    for (const item of batch) {
      const x = volumeToTensor(item.image);
      const target = labelToMultiHot(item.label, TEMPLATE_SIZE);
      let perClassTensor: tf.Tensor | undefined;
      try {
        const { value, grads } = tf.variableGrads(() => {
          const { logits, features } = model.forward(x, { checkpoint: o.checkpoint, training: { rng } });
          features.dispose();
          perClassTensor = tf.keep(diceLossPerChannel(logits, target, o.diceSmooth));
          return partialLabelLoss(logits, target, item.annotation, { bce: o.bce, diceSmooth: o.diceSmooth, balancedBce: o.balancedBce, exclusion: o.exclusionBce ? { disjoint: DISJOINT_FLAGS } : undefined });
        }, list);
        const loss = value.dataSync()[0];
        value.dispose();
        if (!Number.isFinite(loss)) {
          tf.dispose(Object.values(grads));
          throw new FseftError(`the loss became ${loss}; lower --lr`);
        }
        lossSum += loss;
        perClass.push(perClassTensor!.dataSync() as Float32Array);
        for (const [name, g] of Object.entries(grads)) {
          const variable = byName.get(name)!;
          const earlier = summed.get(variable);
          if (earlier) {
            summed.set(variable, tf.add(earlier, g));
            tf.dispose([earlier, g]);
          } else {
            summed.set(variable, g);
          }
        }
      } finally {
        tf.dispose([x, target]);
        perClassTensor?.dispose();
      }
    }
    if (batch.length > 1) {
      for (const [variable, g] of summed) {
        summed.set(variable, tf.div(g, batch.length));
        g.dispose();
      }
    }
    optimizer.apply(summed);
    summed.clear();
    return { loss: lossSum / batch.length, perClass };
  } finally {
    tf.dispose([...summed.values()]);
  }
}

/** The log of a run from before per-epoch checkpoints: its lines up to the finished epoch. */
function legacyLog(outDir: string, finishedEpochs: number): string[] {
  const file = path.join(outDir, 'log.jsonl');
  if (finishedEpochs === 0 || !fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '').slice(0, finishedEpochs);
}
