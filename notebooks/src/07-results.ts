// %% [markdown]
// # 07 · Results table (the paper's Table 1 layout)
//
// Rebuilds the table from experiment records: those the notebooks wrote in `runs/notebooks/` and, when
// present, the demo's `runs/demo/records.jsonl`. Mean Dice over folds and seeds per organ, the mean over
// organs, per k; exported as CSV. **Synthetic data (simulated phantoms).**

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
const sources = fs.readdirSync(WORK).filter((f) => f.endsWith('.records.jsonl')).map((f) => path.join(WORK, f));
const demoRecords = path.resolve('../runs/demo/records.jsonl');
if (fs.existsSync(demoRecords)) sources.push(demoRecords);
const records = sources.flatMap((f) => fseft.readRecords(f));
console.log(`${records.length} records from ${sources.map((s) => path.basename(s)).join(', ')}`);
const table = await fseft.table1Frame(records);
table.print();
fs.writeFileSync(path.join(WORK, 'table1.csv'), await fseft.frameToCsv(table));
console.log(fseft.formatTable(records));

// %%
await show(fseft.diceBarsSpec(records, 'all records'));
