import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../../backend/backend';
import { readCollection } from '../../data/datasets';
import { CT_WINDOW } from '../../transforms/intensity';
import { DEFAULT_PRETRAIN, PretrainSampling, loadTrainingCases, pretrain, resolvePretrainOptions, stepsPerEpochOf } from '../../training/pretrain';
import { pretrainRecipeByName } from '../../training/pretrain-recipes';
import { splitValidation } from '../../training/validation';
import { ModelPreprocessing } from '../../networks/model-io';
import { FseftError } from '../../util/errors';
import { readJsonFile } from '../../util/read-file';
import { Options } from '../args';
import { Shape3 } from '../../io/volume';

export const PRETRAIN_HELP = `fseft pretrain --data <preprocessed collection.json> --out <model dir> [options]
  Pretrains SwinUNETR on partially labelled datasets (Eq. 1: per-class Dice masked by each
  dataset's annotation vector) with AdamW and warm-up + cosine decay. The data is the output of
  'fseft preprocess --data <collection> --out <dir>' (labels in the 29-class template). The model
  directory is loadable after every epoch; rerunning the same command resumes after the last
  finished epoch. One JSON line per epoch goes to <model dir>/log.jsonl.
  Options (defaults from --recipe; docs/recipes.md lists both recipes with their sources):
    --recipe kit|reference  kit: every volume once per epoch, patches 1:1 (default);
                           reference: the authors' code (uniform datasets, 4:1, zoom, batch 2, lr 5e-4)
    --feature-size 48      SwinUNETR feature size (multiple of 12)
    --roi 96 | 96,96,64    patch size, divisible by 32
    --adaptation-roi N     recorded in the model: the crop edge that frozen-backbone few-shot
                           adaptation trains on (default --roi); see docs/cli.md (adapt --crop)
    --epochs N  --lr X  --weight-decay X  --warmup-epochs N  --warmup-start F  --seed 0
    --stop-after N         stop after epoch N of the --epochs schedule (run again with a later
                           N, or without, to continue the same run)
    --sampling case|uniform-dataset   every volume per epoch, or each dataset equally often
    --steps N              uniform-dataset: optimizer steps per epoch (default volumes / batch)
    --batch N              patches per optimizer step (gradients averaged)
    --samples N            patches per drawn volume
    --pos-neg 4:1          positive : negative patch centres
    --zoom P,MIN,MAX  --zoom-datasets <pattern>   RandZoom on datasets whose name matches
    --rotate P  --flip P  --shift OFFSET,P        augmentation probabilities
    --dice-smooth X  --bce Dice smoothing; + BCE per class
    --balanced-bce         each class's BCE as the mean of its positive and negative voxels'
                           means, so that a small organ's voxels weigh as much as the background
    --exclusion-bce        where a dataset leaves a class unlabelled, the voxels of the organs it does
                           label are that class's known negatives (BCE with target 0; needs --bce)
    --head-lr-scale S      the output head's learning rate is S x --lr (default 1)
    --balance-classes      centre positive patches on a uniformly drawn organ (RandCropByLabelClasses)
    --val-cases N          hold out the last N volumes of every dataset; per-class Dice of the
                           model's head on them after every epoch (log.jsonl and the progress line)
    --init <model dir>     continue from a model's weights instead of a random initialisation
    --no-checkpoint        keep activations instead of recomputing them (faster, more memory)
    --backend tensorflow|wasm|cpu`;

