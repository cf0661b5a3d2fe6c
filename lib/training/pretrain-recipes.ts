import { FseftError } from '../util/errors';
import { recipesMarkdown } from './recipes';
import { DEFAULT_PRETRAIN, KIT_SAMPLING, PretrainOptions } from './pretrain';

/**
 * Named pretraining recipes. `kit` is the kit's first loop (every volume once per epoch, 1:1
 * patches); `reference` follows the authors' pretraining code (github jusiro/fewshot-finetuning,
 * `main_pretrain.py`, `pretrain/datasets/dataset_pretrain.py`, `pretrain/datasets/utils.py`).
 * Explicit options override a recipe's values; docs/recipes.md prints both.
 */
export type PretrainRecipeName = 'kit' | 'reference';
export const PRETRAIN_RECIPE_NAMES: readonly PretrainRecipeName[] = ['kit', 'reference'];

export type PretrainRecipeValues = Required<Omit<PretrainOptions, 'preprocessing' | 'init' | 'validation' | 'zoom' | 'seed' | 'checkpoint' | 'balanceClasses' | 'balancedBce' | 'exclusionBce' | 'stopAfterEpoch'>> & Pick<PretrainOptions, 'zoom'>;

export interface PretrainRecipe {
  name: PretrainRecipeName;
  values: PretrainRecipeValues;
  sources: Partial<Record<keyof PretrainRecipeValues, string>>;
}

export const PRETRAIN_RECIPES: Record<PretrainRecipeName, PretrainRecipe> = {
  kit: {
    name: 'kit',
    values: {
      featureSize: DEFAULT_PRETRAIN.featureSize,
      roi: DEFAULT_PRETRAIN.roi,
      epochs: DEFAULT_PRETRAIN.epochs,
      samplesPerVolume: DEFAULT_PRETRAIN.samplesPerVolume,
      learningRate: DEFAULT_PRETRAIN.learningRate,
      weightDecay: DEFAULT_PRETRAIN.weightDecay,
      warmupEpochs: DEFAULT_PRETRAIN.warmupEpochs,
      bce: DEFAULT_PRETRAIN.bce,
      ...KIT_SAMPLING,
    },
    sources: {
      sampling: 'every volume once per epoch, one optimizer step per patch',
      pos: 'MONAI RandCropByPosNegLabeld defaults (1 : 1)',
      diceSmooth: 'MONAI DiceLoss (1e-5)',
      flipProb: 'MONAI tutorials (RandFlipd 0.1 on one axis)',
    },
  },
  reference: {
    name: 'reference',
    values: {
      featureSize: 48,
      roi: [96, 96, 96],
      epochs: 800,
      samplesPerVolume: 1,
      learningRate: 5e-4,
      weightDecay: 1e-5,
      warmupEpochs: 10,
      warmupStart: 0.1,
      bce: false,
      diceSmooth: 1,
      sampling: 'uniform-dataset',
      stepsPerEpoch: 0,
      batch: 2,
      pos: 4,
      neg: 1,
      zoom: { prob: 0.3, minZoom: 1.1, maxZoom: 1.3, datasets: 'msd|decathlon|task[0-9][0-9]' },
      rotate90Prob: 0.1,
      flipProb: 0,
      shiftOffset: 0.1,
      shiftProb: 0.2,
      headRateScale: 1,
    },
    sources: {
      featureSize: 'main_pretrain.py: SwinUNETR feature_size 48',
      roi: 'main_pretrain.py: roi 96 x 96 x 96 at 1.5 mm',
      epochs: 'main_pretrain.py: max_epoch 800 (from a public checkpoint: --init)',
      samplesPerVolume: 'main_pretrain.py: num_samples 1',
      learningRate: 'main_pretrain.py: AdamW lr 5e-4',
      weightDecay: 'main_pretrain.py: weight_decay 1e-5',
      warmupEpochs: 'main_pretrain.py: LinearWarmupCosineAnnealingLR, 10 warm-up epochs, then cosine',
      warmupStart: 'main_pretrain.py: warmup_start_lr = lr / warmup_epochs',
      bce: 'main_pretrain.py: Dice loss only',
      headRateScale: 'main_pretrain.py: one learning rate for every parameter',
      diceSmooth: 'utils/losses.py BinaryDice3D: smooth 1, per crop and class, masked by the annotation vector',
      sampling: 'pretrain/datasets/utils.py UniformDataset: each dataset as often as any other, a random volume of it',
      stepsPerEpoch: 'UniformDataset has one item per volume; an epoch is volumes / batch steps',
      batch: 'main_pretrain.py: batch_size 2',
      pos: 'dataset_pretrain.py: RandCropByPosNegLabeld(pos=4, neg=1)',
      zoom: "utils.py RandZoomd_select: prob 0.3, zoom 1.1-1.3, area / nearest, only on the Decathlon datasets ('10' in the name)",
      rotate90Prob: 'dataset_pretrain.py: RandRotate90d(prob=0.10, max_k=3)',
      flipProb: 'dataset_pretrain.py: no flips',
      shiftOffset: 'dataset_pretrain.py: RandShiftIntensityd(offsets=0.10, prob=0.20)',
    },
  },
};

