// %% [markdown]
// # 04 · TI margin gamma (the paper's Fig. 2b)
//
// Adapter + TI for several gammas against the adapter alone (dashed), per organ. Records go to
// `runs/notebooks/gamma.records.jsonl`; finished cells are skipped when the notebook runs again.
// **Synthetic data (simulated phantoms).**

// %%
import * as tslab from 'tslab';
import * as fs from 'fs';
import * as path from 'path';
import * as fseft from '../dist/lib';

// Small settings when FSEFT_QUICK=1 (CI: fewer epochs, and 32^3 training crops instead of the
// model's whole 64^3 window); the full settings otherwise.
const QUICK = process.env.FSEFT_QUICK === '1';
const WORK = path.resolve('../runs/notebooks');
fs.mkdirSync(WORK, { recursive: true });
await fseft.backend.initBackend();
const show = async (spec: fseft.viz.VegaLiteSpec) => tslab.display.html(await fseft.viz.renderSvg(spec));
console.log(`quick settings: ${QUICK}; outputs in ${WORK}`);

// %%
// The experiment grid (lib/training/experiment.ts) runs on the network of the common path's model.
const foundation = await fseft.load('default');
const model = foundation.network;
const manifest = foundation.manifest;
console.log(`default model: F = ${model.config.featureSize}, ${model.parameterCount} parameters, ${JSON.stringify(foundation.preprocessing)}`);

// %%
const runPlan = async (name: string, plan: Omit<fseft.training.ExperimentPlan, 'data'>, onPrediction?: fseft.training.ExperimentContext['onPrediction']) => {
  const target = await fseft.data.writeSynthDataset(path.join(WORK, 'target-shared'), { name: 'site-b', cases: 3, seed: 11, institution: 'site-b', spacingScale: 2 }, { progress: false });
  const recordsFile = path.join(WORK, `${name}.records.jsonl`);
  // (tslab does not resolve earlier cells' variables in shorthand properties: write model: model.)
  return fseft.training.runExperiment({ ...plan, data: path.join(WORK, 'target-shared') }, { model: model, manifest: manifest, recordsFile, onPrediction,
    onRecord: (r) => console.log(`${r.method} ${r.organ} k=${r.k}${r.gamma !== undefined ? ` gamma ${r.gamma}` : ''}: Dice ${r.dice.toFixed(3)}`) });
};

// %%
const GAMMAS = QUICK ? [0.05, 0.25, 0.5] : [0.05, 0.1, 0.25, 0.5, 0.75, 1];
const records = await runPlan('gamma', {
  organs: ['liver', 'spleen'], methods: ['adapter', 'adapter+ti'], shots: [1], folds: 1, seeds: [0], queries: 1,
  epochs: QUICK ? 10 : 40, cropsPerStep: 2, crop: QUICK ? 32 : undefined, ti: { gamma: GAMMAS, lambda: [1], form: 'normalised', pool: 2 },
});
await show(fseft.viz.gammaCurveSpec(records, 'adapter', 'Dice against gamma (dashed: adapter without TI)'));
tslab.display.html(fseft.viz.frameHtml(await fseft.viz.summaryFrame(records), { caption: 'Dice per method, organ and k (mean, std and count over folds and seeds)' }));
