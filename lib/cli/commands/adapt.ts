import * as fs from 'node:fs';
import * as path from 'node:path';
import { load } from '../../api';
import { ADAPT_METHODS, DECODER_MODES, TRAINED_DECODER_LEARNING_RATE, inputOf, parseDecoderMode, parseMethod } from '../../adapters/adapters';
import { novelStructureName, templateClass, templateClassName } from '../../data/template';
import { SIZE_CONSTRAINT_FORMS, SizeConstraintForm } from '../../losses/size-constraint';
import { recipeByName, recipeGamma } from '../../training/recipes';
import { withOutputDirectory } from '../../util/atomic-write';
import { FseftError } from '../../util/errors';
import { ProgressBar } from '../../util/progress';
import { Options } from '../args';
import { parseSupportSpec } from './model-options';

export const ADAPT_HELP = `fseft adapt --model <dir|default> --organ <name> --method <m> --support <image>=<label>[:<value>] (k times) --out <adapter dir> [options]
  Few-shot adaptation of a frozen (or fine-tuned) foundation model to one organ from k labelled
  volumes. Methods: ${ADAPT_METHODS.join(', ')}.
  Frozen-backbone methods (lp, adapters, ft-last) compute each volume's backbone features once
  (sliding window) and train on crops of them. The PEFT methods (lora, adaptformer, bitfit,
  ln-affine, compacter) change the Swin encoder from inside and run the network on every crop.
  Options:
    --organ a,b,...      several organs: one multi-class head (background + softmax) over them; each
                         support's label gives their values in order (<label>:6,1; default their
                         template classes); predict writes a multi-label mask with those values
    --novel              the structure is outside the 29-class template (heart chambers, lung lobes,
                         muscles): any name, a randomly initialised head, supports labelled by value
    --decoder ${DECODER_MODES.join('|')}   the decoder while adapting (the reference's option): frozen
                         (default); fine-tuned trains every decoder block from its pretrained
                         weights; new re-initialises decoder and head. A trained decoder reads the
                         image on every crop (no feature cache, no TI); its default --lr is 1e-4
    --k N                use the first N supports (error when fewer are given)
    --query <image>[=<label>[:<value>]]   the query volume: needed by --ti; with a label its Dice is printed
    --ti                 transductive inference (Eq. 2-3) in the last half of the epochs
    --lambda 1  --gamma 0.25  --ti-pool 2   (reference: lambda 0.1, gamma 0.3, 0.5 for kidneys)
    --ti-form paper|normalised|reference   paper (default): Eq. 2 in voxels added to every support
                         step, which with lambda 1 outweighs the Dice term by orders of magnitude;
                         normalised: Eq. 2 divided by max(S_hat, S), on the Dice term's scale;
                         reference: the authors' code (commit 2a14658), rel = (S - S_hat) / max(S_hat, S)
                         (max constant), penalty |rel| -/+ gamma outside [-gamma, gamma], as its own
                         optimizer step once per TI epoch (none inside the margin)
    --init <model dir>   scratch only: start from that model's Swin encoder (e.g. a self-supervised
                         encoder imported with fseft import-torch), as the reference code; else random
    --recipe paper|reference|reference-head   every default below from the paper's text (default),
                         the authors' code of the paper's time, or their later code (HEAD: its
                         learning rates, 199 epochs with early stopping on the training loss, no
                         largest component); see docs/recipes.md. Explicit options win.
    --crop N             edge of the training crops in voxels (default: the model's adaptation ROI
                         for frozen-backbone methods, its ROI for methods that run the network on
                         crops, where N must be divisible by 32; ft-last needs it even)
    --epochs (paper: 100)  --lr (paper: lp 1e-2, adapters 1e-3, ft/ft-last/scratch 1e-4, lora 1e-3,
                         the other PEFT methods 1e-2)  --crops 6  --seed 0
    --backend tensorflow|wasm|cpu`;