export function pretrainRecipeByName(name: string): PretrainRecipe {
  const recipe = PRETRAIN_RECIPES[name as PretrainRecipeName];
  if (!recipe) throw new FseftError(`unknown pretraining recipe '${name}'; choose one of ${PRETRAIN_RECIPE_NAMES.join(', ')}`);
  return recipe;
}

/** The pretraining half of docs/recipes.md. */
export function pretrainRecipesMarkdown(): string {
  const show = (value: unknown): string => {
    if (value === undefined) return 'none';
    if (Array.isArray(value)) return value.join(' x ');
    if (typeof value === 'object') {
      const zoom = value as NonNullable<PretrainOptions['zoom']>;
      return `prob ${zoom.prob}, ${zoom.minZoom}-${zoom.maxZoom}, datasets matching \`${zoom.datasets.replace(/\|/g, '\\|')}\``;
    }
    if (value === 0) return '0';
    return String(value);
  };
  const labels: Array<[keyof PretrainRecipeValues, string, string]> = [
    ['featureSize', 'feature size', '--feature-size'],
    ['roi', 'patch', '--roi'],
    ['epochs', 'epochs', '--epochs'],
    ['sampling', 'volume sampling', '--sampling'],
    ['stepsPerEpoch', 'steps per epoch (0: volumes / batch, or every patch)', '--steps'],
    ['batch', 'patches per optimizer step', '--batch'],
    ['samplesPerVolume', 'patches per drawn volume', '--samples'],
    ['pos', 'positive : negative centres', '--pos-neg'],
    ['zoom', 'random zoom', '--zoom, --zoom-datasets'],
    ['rotate90Prob', 'rotate 90 probability', '--rotate'],
    ['flipProb', 'flip probability', '--flip'],
    ['shiftOffset', 'intensity shift (offset, probability)', '--shift'],
    ['learningRate', 'AdamW learning rate', '--lr'],
    ['weightDecay', 'weight decay', '--weight-decay'],
    ['warmupEpochs', 'warm-up epochs, then cosine', '--warmup-epochs'],
    ['warmupStart', 'warm-up starts at this fraction of the rate', '--warmup-start'],
    ['diceSmooth', 'Dice smoothing', '--dice-smooth'],
    ['bce', '+ BCE', '--bce'],
    ['headRateScale', 'output head learning-rate multiplier', '--head-lr-scale'],
  ];
  const value = (recipe: PretrainRecipe, field: keyof PretrainRecipeValues): string => {
    if (field === 'pos') return `${recipe.values.pos} : ${recipe.values.neg}`;
    if (field === 'shiftOffset') return `${recipe.values.shiftOffset}, ${recipe.values.shiftProb}`;
    return show(recipe.values[field]);
  };
  const lines = [
    '# Pretraining recipes',
    '',
    '`fseft pretrain --recipe NAME` takes every value below from the recipe; explicit options override it.',
    '`kit` is the kit\'s first loop; `reference` follows the authors\' pretraining code (github',
    'jusiro/fewshot-finetuning: `main_pretrain.py`, `pretrain/datasets/*`). Both split datasets that label',
    '"kidney" or "lung" without a side into right and left at the midline when preprocessing',
    '(`pretrain/datasets/utils.py` LRDivision), and both train with the masked Dice of Eq. 1.',
    '',
    '| choice | option | kit | reference | source (reference) |',
    '|---|---|---|---|---|',
  ];
  for (const [field, label, option] of labels) {
    lines.push(`| ${label} | \`${option}\` | ${value(PRETRAIN_RECIPES.kit, field)} | ${value(PRETRAIN_RECIPES.reference, field)} | ${PRETRAIN_RECIPES.reference.sources[field] ?? ''} |`);
  }
  lines.push(
    '',
    // Options that neither recipe sets: the shipped model's later stages use them.
    'Options outside both recipes (neither the paper nor the authors\' code has them; the shipped model\'s',
    'stages use them, `scripts/train-default-model.sh` says where and why):',
    '- `--balance-classes`: positive patch centres on a uniformly drawn labelled organ, then a voxel of',
    '  it (MONAI\'s RandCropByLabelClasses), instead of any labelled voxel.',
    '- `--balanced-bce` (with `--bce`): each class\'s BCE as the mean of its positive voxels\' mean and its',
    '  negative voxels\' mean.',
    '- `--exclusion-bce` (with `--bce`): Eq. 1 masks a class that a dataset leaves unlabelled, so that',
    '  dataset never says where the class is *not* either. But template organs do not overlap: a voxel',
    '  the dataset labels as gallbladder is not duodenum. With this option such voxels are the',
    '  unlabelled class\'s negatives (BCE with target 0, as a mean over the crop\'s voxels like the BCE',
    '  term\'s, added to the annotated classes\' sum before Eq. 1\'s division by their count). It applies',
    '  between the classes of `DISJOINT_CLASSES` (`lib/data/template.ts`: whole organs, not the tumours,',
    '  cysts and vessels inside them). The idea is the exclusion loss of Shi et al., "Marginal loss and',
    '  exclusion loss for partially supervised multi-organ segmentation" (Medical Image Analysis, 2021).',
    '',
  );
  return lines.join('\n');
}

/** docs/recipes.md: the few-shot recipes, then the pretraining recipes (kept in sync by a test). */
export function recipesPage(): string {
  return `${recipesMarkdown()}\n${pretrainRecipesMarkdown()}`;
}
