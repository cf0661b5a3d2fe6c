import { AdaptMethod, HeadInit, zeroShotRow } from '../adapters/adapters';
import { SizeConstraintForm } from '../losses/size-constraint';
import { largestConnectedComponent } from '../metrics/components';
import { dice } from '../metrics/overlap';
import type { SwinUNETR } from '../networks/swin-unetr';
import type { FeatureGrid } from '../networks/volume-tensor';
import { probabilitiesToLabels, probabilitiesToMask } from '../inference/segment';
import type { PreparedCase } from '../inference/predict';
import { FseftError } from '../util/errors';
import type { AdaptOptions, EarlyStopping } from './adapt';

/**
 * Named few-shot recipes: every choice that changes a number, in one place, with its source.
 * `paper` follows the paper's text (MICCAI 2023, sections 2-3); `reference` follows the authors'
 * code of the paper's time (github jusiro/fewshot-finetuning at commit 2a14658, "O" in
 * ../shared/reference-notes.md). Explicit options override a recipe's values. docs/recipes.md
 * prints the same table for readers.
 */
export type RecipeName = 'paper' | 'reference' | 'reference-head';
export const RECIPE_NAMES: readonly RecipeName[] = ['paper', 'reference', 'reference-head'];

export interface Recipe {
  name: RecipeName;
  /** Learning rate and epochs per method. */
  learningRates: Record<Exclude<AdaptMethod, 'generalization'>, number>;
  epochs: Record<Exclude<AdaptMethod, 'generalization'>, number>;
  weightDecay: number;
  warmupEpochs: number;
  cropsPerStep: number;
  /** Dice of all crops of a step pooled, or the mean of per-crop Dice; its smoothing; + BCE or not. */
  dice: 'pooled' | 'per-crop';
  diceSmooth: number;
  bce: boolean;
  /** The probe's and adapters' head: the pretrained head's row of the organ, or random. */
  head: 'zero-shot' | 'random';
  /** TI: size-term form, weight, margin, and margins that differ by organ (template names). */
  ti: { form: SizeConstraintForm; lambda: number; gamma: number; gammaByOrgan?: Record<string, number> };
  /** Probability above which a voxel is foreground (the reference thresholds logits at 0.5). */
  threshold: number;
  /** Experiment Dice of the prediction reduced to its largest component (the paper's post-processing). */
  predictionLargestComponent: boolean;
  /** Stop when the moving average of the epoch losses stops falling (AdaptOptions.earlyStopping); absent: never. */
  earlyStopping?: EarlyStopping;
  /** Experiment Dice against the ground truth reduced to its largest component. */
  groundTruthLargestComponent: boolean;
  /** Where each value comes from, by field. */
  sources: Record<string, string>;
}

const SIGMOID_HALF = 1 / (1 + Math.exp(-0.5));

/**
 * The PEFT methods came after the paper: their learning rates are those of the authors' later
 * code (fseft/configs.py at HEAD: LoRA 1e-3, the others 1e-2, decoder frozen) in every recipe,
 * and their epochs those of the recipe's adapter.
 */
const PEFT_LEARNING_RATES = { lora: 1e-3, adaptformer: 1e-2, bitfit: 1e-2, 'ln-affine': 1e-2, compacter: 1e-2 } as const;
const peftEpochs = (epochs: number) => ({ lora: epochs, adaptformer: epochs, bitfit: epochs, 'ln-affine': epochs, compacter: epochs });
const PEFT_SOURCE = '; the PEFT methods (lora, adaptformer, bitfit, ln-affine, compacter) as the later code\'s configs.py: LoRA 1e-3, the others 1e-2';

