#!/usr/bin/env python3
"""Writes notebooks/*.ipynb (without outputs) from the cell sources below; run after editing them."""
import json, os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'notebooks')

SETUP = """import * as tslab from 'tslab';
import * as fs from 'fs';
import * as path from 'path';
import * as fseft from '../dist/lib';

// Small settings when FSEFT_QUICK=1 (CI); larger ones otherwise.
const QUICK = process.env.FSEFT_QUICK === '1';
const WORK = path.resolve('../runs/notebooks');
fs.mkdirSync(WORK, { recursive: true });
await fseft.initBackend();
const show = async (spec: fseft.VegaLiteSpec) => tslab.display.html(await fseft.renderSvg(spec));
console.log(`quick settings: ${QUICK}; outputs in ${WORK}`);"""

def nb(name, cells):
    out = []
    for i, (kind, src) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"{name[:2]}-{i:02d}", "metadata": {}, "source": src.strip("\n").splitlines(keepends=True)}
        if kind == "code":
            cell["execution_count"] = None
            cell["outputs"] = []
        out.append(cell)
    doc = {"cells": out, "metadata": {"kernelspec": {"display_name": "TypeScript", "language": "typescript", "name": "tslab"},
           "language_info": {"name": "typescript"}}, "nbformat": 4, "nbformat_minor": 5}
    with open(os.path.join(OUT, name + ".ipynb"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")

md = lambda s: ("markdown", s)
code = lambda s: ("code", s)

nb("01-data-and-preprocessing", [
    md("""# 01 · Data and preprocessing

A CT from a simulated institution (and the real TotalSegmentator example when `../../shared` is present):
header facts, then the paper's preprocessing step by step (RAS orientation, 1.5 mm resampling, HU window
[-175, 250] → [0, 1], foreground crop) with slice views and intensity histograms.
**The synthetic CTs are simulated phantoms, not patient data.**"""),
    code(SETUP),
    code("""const target = await fseft.writeSynthDataset(path.join(WORK, 'data-01'), { name: 'site-b', cases: 1, seed: 0, institution: 'site-b', spacingScale: 2 }, { progress: false });
const files = [{ name: 'synthetic site-b', image: target.cases[0].image, label: target.cases[0].label! }];
const example = path.resolve('../../shared/data/totalseg-example');
if (fs.existsSync(path.join(example, 'example_ct_sm.nii.gz'))) files.push({ name: 'TotalSegmentator example', image: path.join(example, 'example_ct_sm.nii.gz'), label: path.join(example, 'example_seg.nii.gz') });
for (const f of files) {
  const info = await fseft.readNiftiInfo(f.image);
  console.log(`${f.name}: ${info.shape.join(' x ')} voxels, ${info.pixdim.map((v) => +v.toFixed(2)).join(' x ')} mm, ${info.datatype}, orientation ${fseft.orientationCodes(info.affine)}, affine from ${info.affineSource}`);
}"""),
    md("The preprocessing chain, one step at a time, on the synthetic CT (stored LPS; 2 x 2 x 6 mm voxels here, twice the simulated site's voxel size, to keep the notebook quick)."),
    code("""const raw = await fseft.readNifti(files[0].image);
const rawLabel = await fseft.readNifti(files[0].label);
const oriented = fseft.orient(raw);
const resampled = fseft.resampleToSpacing(oriented, [1.5, 1.5, 1.5], 'linear');
const scaled = fseft.scaleIntensityRange(resampled, fseft.CT_WINDOW, [0, 1], { clip: true });
const box = fseft.foregroundBox(scaled)!;
const cropped = fseft.cropBox(scaled, box);
for (const [step, v] of [['stored', raw], ['RAS', oriented], ['1.5 mm', resampled], ['window', scaled], ['crop', cropped]] as Array<[string, fseft.Volume]>) {
  console.log(`${step.padEnd(8)} ${v.shape.join(' x ').padEnd(16)} ${v.orientation}  spacing ${v.spacing.map((s) => +s.toFixed(2)).join(' x ')} mm`);
}
const prepared = fseft.preprocessCase({ image: raw, label: rawLabel });
console.log(`preprocessCase in one call: ${prepared.image.shape.join(' x ')} (same as the steps: ${prepared.image.shape.join() === cropped.shape.join()})`);"""),
    code("""// Before (stored HU, RAS view of the stored grid) and after (preprocessed [0, 1]), axial slices through the liver.
const liver = fseft.templateClass('liver');
const preMask = prepared.label!.withData(Uint8Array.from(prepared.label!.data, (v) => (v === liver ? 1 : 0)));
const orientedLabel = fseft.orient(rawLabel);
const rawMask = orientedLabel.withData(Uint8Array.from(orientedLabel.data, (v) => (v === liver ? 1 : 0)));
await show({ hconcat: [
  fseft.sliceOverlaySpec(oriented, [{ mask: rawMask, color: [230, 30, 30], label: 'liver' }], { slice: fseft.largestMaskSlice(rawMask), window: [-175, 250], title: 'stored voxels (HU window)' }),
  fseft.sliceOverlaySpec(prepared.image, [{ mask: preMask, color: [230, 30, 30], label: 'liver' }], { slice: fseft.largestMaskSlice(preMask), title: 'preprocessed (1.5 mm, [0, 1])' }),
] });"""),
    code("""await show({ vconcat: [
  fseft.histogramSpec(raw.data, { title: 'intensities as stored', xTitle: 'HU', range: [-1100, 1500] }),
  fseft.histogramSpec(prepared.image.data, { title: 'after the window [-175, 250] -> [0, 1]', xTitle: 'scaled intensity', range: [0, 1] }),
] });"""),
])

nb("02-foundation-pretraining", [
    md("""# 02 · Foundation-model pretraining on partially labelled data

Several "datasets", each annotating different organs, are pooled with the masked loss of Eq. 1: a class
only contributes where the dataset annotates it (its annotation vector). This notebook assembles a small
synthetic collection, shows the annotation vectors, pretrains a tiny SwinUNETR for a few steps and plots
the loss per class — and the curves of the shipped default model, trained the same way for about two hours.
**Synthetic data (simulated phantoms).**"""),
    code(SETUP),
    code("""const collection = await fseft.writeSynthCollection(path.join(WORK, 'collection-02'), { seed: 7, casesPerSource: 1, targetCases: 1, spacingScale: 2 }, { progress: false });
const { DataFrame } = await import('danfojs-node');
const organs = ['spleen', 'rkidney', 'lkidney', 'gall', 'liver', 'stomach', 'aorta', 'pancreas', 'duodenum'];
const rows = collection.sources.map((d) => Object.fromEntries([['dataset', d.name], ...organs.map((o) => [o, d.annotated.includes(fseft.templateClass(o)) ? 1 : 0])]));
new DataFrame(rows).print();"""),
    code("""// Preprocess at 4 mm (the default model's spacing) and pretrain a tiny network for a few steps.
await fseft.preprocessDatasets(collection.sources, path.join(WORK, 'prep-02'), { spacing: 4 }, { progress: false });
const datasets = fseft.readCollection(path.join(WORK, 'prep-02', 'collection.json'));
const cases = await fseft.loadTrainingCases(datasets);
const runDir = path.join(WORK, 'pretrain-02');
fs.rmSync(runDir, { recursive: true, force: true });
const epochLog: fseft.EpochRecord[] = [];
const tiny = await fseft.pretrain(cases, runDir, {
  ...fseft.DEFAULT_PRETRAIN, featureSize: 12, roi: [32, 32, 32], epochs: QUICK ? 2 : 6, samplesPerVolume: 1,
  learningRate: 5e-4, bce: true, checkpoint: false, balanceClasses: true,
  preprocessing: { spacing: 4, window: [-175, 250], roi: [32, 32, 32] },
}, (record) => { epochLog.push(record); console.log(`epoch ${record.epoch}: loss ${record.loss.toFixed(3)}`); });
tiny.dispose();
await show(fseft.trainingCurvesSpec(epochLog, 'this run: loss per class'));"""),
    code("""// The shipped default model (data/models/default): both pretraining stages, read from its log.
const logFile = path.join(fseft.resolveModelDir('default'), 'log.jsonl');
const defaultLog = fs.readFileSync(logFile, 'utf8').trim().split('\\n').map((line, i) => ({ ...JSON.parse(line), epoch: i + 1 }) as fseft.EpochRecord);
await show(fseft.trainingCurvesSpec(defaultLog, 'default model: loss per class (epochs of both stages)'));"""),
    md("""A public PyTorch checkpoint can replace pretraining (not run here; the files are downloads):

```ts
const report = await fseft.importTorchCheckpoint('swin_unetr_btcv.pt', 'models/btcv', { arch: 'swinunetr' });
const { model } = fseft.loadModel('models/btcv');
```"""),
])

ADAPT_SETUP = """const loaded = fseft.loadModel(fseft.resolveModelDir('default'));
const model = loaded.model;
const manifest = loaded.manifest;
const preprocessing = fseft.modelPreprocessing(manifest);
console.log(`default model: F = ${model.config.featureSize}, ${model.parameterCount} parameters, ${JSON.stringify(preprocessing)}`);"""

nb("03-few-shot-adaptation", [
    md("""# 03 · Few-shot adaptation

Pick the organ, k, the method, the recipe, and TI's lambda and gamma in the next cell, then run the
notebook. It uses the kit's high-level API: `fseft.load` a foundation model, `model.adapt` it to an
organ from k labelled CTs, `adapted.segment` a new CT (the mask comes back on the CT's own grid), and
`fseft.evaluate` the mask. The frozen backbone's features are computed once per volume; the adapter
trains on crops of them. **Synthetic data (simulated phantoms).**"""),
    code(SETUP),
    code("""// Settings: change and re-run.
const ORGAN = 'liver';
const K = 1;
const METHOD: fseft.AdaptMethod = 'adapter';
// Every choice left out below comes from the recipe: 'paper' (the paper's text) or 'reference' (the authors' code); docs/recipes.md.
const RECIPE: fseft.RecipeName = 'paper';
const USE_TI = true;
const LAMBDA = 1;
const GAMMA = 0.25;
// 'normalised' keeps the size term on the Dice term's scale; 'paper' is in voxels; 'reference' is the authors' per-epoch step.
const TI_FORM: fseft.SizeConstraintForm = 'normalised';
const EPOCHS = QUICK ? 12 : 60;"""),
    code("""const model = await fseft.load('default');
console.log(`default model: F = ${model.network.config.featureSize}, ${model.network.parameterCount} parameters, ${JSON.stringify(model.preprocessing)}`);
const target = await fseft.writeSynthDataset(path.join(WORK, 'target-03'), { name: 'site-b', cases: K + 1, seed: 3, institution: 'site-b', spacingScale: 2 }, { progress: false });
// The synthetic labels hold template classes: the organ's value is its class.
const organClass = fseft.templateClass(ORGAN);
const supports = target.cases.slice(0, K).map((c) => ({ image: c.image, label: c.label!, value: organClass }));
const queryCase = target.cases[K];"""),
    code("""const adapted = await model.adapt({
  organ: ORGAN, supports, method: METHOD, recipe: RECIPE, epochs: EPOCHS, cropsPerStep: 2,
  ti: USE_TI ? { query: queryCase.image, lambda: LAMBDA, gamma: GAMMA, form: TI_FORM } : undefined,
});
console.log(`${METHOD}${USE_TI ? '+TI' : ''} (${RECIPE} recipe): ${adapted.trainableParameters} trainable parameters, ${adapted.history.length} steps in ${adapted.seconds.toFixed(1)} s`);
await show({ $schema: 'https://vega.github.io/schema/vega-lite/v5.json', title: 'support loss per step', width: 380, height: 200,
  data: { values: adapted.history }, mark: 'line', encoding: { x: { field: 'step', type: 'quantitative' }, y: { field: 'segmentationLoss', type: 'quantitative' } } });"""),
    code("""const before = fseft.tensorMemory().numTensors;
const predicted = await adapted.segment(queryCase.image);
const baseline = await model.segment(queryCase.image, { organ: ORGAN });   // generalization: the model's own head
const truth = await fseft.readNifti(queryCase.label!);
const { DataFrame } = await import('danfojs-node');
const row = (method: string, mask: fseft.Volume) => ({ method, ...fseft.evaluate(mask, truth, { labelValue: organClass }) });
new DataFrame([row('generalization', baseline.mask), row(`${METHOD}${USE_TI ? '+TI' : ''}`, predicted.mask)].map(({ voxels, ...scores }) => ({ ...scores, voxels: voxels.prediction, truth: voxels.label }))).print();
await predicted.save(path.join(WORK, `query-${ORGAN}.nii.gz`));"""),
    code("""// Overlays on the query CT's own grid (site-b stores LPS at 1 x 1 x 3 mm; shown in the radiological view).
const image = await fseft.readNifti(queryCase.image);
const truthMask = truth.withData(Uint8Array.from(truth.data as ArrayLike<number>, (v) => (v === organClass ? 1 : 0)));
const slice = fseft.largestMaskSlice(truthMask);
await show({ hconcat: [
  fseft.sliceOverlaySpec(image, [], { slice, title: 'query' }),
  fseft.sliceOverlaySpec(image, [{ mask: baseline.mask, color: [230, 30, 30], label: 'generalization' }], { slice, title: 'generalization' }),
  fseft.sliceOverlaySpec(image, [{ mask: predicted.mask, color: [230, 30, 30], label: 'prediction' }], { slice, title: `${METHOD}${USE_TI ? '+TI' : ''}` }),
  fseft.sliceOverlaySpec(image, [{ mask: truthMask, color: [40, 200, 60], label: 'ground truth' }], { slice, title: 'ground truth' }),
] });"""),
    code("""// Predicting leaves no tensors behind; the adapter and the model are released here.
console.log(`tensors before predicting ${before}, after ${fseft.tensorMemory().numTensors}`);
adapted.dispose();
model.dispose();"""),
])

EXPERIMENT = """const runPlan = async (name: string, plan: Omit<fseft.ExperimentPlan, 'data'>, onPrediction?: fseft.ExperimentContext['onPrediction']) => {
  const target = await fseft.writeSynthDataset(path.join(WORK, 'target-shared'), { name: 'site-b', cases: 3, seed: 11, institution: 'site-b', spacingScale: 2 }, { progress: false });
  const recordsFile = path.join(WORK, `${name}.records.jsonl`);
  // (tslab does not resolve earlier cells' variables in shorthand properties: write model: model.)
  return fseft.runExperiment({ ...plan, data: path.join(WORK, 'target-shared') }, { model: model, manifest: manifest, recordsFile, onPrediction,
    onRecord: (r) => console.log(`${r.method} ${r.organ} k=${r.k}${r.gamma !== undefined ? ` gamma ${r.gamma}` : ''}: Dice ${r.dice.toFixed(3)}`) });
};"""

nb("04-gamma-ablation", [
    md("""# 04 · TI margin gamma (the paper's Fig. 2b)

Adapter + TI for several gammas against the adapter alone (dashed), per organ. Records go to
`runs/notebooks/gamma.records.jsonl`; finished cells are skipped when the notebook runs again.
**Synthetic data (simulated phantoms).**"""),
    code(SETUP),
    code(ADAPT_SETUP),
    code(EXPERIMENT),
    code("""const GAMMAS = QUICK ? [0.05, 0.25, 0.5] : [0.05, 0.1, 0.25, 0.5, 0.75, 1];
const records = await runPlan('gamma', {
  organs: ['liver', 'spleen'], methods: ['adapter', 'adapter+ti'], shots: [1], folds: 1, seeds: [0], queries: 1,
  epochs: QUICK ? 10 : 40, cropsPerStep: 2, ti: { gamma: GAMMAS, lambda: [1], form: 'normalised', pool: 2 },
});
await show(fseft.gammaCurveSpec(records, 'adapter', 'Dice against gamma (dashed: adapter without TI)'));
(await fseft.summaryFrame(records)).print();"""),
])

nb("05-qualitative", [
    md("""# 05 · Qualitative results (the paper's Fig. 3)

Axial slices of a query: ground truth (green), then generalization, adapter and adapter + TI (red), one
column per organ. **Synthetic data (simulated phantoms).**"""),
    code(SETUP),
    code(ADAPT_SETUP),
    code(EXPERIMENT),
    code("""const ORGANS = ['liver', 'spleen', 'rkidney'];
const METHODS = ['generalization', 'adapter', 'adapter+ti'];
const predictions = new Map<string, { query: fseft.PreparedCase; mask: fseft.Volume }>();
fs.rmSync(path.join(WORK, 'qualitative.records.jsonl'), { force: true }); // the figure needs fresh predictions
await runPlan('qualitative', { organs: ORGANS, methods: METHODS, shots: [1], folds: 1, seeds: [0], queries: 1, epochs: QUICK ? 10 : 40, cropsPerStep: 2, ti: { form: 'normalised' } },
  (cell, query, mask) => predictions.set(`${cell.method}|${cell.organ}`, { query, mask }));
const rows = [
  ORGANS.map((o) => ({ image: predictions.get(`generalization|${o}`)!.query.image, mask: predictions.get(`generalization|${o}`)!.query.mask!, color: [40, 200, 60] as [number, number, number] })),
  ...METHODS.map((m) => ORGANS.map((o) => ({ image: predictions.get(`${m}|${o}`)!.query.image, mask: predictions.get(`${m}|${o}`)!.mask }))),
];
const sliceOf = new Map<fseft.Volume, number>(ORGANS.map((o) => [predictions.get(`generalization|${o}`)!.query.image, fseft.largestMaskSlice(predictions.get(`generalization|${o}`)!.query.mask!)]));
const png = fseft.tiledSlicesPng(rows, (image) => sliceOf.get(image) ?? 0);
fs.writeFileSync(path.join(WORK, 'qualitative.png'), png);
tslab.display.png(png);
console.log('rows: ground truth, ' + METHODS.join(', ') + '; columns: ' + ORGANS.join(', '));"""),
])

nb("06-adapters-vs-mlp", [
    md("""# 06 · Spatial adapters against the MLP adapter (the paper's Fig. 2a)

Linear probe, the paper's adapter (UnetResBlock, 3x3x3) against its kernel-1 version (`adapter-k1`,
the "MLP" of Fig. 2a in the reference code), and the later code's residual adapters (`mlp-adapter`
with 1x1x1 and `residual-adapter` with 3x3x3 convolutions), with their trainable parameter counts.
**Synthetic data (simulated phantoms).**"""),
    code(SETUP),
    code(ADAPT_SETUP),
    code(EXPERIMENT),
    code("""const records = await runPlan('adapters', {
  organs: ['liver', 'spleen'], methods: ['lp', 'adapter-k1', 'adapter', 'mlp-adapter', 'residual-adapter'], shots: [1], folds: 1, seeds: [0], queries: 1,
  epochs: QUICK ? 10 : 40, cropsPerStep: 2,
});
await show(fseft.diceBarsSpec(records, 'Dice per adapter type'));
const { DataFrame } = await import('danfojs-node');
new DataFrame([...new Map(records.map((r) => [r.method, { method: r.method, trainable: r.trainableParameters }])).values()]).print();"""),
])

nb("07-results", [
    md("""# 07 · Results table (the paper's Table 1 layout)

Rebuilds the table from experiment records: those the notebooks wrote in `runs/notebooks/` and, when
present, the demo's `runs/demo/records.jsonl`. Mean Dice over folds and seeds per organ, the mean over
organs, per k; exported as CSV. **Synthetic data (simulated phantoms).**"""),
    code(SETUP),
    code("""const sources = fs.readdirSync(WORK).filter((f) => f.endsWith('.records.jsonl')).map((f) => path.join(WORK, f));
const demoRecords = path.resolve('../runs/demo/records.jsonl');
if (fs.existsSync(demoRecords)) sources.push(demoRecords);
const records = sources.flatMap((f) => fseft.readRecords(f));
console.log(`${records.length} records from ${sources.map((s) => path.basename(s)).join(', ')}`);
const table = await fseft.table1Frame(records);
table.print();
fs.writeFileSync(path.join(WORK, 'table1.csv'), await fseft.frameToCsv(table));
console.log(fseft.formatTable(records));"""),
    code("""await show(fseft.diceBarsSpec(records, 'all records'));"""),
])
print("notebooks written to", os.path.normpath(OUT))
