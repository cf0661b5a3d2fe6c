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

// Small settings when FSEFT_QUICK=1 (CI: fewer epochs, and 32^3 training crops instead of the
// model's whole 64^3 window); the full settings otherwise.
const QUICK = process.env.FSEFT_QUICK === '1';
const WORK = path.resolve('../runs/notebooks');
fs.mkdirSync(WORK, { recursive: true });
await fseft.backend.initBackend();
const show = async (spec: fseft.viz.VegaLiteSpec) => tslab.display.html(await fseft.viz.renderSvg(spec));
console.log(`quick settings: ${QUICK}; outputs in ${WORK}`);

// %%
// The common path (lib/api.ts): load the model, adapt it, segment the query on its own grid.
const model = await fseft.load('default');
console.log(`default model: F = ${model.network.config.featureSize}, ${model.network.parameterCount} parameters, ${JSON.stringify(model.preprocessing)}`);
const site = await fseft.data.writeSynthDataset(path.join(WORK, 'target-shared'), { name: 'site-b', cases: 3, seed: 11, institution: 'site-b', spacingScale: 2 }, { progress: false });
const support = site.cases[0];
const query = site.cases[1];
const queryImage = await fseft.readNifti(query.image);
const queryLabel = await fseft.readNifti(query.label!);

// %%
const ORGANS = ['liver', 'spleen', 'rkidney'];
const METHODS = ['generalization', 'adapter', 'adapter+ti'];
const EPOCHS = QUICK ? 10 : 40;
const masks = new Map<string, fseft.Volume>();
for (const organ of ORGANS) {
  const value = fseft.data.templateClass(organ);
  masks.set(`generalization|${organ}`, (await model.segment(query.image, { organ: organ })).mask);
  for (const ti of [false, true]) {
    const adapted = await model.adapt({ organ: organ, supports: [{ image: support.image, label: support.label!, value: value }], method: 'adapter', epochs: EPOCHS, cropsPerStep: 2, crop: QUICK ? 32 : undefined, ti: ti ? { query: query.image, form: 'normalised' } : undefined });
    masks.set(`${ti ? 'adapter+ti' : 'adapter'}|${organ}`, (await adapted.segment(query.image)).mask);
    adapted.dispose();
  }
}

// %%
// Dice on the CT's own grid; shown in RAS orientation (radiological view: patient right on the left).
const truthOf = (organ: string) => queryLabel.withData(Uint8Array.from(queryLabel.data as ArrayLike<number>, (v) => (v === fseft.data.templateClass(organ) ? 1 : 0)));
const shownImage = fseft.transforms.orient(queryImage);
const rows = ['ground truth', ...METHODS].map((method) => ORGANS.map((organ) => {
  const truth = truthOf(organ);
  const slice = fseft.viz.largestMaskSlice(fseft.transforms.orient(truth));
  if (method === 'ground truth') return { image: shownImage, mask: fseft.transforms.orient(truth), color: [40, 200, 60] as [number, number, number], slice: slice };
  const mask = masks.get(`${method}|${organ}`)!;
  return { image: shownImage, mask: fseft.transforms.orient(mask), slice: slice, caption: `Dice ${fseft.evaluate(mask, truth).dice.toFixed(3)}` };
}));
await show(fseft.viz.labelledGridSpec(rows, ['ground truth', ...METHODS], ORGANS, { zoom: 2, window: [-175, 250], title: `query CT, axial slice where the organ is largest, radiological view (k = 1, ${EPOCHS} epochs; synthetic data)` }));
model.dispose();