export const RECIPES: Record<RecipeName, Recipe> = {
  paper: {
    name: 'paper',
    learningRates: { lp: 1e-2, adapter: 1e-3, 'adapter-k1': 1e-3, 'residual-adapter': 1e-3, 'mlp-adapter': 1e-3, 'ft-last': 1e-4, ft: 1e-4, scratch: 1e-4, ...PEFT_LEARNING_RATES },
    epochs: { lp: 100, adapter: 100, 'adapter-k1': 100, 'residual-adapter': 100, 'mlp-adapter': 100, 'ft-last': 100, ft: 100, scratch: 100, ...peftEpochs(100) },
    weightDecay: 1e-5,
    warmupEpochs: 1,
    cropsPerStep: 6,
    dice: 'pooled',
    diceSmooth: 1e-5,
    bce: true,
    head: 'zero-shot',
    ti: { form: 'paper', lambda: 1, gamma: 0.25 },
    threshold: 0.5,
    predictionLargestComponent: true,
    groundTruthLargestComponent: false,
    sources: {
      learningRates:
        "paper sec. 3: FT and FT-Last 1e-4; the adapter's printed 0.5 is the code's argparse default and diverges, so the kit's 1e-3 (measured); LP 1e-2 (the later code's configs.py)" + PEFT_SOURCE,
      epochs: 'paper sec. 3: 100 epochs (the PEFT methods too)',
      weightDecay: 'not in the paper: the code\'s 1e-5',
      warmupEpochs: 'paper sec. 3: cosine decay; one warm-up epoch as the code',
      cropsPerStep: 'paper sec. 3: 6 patches per volume per iteration',
      dice: 'paper Eq. 1 names a segmentation loss; the kit pools the crops of a step (MONAI DiceLoss over the batch), + BCE as the universal model [20]',
      head: 'paper sec. 2: "a new classification head"; the kit starts it from the pretrained row (the later code)',
      ti: 'paper Eq. 2 (in voxels), lambda 1 (sec. 3), gamma 0.25 (Fig. 2b: a wide range works)',
      threshold: 'paper sec. 3: probabilities thresholded at 0.5',
      groundTruthLargestComponent: 'paper sec. 3: only the prediction keeps its largest component',
      predictionLargestComponent: 'paper sec. 3: the prediction keeps its largest connected component',
      earlyStopping: 'paper sec. 3: a fixed number of epochs',
    },
  },
  reference: {
    name: 'reference',
    learningRates: { lp: 1e-1, adapter: 1e-2, 'adapter-k1': 1e-2, 'residual-adapter': 1e-2, 'mlp-adapter': 1e-2, 'ft-last': 1e-2, ft: 1e-4, scratch: 1e-4, ...PEFT_LEARNING_RATES },
    epochs: { lp: 50, adapter: 100, 'adapter-k1': 100, 'residual-adapter': 100, 'mlp-adapter': 100, 'ft-last': 100, ft: 150, scratch: 150, ...peftEpochs(100) },
    weightDecay: 1e-5,
    warmupEpochs: 1,
    cropsPerStep: 6,
    dice: 'per-crop',
    diceSmooth: 1,
    bce: false,
    head: 'random',
    ti: { form: 'reference', lambda: 0.1, gamma: 0.3, gammaByOrgan: { rkidney: 0.5, lkidney: 0.5 } },
    threshold: SIGMOID_HALF,
    predictionLargestComponent: true,
    groundTruthLargestComponent: true,
    sources: {
      learningRates: 'documents/experiments/experiments_sample.txt at 2a14658: LP 1e-1, adapter 1e-2, FT-Last 1e-2, FT and Scratch 1e-4 (residual and MLP adapters as the adapter)' + PEFT_SOURCE,
      epochs: 'experiments_sample.txt: LP 50, adapter and FT-Last 100, FT and Scratch 150; the PEFT methods 100, as the adapter',
      weightDecay: 'main_fseft.py: AdamW weight decay 1e-5',
      warmupEpochs: 'main_fseft.py: one warm-up epoch, cosine',
      cropsPerStep: 'main_fseft.py: num_samples 6 crops of one volume per iteration (on each of 2 GPUs)',
      dice: 'main_fseft.py 42-45: sigmoid, Dice per crop with smooth 1, no BCE',
      head: 'fseft/models/adapters.py 26: the LP and adapter heads start random',
      ti: 'fseft/transductive/TI_modules.py: ProportionConstraint, a separate step once per epoch; runs with lambda_TI 0.1, margin 0.3 (0.5 for the kidneys)',
      threshold: 'the evaluation thresholds logits at 0.5, i.e. probability 0.622',
      groundTruthLargestComponent: 'the evaluation reduces the ground truth to its largest component too',
      predictionLargestComponent: 'the evaluation keeps the prediction\'s largest component',
      earlyStopping: 'main_fseft.py at 2a14658 trains the fixed epochs',
    },
  },
  'reference-head': {
    name: 'reference-head',
    learningRates: { lp: 1e-2, adapter: 1e-4, 'adapter-k1': 1e-4, 'residual-adapter': 1e-4, 'mlp-adapter': 1e-4, 'ft-last': 1e-4, ft: 1e-4, scratch: 1e-4, ...PEFT_LEARNING_RATES },
    epochs: { lp: 199, adapter: 199, 'adapter-k1': 199, 'residual-adapter': 199, 'mlp-adapter': 199, 'ft-last': 199, ft: 199, scratch: 199, ...peftEpochs(199) },
    weightDecay: 0,
    warmupEpochs: 0,
    cropsPerStep: 6,
    dice: 'per-crop',
    diceSmooth: 1,
    bce: false,
    head: 'zero-shot',
    ti: { form: 'reference', lambda: 0.1, gamma: 0.3, gammaByOrgan: { rkidney: 0.5, lkidney: 0.5 } },
    threshold: 0.5,
    predictionLargestComponent: false,
    groundTruthLargestComponent: false,
    earlyStopping: { window: 10, patience: 20, minDelta: 0.001 },
    sources: {
      learningRates:
        'fseft/configs.py at HEAD: LP 1e-2, the black-box adapters 1e-4, FT and Scratch 1e-4, LoRA 1e-3, BitFit, LN-affine, Compacter and AdaptFormer 1e-2 (FT-Last is not in that code: 1e-4, its rate for a trained decoder)',
      epochs: "configs.py: 200 epochs, and main_fseft.py's loop `while epoch < epochs` from epoch 1 trains at most 199",
      weightDecay: 'main_fseft.py at HEAD: AdamW weight decay 0',
      warmupEpochs: 'main_fseft.py: one warm-up epoch starting at lr / 1 = lr, i.e. none; then cosine',
      cropsPerStep: 'configs.py: num_samples 6, batch size 1',
      dice: 'utils/losses.py BinaryDice3D: sigmoid, Dice per crop with smooth 1, no BCE',
      head: 'fseft/modeling/heads.py: the head starts from the zero-shot rows (random for scratch)',
      ti: "HEAD's main_fseft.py has no TI: the paper-era code's values",
      threshold: 'main_fseft.py test(): sigmoid > 0.5',
      predictionLargestComponent: 'main_fseft.py: --post_process defaults to False (no largest component)',
      groundTruthLargestComponent: 'main_fseft.py: the ground truth is used as it is',
      earlyStopping: "main_fseft.py, --early_stop_criteria train (the default): stop when the 10-epoch moving average of the training loss fell by less than 0.001 over the last 20 epochs (checked from epoch 31); the k + 1 holdout is used only by the 'val' criterion",
    },
  },
};

