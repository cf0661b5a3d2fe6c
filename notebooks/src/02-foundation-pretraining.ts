// %% [markdown]
// # 02 · Foundation-model pretraining on partially labelled data
//
// Several "datasets", each annotating different organs, are pooled with the masked loss of Eq. 1: a class
// only contributes where the dataset annotates it (its annotation vector). This notebook assembles a small
// synthetic collection, shows the annotation vectors, pretrains a tiny SwinUNETR for a few steps and plots
// the loss per class — and the curves of the last stage of the shipped default model (13.7 h of training over eight stages).
// **Synthetic data (simulated phantoms).**

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
const collection = await fseft.data.writeSynthCollection(path.join(WORK, 'collection-02'), { seed: 7, casesPerSource: 1, targetCases: 1, spacingScale: 2 }, { progress: false });
const { DataFrame } = await import('danfojs-node');
const organs = ['spleen', 'rkidney', 'lkidney', 'gall', 'liver', 'stomach', 'aorta', 'pancreas', 'duodenum'];
const rows = collection.sources.map((d) => Object.fromEntries([['dataset', d.name], ...organs.map((o) => [o, d.annotated.includes(fseft.data.templateClass(o)) ? 1 : 0])]));
tslab.display.html(fseft.viz.frameHtml(new DataFrame(rows), { caption: 'organs each source dataset annotates (1: labelled)' }));

// %%
// Preprocess at 4 mm (the default model's spacing) and pretrain a tiny network for a few steps.
await fseft.data.preprocessDatasets(collection.sources, path.join(WORK, 'prep-02'), { spacing: 4 }, { progress: false });
const datasets = fseft.data.readCollection(path.join(WORK, 'prep-02', 'collection.json'));
const cases = await fseft.training.loadTrainingCases(datasets);
const runDir = path.join(WORK, 'pretrain-02');
fs.rmSync(runDir, { recursive: true, force: true });
const epochLog: fseft.training.EpochRecord[] = [];
const tiny = await fseft.training.pretrain(cases, runDir, {
  ...fseft.training.DEFAULT_PRETRAIN, featureSize: 12, roi: [32, 32, 32], epochs: QUICK ? 2 : 6, samplesPerVolume: 1,
  learningRate: 5e-4, bce: true, checkpoint: false, balanceClasses: true,
  preprocessing: { spacing: 4, window: [-175, 250], roi: [32, 32, 32] },
}, (record) => { epochLog.push(record); console.log(`epoch ${record.epoch}: loss ${record.loss.toFixed(3)}`); });
tiny.dispose();
await show(fseft.viz.trainingCurvesSpec(epochLog, 'this run: loss per class'));

// %%
// The shipped default model (data/models/default): its last pretraining stage (10: 64^3 patches,
// 5 epochs on 72 phantoms per dataset at a peak learning rate of 2e-4, with the exclusion BCE:
// the organs a dataset labels are known negatives of the classes it leaves unlabelled), read from
// its log, with the held-out validation Dice after each epoch; data/README.md says how each stage
// trained and has the table on fresh phantoms.
const logFile = path.join(fseft.networks.resolveModelDir('default'), 'log.jsonl');
const defaultLog = fs.readFileSync(logFile, 'utf8').trim().split('\n').map((line, i) => ({ ...JSON.parse(line), epoch: i + 1 }) as fseft.training.EpochRecord);
await show(fseft.viz.trainingCurvesSpec(defaultLog, 'default model, stage 10: Dice loss per class'));
await show(fseft.viz.validationCurvesSpec(defaultLog.filter((r) => r.validation)));

// %% [markdown]
// A public PyTorch checkpoint can replace pretraining (not run here; the files are downloads):
//
// ```ts
// const report = await fseft.networks.importTorchCheckpoint('swin_unetr_btcv.pt', 'models/btcv', { arch: 'swinunetr' });
// const { model } = fseft.networks.loadModel('models/btcv');
// ```
