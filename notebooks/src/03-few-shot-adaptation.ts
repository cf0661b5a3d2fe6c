// %% [markdown]
// # 03 · Few-shot adaptation
//
// Pick the organ, k, the method, the recipe, and TI's lambda and gamma in the next cell, then run the
// notebook. It uses the kit's high-level API: `fseft.load` a foundation model, `model.adapt` it to an
// organ from k labelled CTs, `adapted.segment` a new CT (the mask comes back on the CT's own grid), and
// `fseft.evaluate` the mask. The frozen backbone's features are computed once per volume; the adapter
// trains on crops of them. **Synthetic data (simulated phantoms).**

// %%
import * as tslab from 'tslab';
import * as fs from 'fs';
import * as path from 'path';
import * as fseft from '../dist/lib';

// Small settings when FSEFT_QUICK=1 (CI); larger ones otherwise.
const QUICK = process.env.FSEFT_QUICK === '1';
const WORK = path.resolve('../runs/notebooks');
fs.mkdirSync(WORK, { recursive: true });
await fseft.backend.initBackend();
const show = async (spec: fseft.viz.VegaLiteSpec) => tslab.display.html(await fseft.viz.renderSvg(spec));
console.log(`quick settings: ${QUICK}; outputs in ${WORK}`);

// %%
// Settings: change and re-run.
const ORGAN = 'liver';
const K = 1;
const METHOD: fseft.adapters.AdaptMethod = 'adapter';
// Every choice left out below comes from the recipe: 'paper' (the paper's text) or 'reference' (the authors' code); docs/recipes.md.
const RECIPE: fseft.training.RecipeName = 'paper';
const USE_TI = true;
const LAMBDA = 1;
const GAMMA = 0.25;
// 'normalised' keeps the size term on the Dice term's scale; 'paper' is in voxels; 'reference' is the authors' per-epoch step.
const TI_FORM: fseft.losses.SizeConstraintForm = 'normalised';
const EPOCHS = QUICK ? 12 : 60;

// %%
const model = await fseft.load('default');
console.log(`default model: F = ${model.network.config.featureSize}, ${model.network.parameterCount} parameters, ${JSON.stringify(model.preprocessing)}`);
const target = await fseft.data.writeSynthDataset(path.join(WORK, 'target-03'), { name: 'site-b', cases: K + 1, seed: 3, institution: 'site-b', spacingScale: 2 }, { progress: false });
// The synthetic labels hold template classes: the organ's value is its class.
const organClass = fseft.data.templateClass(ORGAN);
const supports = target.cases.slice(0, K).map((c) => ({ image: c.image, label: c.label!, value: organClass }));
const queryCase = target.cases[K];

// %%
const adapted = await model.adapt({
  // (tslab does not resolve earlier cells' variables in shorthand properties: supports: supports.)
  organ: ORGAN, supports: supports, method: METHOD, recipe: RECIPE, epochs: EPOCHS, cropsPerStep: 2,
  ti: USE_TI ? { query: queryCase.image, lambda: LAMBDA, gamma: GAMMA, form: TI_FORM } : undefined,
});
console.log(`${METHOD}${USE_TI ? '+TI' : ''} (${RECIPE} recipe): ${adapted.trainableParameters} trainable parameters, ${adapted.history.length} steps in ${adapted.seconds.toFixed(1)} s`);
await show({ $schema: 'https://vega.github.io/schema/vega-lite/v5.json', title: 'support loss per step', width: 380, height: 200,
  data: { values: adapted.history }, mark: 'line', encoding: { x: { field: 'step', type: 'quantitative' }, y: { field: 'segmentationLoss', type: 'quantitative' } } });

// %%
const before = fseft.backend.tensorMemory().numTensors;
const predicted = await adapted.segment(queryCase.image);
const baseline = await model.segment(queryCase.image, { organ: ORGAN });   // generalization: the model's own head
const truth = await fseft.readNifti(queryCase.label!);
const { DataFrame } = await import('danfojs-node');
const row = (method: string, mask: fseft.Volume) => ({ method, ...fseft.evaluate(mask, truth, { labelValue: organClass }) });
tslab.display.html(fseft.viz.frameHtml(new DataFrame([row('generalization', baseline.mask), row(`${METHOD}${USE_TI ? '+TI' : ''}`, predicted.mask)].map(({ voxels, ...scores }) => ({ ...scores, voxels: voxels.prediction, truth: voxels.label })))));
await predicted.save(path.join(WORK, `query-${ORGAN}.nii.gz`));

// %%
// Overlays on the query CT's own grid (site-b stores LPS at 1 x 1 x 3 mm; shown in the radiological view).
const image = await fseft.readNifti(queryCase.image);
const truthMask = truth.withData(Uint8Array.from(truth.data as ArrayLike<number>, (v) => (v === organClass ? 1 : 0)));
const slice = fseft.viz.largestMaskSlice(truthMask);
await show({ hconcat: [
  fseft.viz.sliceOverlaySpec(image, [], { slice, title: 'query' }),
  fseft.viz.sliceOverlaySpec(image, [{ mask: baseline.mask, color: [230, 30, 30], label: 'generalization' }], { slice, title: 'generalization' }),
  fseft.viz.sliceOverlaySpec(image, [{ mask: predicted.mask, color: [230, 30, 30], label: 'prediction' }], { slice, title: `${METHOD}${USE_TI ? '+TI' : ''}` }),
  fseft.viz.sliceOverlaySpec(image, [{ mask: truthMask, color: [40, 200, 60], label: 'ground truth' }], { slice, title: 'ground truth' }),
] });

// %%
// Predicting leaves no tensors behind; the adapter and the model are released here.
console.log(`tensors before predicting ${before}, after ${fseft.backend.tensorMemory().numTensors}`);
adapted.dispose();
model.dispose();