/** The training options a recipe fixes for every method (AdaptOptions' loss and schedule fields). */
export function recipeTraining(recipe: Recipe): Pick<AdaptOptions, 'weightDecay' | 'warmupEpochs' | 'bce' | 'dice' | 'diceSmooth' | 'earlyStopping'> {
  return { weightDecay: recipe.weightDecay, warmupEpochs: recipe.warmupEpochs, bce: recipe.bce, dice: recipe.dice, diceSmooth: recipe.diceSmooth, earlyStopping: recipe.earlyStopping };
}

/** The head a recipe starts from: the organ's pretrained row, or random (generalization always uses the row). */
export function recipeHead(recipe: Recipe, model: SwinUNETR, channel: number | undefined, method: AdaptMethod): HeadInit | undefined {
  if (channel === undefined) return undefined;
  return recipe.head === 'zero-shot' || method === 'generalization' ? zeroShotRow(model, channel) : undefined;
}

/**
 * Dice of a query under the recipe's evaluation: its threshold, the prediction's largest
 * component, and (reference) the ground truth's largest component. Returns the mask as well.
 */
export function recipeQueryDice(recipe: Recipe, probabilities: FeatureGrid, query: PreparedCase): { dice: number; mask: ReturnType<typeof probabilitiesToMask> } {
  const mask = probabilitiesToMask(probabilities, query.image, recipe.threshold, recipe.predictionLargestComponent);
  const truth = query.mask!;
  const reference = recipe.groundTruthLargestComponent ? largestConnectedComponent(truth.data, truth.shape, 26) : truth.data;
  return { dice: dice(mask.data, reference), mask };
}

