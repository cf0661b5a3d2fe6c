import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Dataset, datasetAnnotation, loadCase } from '../data/datasets';
import { TEMPLATE_CLASSES, TEMPLATE_SIZE } from '../data/template';
import { Shape3, Volume } from '../io/volume';
import { diceLossPerChannel, partialLabelLoss } from '../losses/segmentation';
import { ModelPreprocessing, loadModel, saveModel } from '../networks/model-io';
import { SwinUNETR, swinUnetrConfig } from '../networks/swin-unetr';
import { labelToMultiHot, volumeToTensor } from '../networks/volume-tensor';
import { randShiftIntensity } from '../transforms/intensity';
import { randCropByClassBalance, randCropByPosNegLabel, randFlip, randRotate90 } from '../transforms/random';
import { ensureWritableDirectory } from '../util/atomic-write';
import { FseftError } from '../util/errors';
import { ProgressBar } from '../util/progress';
import { Rng, seedFrom } from '../util/random';
import { AdamW } from './adamw';
import { warmupCosine } from './schedule';
import { CommitStage, checkpointLog, commitEpoch, readCheckpoint, restoreOptimizer } from './train-state';

export interface PretrainOptions {
  featureSize: number;
  /** Patch size, each divisible by 32. */
  roi: Shape3;
  epochs: number;
  /** Patches per volume per epoch (RandCropByPosNegLabel num_samples); one optimizer step each. */
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
  /** Start from this model directory's weights instead of a random initialisation (continued pretraining). */
  init?: string;
}

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
  seconds: number;
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
  await ensureWritableDirectory(outDir);
  const recorded = { ...options, cases: cases.map((c) => `${c.dataset}/${c.id}`) };
  const checkpoint = readCheckpoint(outDir);
  const previous = checkpoint?.state;
  let model: SwinUNETR;
  if (checkpoint && previous) {
    if (JSON.stringify(previous.options) !== JSON.stringify(recorded)) {
      throw new FseftError('holds a run with other options or data; choose another --out, or delete it to start over', outDir);
    }
    model = loadModel(checkpoint.dir).model;
  } else if (options.init) {
    model = loadModel(options.init).model;
    if (model.config.featureSize !== options.featureSize || model.config.outChannels !== TEMPLATE_SIZE) {
      throw new FseftError(`has feature size ${model.config.featureSize} and ${model.config.outChannels} outputs; pretraining needs ${options.featureSize} and ${TEMPLATE_SIZE}`, options.init);
    }
  } else {
    model = SwinUNETR.create(swinUnetrConfig({ featureSize: options.featureSize, outChannels: TEMPLATE_SIZE }), options.seed);
  }
  const variables = new Map([...model.params].map(([name, p]) => [name, p as tf.Variable]));
  const optimizer = new AdamW({ learningRate: options.learningRate, weightDecay: options.weightDecay });
  if (checkpoint) restoreOptimizer(checkpoint.dir, optimizer, variables);
  const logLines = checkpoint && checkpoint.dir !== outDir ? checkpointLog(checkpoint) : legacyLog(outDir, previous?.epoch ?? 0);

  const stepsPerEpoch = cases.length * options.samplesPerVolume;
  const totalSteps = stepsPerEpoch * options.epochs;
  const firstEpoch = previous ? previous.epoch : 0;
  let step = previous ? previous.step : 0;
  const bar = new ProgressBar(totalSteps - step, firstEpoch > 0 ? `pretrain (resumed at epoch ${firstEpoch + 1})` : 'pretrain');
  try {
    for (let epoch = firstEpoch; epoch < options.epochs; epoch++) {
      const started = Date.now();
      // One generator per epoch: a resumed run draws exactly the patches an uninterrupted one would.
      const rng = new Rng(seedFrom(options.seed, 'pretrain-epoch', epoch));
      let lossSum = 0;
      const classSum = new Float64Array(TEMPLATE_SIZE);
      const classCount = new Float64Array(TEMPLATE_SIZE);
      for (const trainingCase of rng.shuffle(cases)) {
        const crop = { roi: options.roi, numSamples: options.samplesPerVolume };
        const patches = options.balanceClasses ? randCropByClassBalance(trainingCase.image, trainingCase.label, rng, crop) : randCropByPosNegLabel(trainingCase.image, trainingCase.label, rng, crop);
        for (const patch of patches) {
          optimizer.learningRate = warmupCosine(step, totalSteps, options.warmupEpochs * stepsPerEpoch, options.learningRate);
          let [image, label] = randRotate90([patch.image, patch.label] as [Volume, Volume], rng, { prob: 0.1, maxK: 3 });
          [image, label] = randFlip([image, label] as [Volume, Volume], rng, { prob: 0.1, axes: [rng.int(3)] });
          image = randShiftIntensity(image as Volume<Float32Array>, rng, 0.1, 0.2);
          const { loss, perClass } = trainStep(model, optimizer, variables, image, label, trainingCase.annotation, options, rng);
          lossSum += loss;
          trainingCase.annotation.forEach((w, c) => {
            if (w) {
              classSum[c] += perClass[c];
              classCount[c]++;
            }
          });
          step++;
          bar.tick(`epoch ${epoch + 1}/${options.epochs} loss ${loss.toFixed(4)}`);
        }
      }
      const classLoss: Record<string, number> = {};
      classCount.forEach((n, c) => {
        if (n > 0) classLoss[TEMPLATE_CLASSES[c]] = classSum[c] / n;
      });
      const record: EpochRecord = { epoch: epoch + 1, step, learningRate: optimizer.learningRate, loss: lossSum / stepsPerEpoch, classLoss, seconds: (Date.now() - started) / 1000 };
      logLines.push(JSON.stringify(record));
      const provenance = { createdAt: new Date().toISOString(), origin: 'pretrain', seed: options.seed, notes: [`epoch ${epoch + 1} of ${options.epochs}`] };
      await commitEpoch(
        outDir,
        {
          state: { epoch: epoch + 1, step, options: recorded },
          optimizer,
          variables,
          logLines,
          saveModelTo: (dir) => saveModel(model, dir, provenance, { preprocessing: options.preprocessing }),
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

/** The log of a run from before per-epoch checkpoints: its lines up to the finished epoch. */
function legacyLog(outDir: string, finishedEpochs: number): string[] {
  const file = path.join(outDir, 'log.jsonl');
  if (finishedEpochs === 0 || !fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '').slice(0, finishedEpochs);
}

function trainStep(
  model: SwinUNETR,
  optimizer: AdamW,
  variables: Map<string, tf.Variable>,
  image: Volume,
  label: Volume,
  annotation: Uint8Array,
  options: PretrainOptions,
  rng: Rng,
): { loss: number; perClass: Float32Array } {
  const x = volumeToTensor(image);
  const target = labelToMultiHot(label, TEMPLATE_SIZE);
  let perClassTensor: tf.Tensor | undefined;
  try {
    const list = [...variables.values()];
    const { value, grads } = tf.variableGrads(() => {
      const { logits, features } = model.forward(x, { checkpoint: options.checkpoint, training: { rng } });
      features.dispose();
      perClassTensor = tf.keep(diceLossPerChannel(logits, target));
      return partialLabelLoss(logits, target, annotation, { bce: options.bce });
    }, list);
    const loss = value.dataSync()[0];
    value.dispose();
    if (!Number.isFinite(loss)) {
      tf.dispose(Object.values(grads));
      throw new FseftError(`the loss became ${loss}; lower --lr`);
    }
    const byName = new Map(list.map((v) => [v.name, v]));
    optimizer.apply(new Map(Object.entries(grads).map(([name, g]) => [byName.get(name)!, g])));
    return { loss, perClass: perClassTensor!.dataSync() as Float32Array };
  } finally {
    tf.dispose([x, target]);
    perClassTensor?.dispose();
  }
}
