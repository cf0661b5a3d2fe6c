// %% [markdown]
// # 06 · Spatial adapters against the MLP adapter (the paper's Fig. 2a) and the PEFT methods
//
// Linear probe, the paper's adapter (UnetResBlock, 3x3x3) against its kernel-1 version (`adapter-k1`,
// the "MLP" of Fig. 2a in the reference code), and the later code's residual adapters (`mlp-adapter`
// with 1x1x1 and `residual-adapter` with 3x3x3 convolutions), with their trainable parameter counts.
// Then the parameter-efficient methods of the authors' later code, which change the frozen Swin
// encoder from inside its blocks (LoRA, AdaptFormer, BitFit, LayerNorm affine, Compacter; see
// `npx fseft methods`). **Synthetic data (simulated phantoms).**

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
const records = await runPlan('adapters', {
  organs: ['liver', 'spleen'], methods: ['lp', 'adapter-k1', 'adapter', 'mlp-adapter', 'residual-adapter'], shots: [1], folds: 1, seeds: [0], queries: 1,
  epochs: QUICK ? 10 : 40, cropsPerStep: 2, crop: QUICK ? 32 : undefined,
});
await show(fseft.viz.diceBarsSpec(records, 'Dice per adapter type'));
const { DataFrame } = await import('danfojs-node');
tslab.display.html(fseft.viz.frameHtml(new DataFrame([...new Map(records.map((r) => [r.method, { method: r.method, trainable: r.trainableParameters }])).values()]), { caption: 'trainable parameters per method' }));

// %% [markdown]
// ## PEFT methods inside the Swin encoder
//
// These methods cannot use the cached features (the backbone changes as they train), so each step
// runs the whole network on its crops: slower than the adapters above. The decoder stays frozen;
// learning rates are the later code's (LoRA 1e-3, the others 1e-2). An untrained LoRA, AdaptFormer,
// BitFit or LN-affine gives the pretrained network's output exactly; Compacter's PHM layers replace
// each block's branches by a product of scale 0.01, so it starts far from the pretrained network.

// %%
// Two cells of three methods each, so that no cell runs for long without output.
const peftPlan = {
  organs: QUICK ? ['liver'] : ['liver', 'spleen'], shots: [1], folds: 1, seeds: [0], queries: 1,
  epochs: QUICK ? 4 : 40, cropsPerStep: 2, crop: QUICK ? 32 : undefined,
};
const peftFirst = await runPlan('peft', { ...peftPlan, methods: ['lp', 'lora', 'adaptformer'] });

// %%
const peftRecords = [...peftFirst, ...(await runPlan('peft', { ...peftPlan, methods: ['bitfit', 'ln-affine', 'compacter'] }))];
await show(fseft.viz.diceBarsSpec(peftRecords, 'Dice per PEFT method'));
tslab.display.html(fseft.viz.frameHtml(new DataFrame([...new Map(peftRecords.map((r) => [r.method, { method: r.method, trainable: r.trainableParameters }])).values()]), { caption: 'trainable parameters per PEFT method (this model)' }));