/**
 * Dice per organ of a multi-class head's probabilities: each voxel to its most probable class,
 * each organ's largest component when the recipe keeps it, against the truth's organ indices
 * (reduced to their largest component when the recipe does).
 */
export function recipeMultiClassDice(recipe: Recipe, probabilities: FeatureGrid, query: PreparedCase, organs: string[]): Record<string, number> {
  const labels = probabilitiesToLabels(probabilities, query.image, recipe.predictionLargestComponent);
  const truth = query.mask!;
  return Object.fromEntries(
    organs.map((organ, i) => {
      const predicted = Uint8Array.from(labels.data, (v) => (v === i + 1 ? 1 : 0));
      const organTruth = Uint8Array.from(truth.data, (v) => (v === i + 1 ? 1 : 0));
      const reference = recipe.groundTruthLargestComponent ? largestConnectedComponent(organTruth, truth.shape, 26) : organTruth;
      return [organ, dice(predicted, reference)];
    }),
  );
}

/** The recipe's TI margin for an organ: its own where the recipe has one (reference: 0.5 for the kidneys). */
export function recipeGamma(recipe: Recipe, organ: string): number {
  return recipe.ti.gammaByOrgan?.[organ] ?? recipe.ti.gamma;
}

export function recipeByName(name: string): Recipe {
  const recipe = RECIPES[name as RecipeName];
  if (!recipe) throw new FseftError(`unknown recipe '${name}'; choose one of ${RECIPE_NAMES.join(', ')}`);
  return recipe;
}

