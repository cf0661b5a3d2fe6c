// %% [markdown]
// # 05 · Qualitative results (the paper's Fig. 3)
//
// Axial slices of a query: ground truth (green), then generalization, adapter and adapter + TI (red), one
// column per organ. **Synthetic data (simulated phantoms).**

// %%
import * as tslab from 'tslab';
import * as fs from 'fs';
import * as path from 'path';
import * as fseft from '../dist/lib';

// Small settings when FSEFT_QUICK=1 (CI); larger ones otherwise.
const QUICK = process.env.FSEFT_QUICK === '1';
const WORK = path.resolve('../runs/notebooks');
fs.mkdirSync(WORK, { recursive: true });
await fseft.initBackend();
const show = async (spec: fseft.VegaLiteSpec) => tslab.display.html(await fseft.renderSvg(spec));
console.log(`quick settings: ${QUICK}; outputs in ${WORK}`);

// %%
const loaded = fseft.loadModel(fseft.resolveModelDir('default'));
const model = loaded.model;
const manifest = loaded.manifest;
const preprocessing = fseft.modelPreprocessing(manifest);
console.log(`default model: F = ${model.config.featureSize}, ${model.parameterCount} parameters, ${JSON.stringify(preprocessing)}`);

// %%
const runPlan = async (name: string, plan: Omit<fseft.ExperimentPlan, 'data'>, onPrediction?: fseft.ExperimentContext['onPrediction']) => {
  const target = await fseft.writeSynthDataset(path.join(WORK, 'target-shared'), { name: 'site-b', cases: 3, seed: 11, institution: 'site-b', spacingScale: 2 }, { progress: false });
  const recordsFile = path.join(WORK, `${name}.records.jsonl`);
  // (tslab does not resolve earlier cells' variables in shorthand properties: write model: model.)
  return fseft.runExperiment({ ...plan, data: path.join(WORK, 'target-shared') }, { model: model, manifest: manifest, recordsFile, onPrediction,
    onRecord: (r) => console.log(`${r.method} ${r.organ} k=${r.k}${r.gamma !== undefined ? ` gamma ${r.gamma}` : ''}: Dice ${r.dice.toFixed(3)}`) });
};

// %%
const ORGANS = ['liver', 'spleen', 'rkidney'];
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
console.log('rows: ground truth, ' + METHODS.join(', ') + '; columns: ' + ORGANS.join(', '));
