// %% [markdown]
// # 07 · Results table (the paper's Table 1 layout)
//
// Rebuilds the table from experiment records: those the notebooks wrote in `runs/notebooks/` and, when
// present, the demo's `runs/demo/records.jsonl`, one table per file (records made with different
// settings are not pooled). Mean Dice over folds and seeds per organ, the mean over organs, per k;
// each table is also written as CSV. **Synthetic data (simulated phantoms).**

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
// Records made with different settings are never pooled: one table per file that wrote them (each
// notebook and the demo run one plan), captioned with the settings that produced its numbers.
const sources = fs.readdirSync(WORK).filter((f) => f.endsWith('.records.jsonl')).map((f) => path.join(WORK, f));
const demoRecords = path.resolve('../runs/demo/records.jsonl');
if (fs.existsSync(demoRecords)) sources.push(demoRecords);
const span = (values: number[]) => (Math.min(...values) === Math.max(...values) ? `${values[0]}` : `${Math.min(...values)}-${Math.max(...values)}`);
const groups = sources
  .map((file) => ({ name: file === demoRecords ? 'demo' : path.basename(file, '.records.jsonl'), records: fseft.training.readRecords(file) }))
  .filter((g) => g.records.length > 0);
for (const group of groups) {
  const r = group.records;
  const settings = `recipe ${[...new Set(r.map((x) => x.recipe ?? 'paper'))].join('/')}, epochs ${span(r.map((x) => x.epochs))}, ${new Set(r.map((x) => `${x.fold}|${x.seed}`)).size} fold-seed pair(s)`;
  const table = await fseft.viz.table1Frame(r);
  tslab.display.html(fseft.viz.frameHtml(table, { caption: `${group.name} (${r.length} records): ${settings}` }));
  fs.writeFileSync(path.join(WORK, `table1-${group.name}.csv`), await fseft.viz.frameToCsv(table));
}

// %%
for (const group of groups) await show(fseft.viz.diceBarsSpec(group.records, `${group.name}: Dice per method and organ`));