/** docs/recipes.md: every choice of every recipe with its value and source (kept in sync by a test). */
export function recipesMarkdown(): string {
  const show = (recipe: Recipe, field: keyof Recipe): string => {
    const value = recipe[field];
    if (field === 'learningRates' || field === 'epochs') {
      const table = value as Record<string, number>;
      return Object.entries(table).map(([method, v]) => `${method} ${v}`).join(', ');
    }
    if (field === 'ti') {
      const ti = value as Recipe['ti'];
      const byOrgan = Object.entries(ti.gammaByOrgan ?? {}).map(([organ, g]) => `${organ} ${g}`).join(', ');
      return `form ${ti.form}, lambda ${ti.lambda}, gamma ${ti.gamma}${byOrgan ? ` (${byOrgan})` : ''}`;
    }
    if (field === 'threshold') return `p > ${Number((value as number).toFixed(4))}`;
    if (field === 'earlyStopping') {
      const stop = value as EarlyStopping | undefined;
      return stop ? `moving average of ${stop.window} epochs, fall < ${stop.minDelta} over ${stop.patience} epochs` : 'none';
    }
    return String(value);
  };
  const fields: Array<[keyof Recipe, string]> = [
    ['learningRates', 'learning rate per method'],
    ['epochs', 'epochs per method'],
    ['weightDecay', 'AdamW weight decay'],
    ['warmupEpochs', 'warm-up epochs (then cosine)'],
    ['cropsPerStep', 'crops of one support volume per step'],
    ['dice', 'Dice of a step'],
    ['head', 'head of LP and adapters'],
    ['ti', 'transductive inference'],
    ['threshold', 'foreground threshold'],
    ['predictionLargestComponent', 'prediction reduced to its largest component (experiment Dice)'],
    ['groundTruthLargestComponent', 'ground truth reduced to its largest component (experiment Dice)'],
    ['earlyStopping', 'early stopping on the training loss'],
  ];
  const lines = [
    '# Few-shot recipes',
    '',
    'Made from `lib/training/recipes.ts` (a test keeps this page in sync). `fseft adapt --recipe NAME` and',
    '`"recipe": "NAME"` in an experiment plan take every value below from the recipe; explicit options',
    'and plan fields override it. `paper` follows the paper\'s text; `reference` follows the authors\'',
    'code of the paper\'s time (github jusiro/fewshot-finetuning at commit 2a14658); `reference-head` follows',
    'that repository\'s later code (HEAD: `main_fseft.py`, `fseft/configs.py`), which added the PEFT methods.',
    '',
  ];
  const sourceOf = (recipe: Recipe, field: string) => recipe.sources[field] ?? '';
  const extra = (recipe: Recipe, field: keyof Recipe) => (field === 'dice' ? `, smooth ${recipe.diceSmooth}, ${recipe.bce ? '+ BCE' : 'no BCE'}` : '');
  for (const name of RECIPE_NAMES) {
    const recipe = RECIPES[name];
    lines.push(`## ${name}`, '', '| choice | value | source |', '|---|---|---|');
    for (const [field, label] of fields) lines.push(`| ${label} | ${show(recipe, field)}${extra(recipe, field)} | ${sourceOf(recipe, field)} |`);
    lines.push('');
  }
  lines.pop();
  lines.push(
    '',
    'Each query volume is adapted on its own when TI is on (both recipes): TI is transductive.',
    '',
    'Scratch starts from random weights unless a model directory is given (`fseft adapt --init DIR`,',
    '`"scratchInit": "DIR"` in a plan): then from its Swin encoder, as the reference starts Scratch from',
    'the self-supervised encoder (import it with `fseft import-torch`); records say which.',
    '',
    'A plan\'s `"head": "zero-shot" | "random"` starts the trained head elsewhere than its recipe does',
    '(an ablation); records say where each head started.',
    '',
    'The decoder stays frozen unless `fseft adapt --decoder fine-tuned | new` or a plan\'s `"decoder"` says',
    'otherwise (the later code\'s option, for every method but generalization, ft and scratch):',
    '`fine-tuned` trains every decoder block from its pretrained weights, `new` re-initialises the',
    'decoder and the head; the learning rate is then 1e-4 unless given (as that code lowers it), and',
    'the method reads the image on every crop (no feature cache, no TI). Records say which decoder trained.',
    '',
    'The PEFT methods (`lora`, `adaptformer`, `bitfit`, `ln-affine`, `compacter`) came after the paper;',
    'both recipes give them the later code\'s learning rates and the adapter\'s epochs.',
    '',
    'Fig. 2a\'s "MLP" adapter is `adapter-k1` (the same UnetResBlock with kernel 1, as the reference code);',
    '`mlp-adapter` is the later code\'s residual x + W2 ReLU(W1 x), a different network.',
    '',
    'A gamma given on the command line (`--gamma`) or in a plan (`ti.gamma`) applies to every organ;',
    'otherwise each organ takes its recipe margin (reference: 0.5 for the kidneys, 0.3 for the rest).',
    '',
  );
  return lines.join('\n');
}