export async function pretrainCommand(options: Options): Promise<void> {
  const data = options.required('data');
  const out = options.required('out');
  const recipe = pretrainRecipeByName(options.string('recipe') ?? 'kit').values;
  const roiList = options.numberList('roi', [1, 3]);
  const posNeg = options.string('pos-neg');
  const zoomList = options.numberList('zoom', [3]);
  const shiftList = options.numberList('shift', [2]);
  const settings = {
    featureSize: options.integer('feature-size', recipe.featureSize, { min: 12 })!,
    roi: (roiList ? (roiList.length === 1 ? [roiList[0], roiList[0], roiList[0]] : roiList) : recipe.roi) as Shape3,
    epochs: options.integer('epochs', recipe.epochs, { min: 1 })!,
    samplesPerVolume: options.integer('samples', recipe.samplesPerVolume, { min: 1 })!,
    learningRate: options.number('lr', recipe.learningRate, { above: 0 })!,
    weightDecay: options.number('weight-decay', recipe.weightDecay, { min: 0 })!,
    warmupEpochs: options.number('warmup-epochs', recipe.warmupEpochs, { min: 0 })!,
    warmupStart: options.number('warmup-start', recipe.warmupStart, { min: 0, max: 1 })!,
    seed: options.integer('seed', 0, { min: 0 })!,
    bce: options.flag('bce', recipe.bce),
    diceSmooth: options.number('dice-smooth', recipe.diceSmooth, { above: 0 })!,
    checkpoint: options.flag('checkpoint', DEFAULT_PRETRAIN.checkpoint),
    balanceClasses: options.flag('balance-classes'),
    // Absent unless given, so that runs recorded before the option existed still resume.
    balancedBce: options.flag('balanced-bce') || undefined,
    exclusionBce: options.flag('exclusion-bce') || undefined,
    init: options.string('init'),
    sampling: parseSampling(options.string('sampling') ?? recipe.sampling),
    stepsPerEpoch: options.integer('steps', recipe.stepsPerEpoch, { min: 0 })!,
    batch: options.integer('batch', recipe.batch, { min: 1 })!,
    ...(posNeg ? parsePosNeg(posNeg) : { pos: recipe.pos, neg: recipe.neg }),
    zoom: zoomList ? { prob: zoomList[0], minZoom: zoomList[1], maxZoom: zoomList[2], datasets: options.string('zoom-datasets') ?? recipe.zoom?.datasets ?? '.' } : recipe.zoom,
    rotate90Prob: options.number('rotate', recipe.rotate90Prob, { min: 0, max: 1 })!,
    flipProb: options.number('flip', recipe.flipProb, { min: 0, max: 1 })!,
    shiftOffset: shiftList ? shiftList[0] : recipe.shiftOffset,
    shiftProb: shiftList ? shiftList[1] : recipe.shiftProb,
    headRateScale: options.number('head-lr-scale', recipe.headRateScale, { above: 0 })!,
    stopAfterEpoch: options.integer('stop-after', undefined, { min: 1 }),
  };
  if (!zoomList && settings.zoom && options.string('zoom-datasets')) settings.zoom = { ...settings.zoom, datasets: options.string('zoom-datasets')! };
  const valCases = options.integer('val-cases', 0, { min: 0 })!;
  const adaptationEdge = options.integer('adaptation-roi', undefined, { min: 2 });
  const backend = options.string('backend');
  options.rejectUnknown();
  await initBackend(backend as never);
  const datasets = readCollection(data);
  // Absent unless given, so that runs recorded before the option existed still resume.
  const adaptationRoi = adaptationEdge === undefined ? undefined : ([adaptationEdge, adaptationEdge, adaptationEdge] as Shape3);
  const preprocessing: ModelPreprocessing = { ...collectionPreprocessing(data), roi: settings.roi, ...(adaptationRoi ? { adaptationRoi } : {}) };
  const { train, validation } = splitValidation(await loadTrainingCases(datasets), valCases);
  const run = { ...settings, preprocessing, validation: validation.length > 0 ? validation : undefined };
  const steps = stepsPerEpochOf(resolvePretrainOptions(run), train.length);
  console.log(
    `pretraining on ${train.length} volumes from ${datasets.length} datasets (${datasets.map((d) => d.name).join(', ')})${validation.length ? `, validating on ${validation.length}` : ''}: ` +
      `${settings.epochs} epochs x ${steps} steps of ${settings.batch} patch(es) of ${settings.roi.join('x')} (${settings.sampling} sampling)`,
  );
  await pretrain(train, out, run, (record) => {
    const classes = Object.entries(record.classLoss).map(([name, v]) => `${name} ${v.toFixed(3)}`).join(', ');
    const dice = record.validation ? `; validation Dice: ${Object.entries(record.validation.dice).map(([name, v]) => `${name} ${v.toFixed(3)}`).join(', ')}` : '';
    console.log(`epoch ${record.epoch}: loss ${record.loss.toFixed(4)} (${record.seconds.toFixed(0)} s; Dice loss per class: ${classes}${dice})`);
  });
  const stopped = settings.stopAfterEpoch !== undefined && settings.stopAfterEpoch < settings.epochs;
  console.log(stopped ? `model written to ${out} (stopped after epoch ${settings.stopAfterEpoch} of ${settings.epochs}; run again with a later --stop-after, or without, to continue)` : `model written to ${out}`);
}

function parseSampling(value: string): PretrainSampling {
  if (value !== 'case' && value !== 'uniform-dataset') throw new FseftError(`--sampling must be case or uniform-dataset, got '${value}'`);
  return value;
}

function parsePosNeg(value: string): { pos: number; neg: number } {
  const match = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec(value);
  if (!match || Number(match[1]) + Number(match[2]) === 0) throw new FseftError(`--pos-neg must look like 4:1, got '${value}'`);
  return { pos: Number(match[1]), neg: Number(match[2]) };
}

/** The spacing and window the collection was preprocessed with (from its pair lists). */
function collectionPreprocessing(collectionFile: string): Omit<ModelPreprocessing, 'roi'> {
  const manifest = readJsonFile(collectionFile) as { datasets: Array<{ path: string }> };
  for (const entry of manifest.datasets) {
    const file = path.resolve(path.dirname(collectionFile), entry.path);
    if (!fs.existsSync(file) || fs.statSync(file).isDirectory()) continue;
    const pairs = readJsonFile(file) as { preprocessing?: { spacing?: number | number[]; window?: [number, number] } };
    if (pairs.preprocessing) {
      const spacing = pairs.preprocessing.spacing ?? 1.5;
      return { spacing: spacing as ModelPreprocessing['spacing'], window: pairs.preprocessing.window ?? CT_WINDOW };
    }
  }
  throw new FseftError("not a preprocessed collection (its pair lists do not say how they were preprocessed); run 'fseft preprocess --data' first", collectionFile);
}
