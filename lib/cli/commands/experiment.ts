import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../../backend/backend';
import { ExperimentPlan, formatIntervalTable, formatTable, readRecords, runExperiment, validatePlan } from '../../training/experiment';
import { FseftError } from '../../util/errors';
import { readJsonFile } from '../../util/read-file';
import { writeFileAtomic } from '../../util/atomic-write';
import { diceBarsSpec, gammaCurveSpec, renderSvg } from '../../viz/charts';
import { frameToCsv, summaryFrame, table1Frame } from '../../viz/tables';
import { loadNamedModel } from '../../networks/model-io';
import { Options } from '../args';

export const EXPERIMENT_HELP = `fseft experiment --plan <plan.json> [--model <dir|default>] [--records <file.jsonl>]
  Runs a grid of few-shot experiments and appends one JSON record per cell (method, organ, k, fold,
  seed, gamma, lambda, Dice, trainable parameters, time) to the records file (default: next to
  the plan, <plan>.records.jsonl); finished cells are skipped, so an interrupted run resumes.
  A cell is finished only under the same settings and model (its key hashes them); one
  experiment at a time may write a records file.
  plan.json: { "data": "<dataset>", "organs": ["liver"], "methods": ["lp", "adapter", "adapter+ti"],
    "shots": [1, 5], "folds": 5, "seeds": [0], "queries": 1, "epochs": {"1": 100, "5": 20},
    "cropsPerStep": 6, "crop": 32, "learningRates": {"lp": 0.01}, "head": "zero-shot" | "random", "ti": {"gamma": [0.25], "lambda": [1]},
    "model": "default", "recipe": "paper", "scratchInit": "<model dir>" }  (paths relative to the plan; what the plan leaves out
    comes from the recipe, paper or reference: see docs/recipes.md; "crop" is the edge of the training
    crops, default the model's adaptation ROI, or its ROI for methods that run the network on crops)`;

export const REPORT_HELP = `fseft report <records.jsonl> [...] [--plot <dir>] [--intervals [--seed 0]]
  Prints a Table-1 style table from experiment records: Dice per organ and method, averaged over
  folds and seeds, per k, with the mean over organs and the trainable parameter counts.
  --plot <dir> also writes dice.svg (bars per method and organ), gamma.svg (Dice against gamma,
  when there are TI records with several gammas), table.csv (Table-1 layout) and summary.csv
  (mean, std and count of Dice per method, organ and k).
  --intervals prints each mean with its 95 % bootstrap interval over queries x folds x seeds (2000
  resamples, seeded), and the mean over organs with a bootstrap stratified by organ.`;

export async function experimentCommand(options: Options): Promise<void> {
  const planFile = options.required('plan');
  const modelOption = options.string('model');
  const recordsOption = options.string('records');
  const backend = options.string('backend');
  options.rejectUnknown();
  const plan = readJsonFile(planFile) as Partial<ExperimentPlan> & { model?: string };
  for (const field of ['data', 'organs', 'methods', 'shots'] as const) if (plan[field] === undefined) throw new FseftError(`the plan has no "${field}"`, planFile);
  const base = path.dirname(planFile);
  const resolved: ExperimentPlan = {
    ...(plan as ExperimentPlan),
    folds: plan.folds ?? 1,
    seeds: plan.seeds ?? [0],
    queries: plan.queries ?? 1,
    data: path.resolve(base, plan.data!),
    scratchInit: plan.scratchInit === undefined ? undefined : path.resolve(base, plan.scratchInit),
  };
  const modelName = modelOption ?? (plan.model === undefined || plan.model === 'default' ? 'default' : path.resolve(base, plan.model));
  const recordsFile = recordsOption ?? planFile.replace(/\.json$/, '') + '.records.jsonl';
  validatePlan(resolved, planFile);
  await initBackend(backend);
  const { model, manifest, fingerprint } = loadNamedModel(modelName);
  const records = await runExperiment(resolved, {
    model,
    manifest,
    modelFingerprint: fingerprint,
    recordsFile,
    onRecord: (r) => console.log(`${r.method} ${r.organ} k=${r.k} fold ${r.fold} seed ${r.seed}${r.gamma !== undefined ? ` gamma ${r.gamma} lambda ${r.lambda}` : ''}${r.query !== undefined ? ` query ${r.query} (S ${Math.round(r.targetSize ?? NaN)}, S_hat ${Math.round(r.predictedSize ?? NaN)})` : ''}: Dice ${r.dice.toFixed(4)} (${r.trainSeconds.toFixed(1)} s)`),
  });
  console.log('\n' + formatTable(records));
  console.log(`records: ${recordsFile}`);
  model.dispose();
}

export async function reportCommand(options: Options): Promise<void> {
  const files = options.positional;
  const plotDir = options.string('plot');
  const intervals = options.flag('intervals');
  const seed = options.integer('seed', 0, { min: 0 })!;
  options.rejectUnknown({ positional: true });
  if (files.length === 0) throw new FseftError(`give one or more records files\n${REPORT_HELP}`);
  const records = files.flatMap((f) => readRecords(f));
  if (records.length === 0) throw new FseftError('no records', files.join(', '));
  console.log(intervals ? formatIntervalTable(records, { seed }) : formatTable(records));
  if (!plotDir) return;
  // Everything is rendered before anything is written, and a failed write removes the figures
  // written before it: all of the figures or none.
  const figures: Array<[string, string]> = [
    [path.join(plotDir, 'dice.svg'), await renderSvg(diceBarsSpec(records))],
    [path.join(plotDir, 'table.csv'), await frameToCsv(await table1Frame(records))],
    [path.join(plotDir, 'summary.csv'), await frameToCsv(await summaryFrame(records))],
  ];
  const gammas = new Set(records.filter((r) => r.gamma !== undefined).map((r) => r.gamma));
  if (gammas.size > 1) {
    const method = records.find((r) => r.gamma !== undefined)!.method.replace(/\+ti$/, '');
    figures.push([path.join(plotDir, 'gamma.svg'), await renderSvg(gammaCurveSpec(records, method))]);
  }
  const written: string[] = [];
  try {
    for (const [file, contents] of figures) {
      await writeFileAtomic(file, contents);
      written.push(file);
    }
  } catch (error) {
    await Promise.all(written.map((file) => fs.promises.rm(file, { force: true })));
    throw error;
  }
  console.log(`written: ${written.join(', ')}`);
}
