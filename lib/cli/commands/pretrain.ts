import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../../backend/backend';
import { readCollection } from '../../data/datasets';
import { CT_WINDOW } from '../../transforms/intensity';
import { DEFAULT_PRETRAIN, loadTrainingCases, pretrain } from '../../training/pretrain';
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
  Options:
    --feature-size 48      SwinUNETR feature size (multiple of 12)
    --roi 96 | 96,96,64    patch size, divisible by 32
    --epochs 100  --samples 2 (patches per volume per epoch, positive:negative 1:1)
    --lr 1e-4  --weight-decay 1e-5  --warmup-epochs 1  --seed 0
    --bce                  Dice + BCE per class (the universal model's loss)
    --balance-classes      centre positive patches on a uniformly drawn organ (small organs seen as
                           often as the liver; MONAI RandCropByLabelClasses) instead of any labelled voxel
    --init <model dir>     continue from a model's weights instead of a random initialisation
    --no-checkpoint        keep activations instead of recomputing them (faster, more memory)
    --backend tensorflow|wasm|cpu`;

export async function pretrainCommand(options: Options): Promise<void> {
  const data = options.required('data');
  const out = options.required('out');
  const roiList = options.numberList('roi', [1, 3]);
  const settings = {
    featureSize: options.integer('feature-size', DEFAULT_PRETRAIN.featureSize, { min: 12 })!,
    roi: (roiList ? (roiList.length === 1 ? [roiList[0], roiList[0], roiList[0]] : roiList) : DEFAULT_PRETRAIN.roi) as Shape3,
    epochs: options.integer('epochs', DEFAULT_PRETRAIN.epochs, { min: 1 })!,
    samplesPerVolume: options.integer('samples', DEFAULT_PRETRAIN.samplesPerVolume, { min: 1 })!,
    learningRate: options.number('lr', DEFAULT_PRETRAIN.learningRate, { above: 0 })!,
    weightDecay: options.number('weight-decay', DEFAULT_PRETRAIN.weightDecay, { min: 0 })!,
    warmupEpochs: options.number('warmup-epochs', DEFAULT_PRETRAIN.warmupEpochs, { min: 0 })!,
    seed: options.integer('seed', DEFAULT_PRETRAIN.seed, { min: 0 })!,
    bce: options.flag('bce', DEFAULT_PRETRAIN.bce),
    checkpoint: options.flag('checkpoint', DEFAULT_PRETRAIN.checkpoint),
    balanceClasses: options.flag('balance-classes'),
    init: options.string('init'),
  };
  const backend = options.string('backend');
  options.rejectUnknown();
  await initBackend(backend as never);
  const datasets = readCollection(data);
  const preprocessing = { ...collectionPreprocessing(data), roi: settings.roi };
  const cases = await loadTrainingCases(datasets);
  console.log(`pretraining on ${cases.length} volumes from ${datasets.length} datasets (${datasets.map((d) => d.name).join(', ')}), ${settings.epochs} epochs x ${cases.length * settings.samplesPerVolume} patches of ${settings.roi.join('x')}`);
  await pretrain(cases, out, { ...settings, preprocessing }, (record) => {
    const classes = Object.entries(record.classLoss).map(([name, v]) => `${name} ${v.toFixed(3)}`).join(', ');
    console.log(`epoch ${record.epoch}: loss ${record.loss.toFixed(4)} (${record.seconds.toFixed(0)} s; per class: ${classes})`);
  });
  console.log(`model written to ${out}`);
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