export async function adaptCommand(options: Options): Promise<void> {
  const modelName = options.required('model');
  const novel = options.flag('novel');
  const organNames = options.required('organ').split(',').map((name) => (novel ? novelStructureName(name.trim()) : templateClassName(templateClass(name.trim()))));
  const organName = organNames.join(',');
  const method = parseMethod(options.required('method'));
  const out = options.required('out');
  const supportSpecs = options.all('support').map((s) => parseSupportSpec(s, 'support'));
  const k = options.integer('k', undefined, { min: 1 });
  const querySpec = options.string('query');
  const ti = options.flag('ti');
  const recipe = recipeByName(options.string('recipe') ?? 'paper');
  const scratchInit = options.string('init');
  const trained = method === 'generalization' ? undefined : method;
  const decoder = parseDecoderMode(options.string('decoder'), method);
  const lambda = options.number('lambda', recipe.ti.lambda, { min: 0 })!;
  const gamma = options.number('gamma', recipeGamma(recipe, organName), { min: 0, below: 1 })!;
  const form = (options.string('ti-form') ?? recipe.ti.form) as SizeConstraintForm;
  const pool = options.integer('ti-pool', 2, { min: 1 })!;
  const epochs = options.integer('epochs', trained ? recipe.epochs[trained] : 1, { min: 1 })!;
  const learningRate = options.number('lr', trained ? (decoder !== 'frozen' ? TRAINED_DECODER_LEARNING_RATE : recipe.learningRates[trained]) : 0, { above: 0 })!;
  const crops = options.integer('crops', recipe.cropsPerStep, { min: 1 })!;
  const crop = options.integer('crop', undefined, { min: 2 });
  const seed = options.integer('seed', 0, { min: 0 })!;
  const backend = options.string('backend');
  options.rejectUnknown();
  if (!SIZE_CONSTRAINT_FORMS.includes(form)) throw new FseftError(`--ti-form must be ${SIZE_CONSTRAINT_FORMS.join(', ')}, got '${form}'`);
  if (method !== 'generalization' && supportSpecs.length === 0) throw new FseftError('give at least one --support <image>=<label>[:<value>]');
  if (k !== undefined && k > supportSpecs.length) throw new FseftError(`--k ${k} is larger than the ${supportSpecs.length} support volume(s) given`);
  if (ti && !querySpec) throw new FseftError('--ti needs --query <image>');
  if (scratchInit !== undefined && method !== 'scratch') throw new FseftError(`--init starts scratch from a model's Swin encoder; it does not apply to ${method}`);
  for (const spec of supportSpecs) if (!spec.label) throw new FseftError(`--support ${spec.image}: give its label as <image>=<label>[:<value>]`);
  if (fs.existsSync(path.join(out, 'adapter.json'))) throw new FseftError('already holds an adapter; choose another --out or delete it', out);
  await withOutputDirectory(out, async () => {
    const model = await load(modelName, { backend });
    const scratchEncoder = scratchInit !== undefined ? await load(scratchInit) : undefined;
    try {
      if (method === 'scratch') console.log(`scratch starts from ${scratchEncoder ? `the Swin encoder of ${scratchEncoder.dir}` : 'random weights (--init <model dir> starts it from a self-supervised encoder)'}`);
      const supports = supportSpecs.slice(0, k ?? supportSpecs.length).map((s) => ({ image: s.image, label: s.label!, value: s.value, values: s.values }));
      const query = querySpec ? parseSupportSpec(querySpec, 'query') : undefined;
      console.log(`adapting ${model.dir} (${model.network.parameterCount.toLocaleString('en-US')} parameters, F = ${model.network.config.featureSize}) to ${organName}${novel ? ' (a structure outside the template: new head)' : ''} with ${method}, k = ${supports.length}`);
      const frozen = inputOf(method, decoder) !== 'image';
      const featureBar = frozen ? new ProgressBar(supports.length + (ti ? 1 : 0), 'backbone features (once per volume)') : undefined;
      const bar = method === 'generalization' ? undefined : new ProgressBar(epochs * supports.length, `${method}${ti ? '+ti' : ''}`);
      const adapted = await model.adapt({
        organ: organNames,
        novel,
        supports,
        method,
        recipe: recipe.name,
        ti: ti ? { query: query!.label ? { image: query!.image, label: query!.label, value: query!.value } : query!.image, lambda, gamma, form, pool } : undefined,
        epochs,
        learningRate,
        cropsPerStep: crops,
        crop,
        seed,
        scratchEncoder,
        decoder,
        onVolume: (image) => featureBar?.tick(path.basename(image)),
        onStep: (r) => bar?.tick(`loss ${r.loss.toFixed(4)}${r.predictedSize !== undefined ? ` size ${Math.round(r.predictedSize)}` : ''}`),
      });
      console.log(`trainable parameters: ${adapted.trainableParameters.toLocaleString('en-US')}`);
      if (adapted.targetSize !== undefined) console.log(`TI target size S = ${Math.round(adapted.targetSize)} voxels (query S_hat at the end: ${Math.round(adapted.history.at(-1)?.predictedSize ?? NaN)})`);
      if (adapted.history.length > 0) {
        const mean = adapted.history.reduce((s, h) => s + h.seconds, 0) / adapted.history.length;
        console.log(`${adapted.history.length} steps in ${adapted.seconds.toFixed(1)} s (${mean.toFixed(3)} s per step of ${crops} crops of ${adapted.settings.cropSize.join('x')}), final loss ${adapted.history.at(-1)!.loss.toFixed(4)}`);
      }
      if (query?.label) {
        const dice = await adapted.scoreByOrgan({ image: query.image, label: query.label, value: query.value, values: query.values });
        const shown = Object.entries(dice).map(([organ, d]) => (organNames.length > 1 ? `${organ} ${d.toFixed(4)}` : d.toFixed(4))).join(', ');
        console.log(`query Dice (preprocessed grid, ${recipe.name} recipe's evaluation): ${shown}`);
      }
      await adapted.save(out);
      console.log(`adapter written to ${out}`);
      adapted.dispose();
    } finally {
      model.dispose();
      scratchEncoder?.dispose();
    }
  });
}
